"""The shared half of every vector index: validation, upsert, exclusion, persistence.

Kinds subclass `BaseVectorIndex` and fill in a few storage hooks; see
`lmrec.stores.vector_index` for the kinds and the public entry points.

Example:
    >>> import numpy as np
    >>> from lmrec.stores import ExactIndex
    >>> index = ExactIndex(dim=2)
    >>> index.add([1, 2], np.array([[1.0, 0.0], [0.0, 3.0]]))
    >>> index.remove([2, 99]), len(index), 1 in index
    (1, 1, True)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from lmrec.types import config_hash

__all__ = ["BaseVectorIndex", "Exclude", "blas_threads", "config_hash", "read_config"]

#: ids to leave out of results: one iterable for all queries, or one iterable per query
Exclude = Iterable[int] | Sequence[Iterable[int]] | None

_BLAS: Any = None


def blas_threads(n: int | None) -> AbstractContextManager[Any]:
    """A context that caps numpy's BLAS at `n` threads (no-op for None)."""
    global _BLAS
    if n is None:
        return nullcontext()
    from threadpoolctl import ThreadpoolController

    if _BLAS is None:  # scanning the loaded libraries is slow: do it once per process
        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=n, user_api="blas")



class BaseVectorIndex:
    """Validation, upsert, id bookkeeping, exclusion filtering and persistence shared by all
    kinds. Subclasses fill in `_add`, `_remove`, `_raw_search`, `_get` and the storage hooks.

    `self._slot` maps each live id to a subclass-defined position. `threads` caps the threads
    a search/build may use (1 suits a serving process on few cores; None leaves libraries alone).
    """

    kind: ClassVar[str] = ""

    def __init__(self, dim: int, *, threads: int | None = 1) -> None:
        if int(dim) <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = int(dim)
        self.threads = threads
        self._slot: dict[int, int] = {}

    # ---- public API -------------------------------------------------------------------
    def add(self, ids: Any, vectors: Any) -> None:
        """Insert vectors under `ids`, replacing the vectors of ids already present."""
        ids_arr = self._check_ids(ids)
        vecs = self._check_vectors(vectors, "vectors")
        if len(vecs) != len(ids_arr):
            raise ValueError(f"got {len(ids_arr)} ids but {len(vecs)} vectors")
        if len(ids_arr) == 0:
            return
        # a repeated id in one call: the last vector wins, as with one-by-one upserts
        rev_unique, rev_first = np.unique(ids_arr[::-1], return_index=True)
        if len(rev_unique) < len(ids_arr):
            keep = np.sort(len(ids_arr) - 1 - rev_first)
            ids_arr, vecs = ids_arr[keep], vecs[keep]
        present = [i for i in ids_arr.tolist() if i in self._slot]
        if present:
            self._remove(np.asarray(present, dtype=np.int64))
        self._add(ids_arr, vecs)

    def remove(self, ids: Any) -> int:
        """Delete `ids` (unknown ones are ignored); returns how many were removed."""
        ids_arr = self._check_ids(ids)
        present = sorted({i for i in ids_arr.tolist() if i in self._slot})
        if present:
            self._remove(np.asarray(present, dtype=np.int64))
        return len(present)

    def search(self, queries: Any, k: int, *, exclude: Exclude = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` ids (n, k) int64 and cosine scores (n, k) float32 per query, best first.

        `exclude` drops ids from the results: one iterable of ids for all queries, or a
        sequence of iterables, one per query. Missing places hold id -1 and score -inf.
        """
        q = self._check_vectors(queries, "queries")
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        excl = self._exclude_sets(exclude, len(q))
        out_ids = np.full((len(q), k), -1, dtype=np.int64)
        out_scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        size = self._raw_size()
        if len(q) == 0 or size == 0:
            return out_ids, out_scores
        extra = max((len(e) for e in excl), default=0) if excl else 0
        fetch = min(self._fetch_depth(k + extra), size)
        ids, scores = self._raw_search(q, fetch)
        if not excl and size == len(self._slot):
            n = min(k, ids.shape[1])
            out_ids[:, :n], out_scores[:, :n] = ids[:, :n], scores[:, :n]
            return out_ids, out_scores
        todo = np.arange(len(q))
        while len(todo):
            again = []
            for row, i in enumerate(todo):
                ban = excl[i] if excl else ()
                keep = [j for j, x in enumerate(ids[row].tolist()) if x >= 0 and x not in ban][:k]
                # an approximate index can push live ids below the fetched depth: fetch deeper
                if len(keep) < k and fetch < size:
                    again.append(i)
                    continue
                out_ids[i, :len(keep)] = ids[row, keep]
                out_scores[i, :len(keep)] = scores[row, keep]
            todo = np.asarray(again, dtype=np.int64)
            if len(todo):
                fetch = min(fetch * 2, size)
                ids, scores = self._raw_search(q[todo], fetch)
        return out_ids, out_scores

    def get(self, ids: Any) -> np.ndarray:
        """The stored (normalised) vectors of `ids`, (n, dim) float32; KeyError for unknown ids."""
        ids_arr = self._check_ids(ids)
        missing = [i for i in ids_arr.tolist() if i not in self._slot]
        if missing:
            raise KeyError(f"ids not in the index: {missing[:10]}")
        if len(ids_arr) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._get(ids_arr)

    def ids(self) -> np.ndarray:
        """All live ids, in storage order."""
        return np.fromiter(self._slot.keys(), dtype=np.int64, count=len(self._slot))

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, item_id: object) -> bool:
        try:
            return int(item_id) in self._slot  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, n={len(self)}, {self.params()})"

    # ---- persistence ------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """Constructor parameters besides `dim` (round-trip through config.json)."""
        return {"threads": self.threads}

    def config(self) -> dict[str, Any]:
        """kind, dim, params and size: what config.json holds besides its hash."""
        return {"kind": self.kind, "dim": self.dim, "params": self.params(), "n": len(self)}

    def save(self, folder: str | Path) -> Path:
        """Write config.json (with a config hash) and the arrays to `folder`; returns it."""
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        self._save_arrays(path)
        cfg = self.config()
        cfg["config_hash"] = config_hash(cfg)
        (path / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> BaseVectorIndex:
        """Read an index written by `save`."""
        path = Path(folder)
        cfg = read_config(path)
        if cfg["kind"] != cls.kind:
            raise ValueError(f"{path} holds a {cfg['kind']!r} index, not {cls.kind!r}")
        index = cls(cfg["dim"], **cfg["params"])
        index._load_arrays(path)
        if len(index) != cfg["n"]:
            raise ValueError(f"{path}: config says {cfg['n']} vectors, arrays hold {len(index)}")
        return index

    def _save_arrays(self, path: Path) -> None:
        ids = self.ids()
        np.save(path / "ids.npy", ids)
        np.save(path / "vectors.npy", self._get(ids) if len(ids) else np.zeros((0, self.dim), np.float32))

    def _load_arrays(self, path: Path) -> None:
        ids, vecs = np.load(path / "ids.npy"), np.load(path / "vectors.npy")
        if len(ids):
            self._add(ids.astype(np.int64), np.ascontiguousarray(vecs, dtype=np.float32))

    # ---- validation -------------------------------------------------------------------
    def _check_ids(self, ids: Any) -> np.ndarray:
        arr = np.atleast_1d(np.asarray(ids))
        if arr.ndim != 1:
            raise ValueError(f"ids must be one-dimensional, got shape {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"ids must be integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64, copy=False)
        if arr.size and arr.min() < 0:
            raise ValueError("ids must be non-negative (-1 marks padding in search results)")
        return arr

    def _check_vectors(self, vectors: Any, what: str) -> np.ndarray:
        arr = np.asarray(vectors, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise ValueError(f"{what} must be 2-D (n, {self.dim}), got shape {arr.shape}")
        if arr.shape[1] != self.dim:
            raise ValueError(f"{what} have dim {arr.shape[1]}, the index expects dim {self.dim}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{what} contain NaN or infinite values")
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        if (norms == 0).any():
            raise ValueError(f"{what} contain all-zero rows, which have no direction")
        return np.ascontiguousarray(arr / norms, dtype=np.float32)

    @staticmethod
    def _exclude_sets(exclude: Exclude, n: int) -> list[set[int]]:
        if exclude is None:
            return []
        items = list(exclude)
        if items and all(isinstance(e, Iterable) and not isinstance(e, (str, bytes)) for e in items):
            if len(items) != n:
                raise ValueError(f"per-query exclude has {len(items)} entries for {n} queries")
            return [{int(x) for x in e} for e in items]
        shared = {int(x) for x in items}  # one global list
        return [shared] * n if shared else []

    # ---- subclass hooks ---------------------------------------------------------------
    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Store new (absent, unique) ids with already normalised vectors."""
        raise NotImplementedError

    def _remove(self, ids: np.ndarray) -> None:
        """Delete ids that are all present."""
        raise NotImplementedError

    def _raw_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k over everything stored (1 <= k <= _raw_size()); dead slots may show as -1."""
        raise NotImplementedError

    def _fetch_depth(self, k: int) -> int:
        """How deep a raw search goes to find `k` visible results (tombstones hide some)."""
        return k + self._raw_size() - len(self._slot)

    def _raw_size(self) -> int:
        """Slots a raw search ranks over, tombstones included."""
        return len(self._slot)

    def _get(self, ids: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def read_config(path: Path) -> dict[str, Any]:
    """config.json of a saved index, its hash checked (and removed)."""
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"no config.json in {path}")
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    stored = cfg.pop("config_hash", None)
    if stored != config_hash(cfg):
        raise ValueError(f"{cfg_path}: config hash mismatch (edited or corrupt)")
    return cfg
