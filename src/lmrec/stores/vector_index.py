"""Vector indexes: nearest neighbours by cosine similarity over caller-chosen int64 ids.

Every index stores L2-normalised float32 vectors (they are normalised on `add`), scores by
inner product (= cosine) and speaks in external ids: any non-negative int64 the caller
picks (item indices, say), not necessarily contiguous. `add` is an upsert, `remove`
ignores unknown ids, and `search` pads rows with id -1 / score -inf when fewer than `k`
vectors qualify. Kinds: "exact" (numpy), "flat" and "hnsw" (faiss, `pip install lmrec[lm]`).

Example:
    >>> import numpy as np
    >>> index = build_index("exact", dim=3)
    >>> index.add([10, 42], np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32))
    >>> ids, scores = index.search(np.array([[0.9, 0.1, 0.0]], dtype=np.float32), k=3)
    >>> ids.tolist()
    [[10, 42, -1]]
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lmrec.stores.base import BaseVectorIndex, Exclude, blas_threads, read_config

__all__ = ["VectorIndex", "BaseVectorIndex", "ExactIndex", "build_index", "load_index", "INDEX_KINDS"]

#: kind -> "module:class"; faiss-backed kinds are imported only when asked for (optional dependency)
INDEX_KINDS: dict[str, str] = {
    "exact": "lmrec.stores.vector_index:ExactIndex",
    "flat": "lmrec.stores.faiss_index:FaissFlatIndex",
    "hnsw": "lmrec.stores.faiss_index:HNSWIndex",
}


@runtime_checkable
class VectorIndex(Protocol):
    """What the rest of lmrec relies on; `BaseVectorIndex` implements it."""

    dim: int

    def add(self, ids: Any, vectors: Any) -> None: ...
    def remove(self, ids: Any) -> int: ...
    def search(self, queries: Any, k: int, *, exclude: Exclude = None) -> tuple[np.ndarray, np.ndarray]: ...
    def get(self, ids: Any) -> np.ndarray: ...
    def save(self, folder: str | Path) -> Path: ...
    def __len__(self) -> int: ...
    def __contains__(self, item_id: object) -> bool: ...


class ExactIndex(BaseVectorIndex):
    """Brute-force search with numpy: exact results, ties broken by the lower id.

    Example:
        >>> index = ExactIndex(dim=2)
        >>> index.add([5, 3], np.array([[1.0, 0.0], [1.0, 0.0]], dtype=np.float32))
        >>> index.search(np.array([[1.0, 0.0]], dtype=np.float32), k=2)[0].tolist()
        [[3, 5]]
    """

    kind = "exact"

    def __init__(self, dim: int, *, threads: int | None = 1) -> None:
        super().__init__(dim, threads=threads)
        self._vecs = np.zeros((0, self.dim), dtype=np.float32)  # capacity buffer, rows [:n] live
        self._row_ids = np.zeros(0, dtype=np.int64)

    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        n, m = len(self._slot), len(ids)
        if n + m > len(self._vecs):  # grow geometrically so one-by-one adds stay cheap
            cap = max(n + m, 2 * len(self._vecs), 16)
            vecs = np.empty((cap, self.dim), dtype=np.float32)
            vecs[:n] = self._vecs[:n]
            row_ids = np.full(cap, -1, dtype=np.int64)
            row_ids[:n] = self._row_ids[:n]
            self._vecs, self._row_ids = vecs, row_ids
        self._vecs[n:n + m] = vectors
        self._row_ids[n:n + m] = ids
        self._slot.update(zip(ids.tolist(), range(n, n + m)))

    def _remove(self, ids: np.ndarray) -> None:
        for i in ids.tolist():  # move the last row into the hole
            row, last = self._slot.pop(i), len(self._slot)
            if row != last:
                moved = int(self._row_ids[last])
                self._vecs[row], self._row_ids[row] = self._vecs[last], moved
                self._slot[moved] = row
            self._row_ids[last] = -1

    def _raw_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        # the (queries x vectors) score block stays under ~256 MB however large the batch
        step = max(1, (1 << 26) // max(len(self._slot), 1))
        if len(queries) > step:
            parts = [self._raw_search(queries[i:i + step], k) for i in range(0, len(queries), step)]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        n = len(self._slot)
        with blas_threads(self.threads):
            sims = queries @ self._vecs[:n].T
        if k < n:
            part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            kth = np.take_along_axis(sims, part, axis=1).min(axis=1)
            ties = (sims >= kth[:, None]).sum(axis=1) > k
        else:
            part, ties = np.broadcast_to(np.arange(n), (len(queries), n)), np.zeros(len(queries), bool)
        out_ids = np.empty((len(queries), k), dtype=np.int64)
        out_scores = np.empty((len(queries), k), dtype=np.float32)
        for r in range(len(queries)):
            # scores equal to the k-th may spill past the partition: rank all of them by id
            cand = np.flatnonzero(sims[r] >= kth[r]) if ties[r] else part[r]
            s, ids = sims[r, cand], self._row_ids[cand]
            order = np.lexsort((ids, -s))[:k]
            out_ids[r], out_scores[r] = ids[order], s[order]
        return out_ids, out_scores

    def _get(self, ids: np.ndarray) -> np.ndarray:
        return self._vecs[[self._slot[i] for i in ids.tolist()]]

    def ids(self) -> np.ndarray:
        return self._row_ids[:len(self._slot)].copy()


def _index_class(kind: str) -> type[BaseVectorIndex]:
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {kind!r}; choose from {sorted(INDEX_KINDS)}")
    module, name = INDEX_KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def build_index(kind: str, dim: int, **params: Any) -> BaseVectorIndex:
    """An empty index of `kind` ("exact", "flat" or "hnsw"), e.g. `build_index("hnsw", 384, M=32)`."""
    return _index_class(kind)(dim, **params)


def load_index(folder: str | Path) -> BaseVectorIndex:
    """Read any saved index, choosing the class from config.json's `kind`."""
    return _index_class(read_config(Path(folder))["kind"]).load(folder)
