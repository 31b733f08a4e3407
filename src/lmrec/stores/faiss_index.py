"""faiss-backed vector indexes: exact `FaissFlatIndex` and approximate `HNSWIndex`.

Both follow `lmrec.stores.base.BaseVectorIndex` (cosine over normalised vectors,
external int64 ids, upsert `add`, -1 padding). faiss is optional: `pip install lmrec[lm]`.
faiss's thread count is process-wide; each call sets it to the index's `threads`.

Example:
    >>> import numpy as np
    >>> index = HNSWIndex(dim=4, M=16, ef_search=64)
    >>> vecs = np.eye(4, dtype=np.float32)
    >>> index.add([7, 8, 9, 10], vecs)
    >>> index.remove([8])
    1
    >>> index.search(np.array([[0.1, 1.0, 0.5, 0.0]], dtype=np.float32), k=2)[0].tolist()
    [[9, 7]]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lmrec.stores.base import BaseVectorIndex, blas_threads

try:
    import faiss
except ModuleNotFoundError as err:  # pragma: no cover - depends on the environment
    raise ModuleNotFoundError("faiss indexes need `pip install faiss-cpu` (or `pip install lmrec[lm]`)") from err

__all__ = ["FaissFlatIndex", "HNSWIndex"]

#: seed of the HNSW level generator after a save or a load (faiss seeds a new graph with 12345)
_LEVEL_SEED = 12345


class _FaissIndex(BaseVectorIndex):
    """Thread setting shared by the faiss kinds."""

    def _threads(self) -> None:
        if self.threads is not None:
            faiss.omp_set_num_threads(int(self.threads))


class FaissFlatIndex(_FaissIndex):
    """Exact search with faiss `IndexIDMap2(IndexFlatIP)`; faster than numpy on large batches.

    Example:
        >>> index = FaissFlatIndex(dim=2)
        >>> index.add([100], np.array([[0.6, 0.8]], dtype=np.float32))
        >>> index.search(np.array([[0.6, 0.8]], dtype=np.float32), k=1)[0].tolist()
        [[100]]
    """

    kind = "flat"

    def __init__(self, dim: int, *, threads: int | None = 1) -> None:
        super().__init__(dim, threads=threads)
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._threads()
        self._index.add_with_ids(vectors, ids)
        self._slot.update(dict.fromkeys(ids.tolist(), 0))  # faiss keeps the positions

    def _remove(self, ids: np.ndarray) -> None:
        self._index.remove_ids(ids)
        for i in ids.tolist():
            del self._slot[i]

    def _raw_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._threads()
        with blas_threads(self.threads):  # faiss uses BLAS for batches of 20+ queries
            scores, ids = self._index.search(queries, k)
        return ids.astype(np.int64, copy=False), scores.astype(np.float32, copy=False)

    def _get(self, ids: np.ndarray) -> np.ndarray:
        return np.stack([self._index.reconstruct(int(i)) for i in ids.tolist()])

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def _save_arrays(self, path: Path) -> None:
        # storage order, so a loaded copy breaks ties the same way
        np.save(path / "ids.npy", self.ids())
        np.save(path / "vectors.npy", self._index.index.reconstruct_n(0, self._index.ntotal))


class HNSWIndex(_FaissIndex):
    """Approximate search with faiss `IndexHNSWFlat` (inner product).

    faiss cannot delete from an HNSW graph, so `remove` (and the replaced side of an upsert)
    leaves a tombstone that searches skip by fetching deeper; once tombstones pass
    `compact_ratio` of the graph, `compact()` rebuilds it from the live vectors (a full build:
    slow for large indexes, call `compact()` off the request path or raise the ratio).

    Params: `M` (graph degree; 16 or 32), `ef_construction` (build beam), `ef_search` (search
    beam: recall against latency, settable later), `compact_ratio`, `threads`.
    Saved as index.faiss (graph and vectors) plus ids.npy (external id per graph slot, -1 dead).
    faiss draws each new vector's graph level from a generator that index.faiss does not keep:
    it is re-seeded on save and on load, so the same adds after either give the same graph
    (replaying a catalog's changes onto its saved index rebuilds the live graph exactly).

    Example:
        >>> index = HNSWIndex(dim=384, M=32, ef_search=128)
        >>> index.ef_search = 256
    """

    kind = "hnsw"

    def __init__(self, dim: int, *, M: int = 16, ef_construction: int = 200, ef_search: int = 64,
                 compact_ratio: float = 0.2, threads: int | None = 1) -> None:
        super().__init__(dim, threads=threads)
        if not 0.0 < compact_ratio <= 1.0:
            raise ValueError(f"compact_ratio must be in (0, 1], got {compact_ratio}")
        self.M, self.ef_construction = int(M), int(ef_construction)
        self.compact_ratio = float(compact_ratio)
        self._index = self._new_graph()
        self.ef_search = ef_search
        self._label_ids = np.zeros(0, dtype=np.int64)  # graph slot -> external id, -1 = tombstone

    @property
    def ef_search(self) -> int:
        """Search beam width (faiss uses at least k)."""
        return int(self._index.hnsw.efSearch)

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self._index.hnsw.efSearch = int(value)

    @property
    def n_tombstones(self) -> int:
        """Removed or replaced vectors still in the graph."""
        return int(self._index.ntotal) - len(self._slot)

    def params(self) -> dict[str, Any]:
        return {"M": self.M, "ef_construction": self.ef_construction, "ef_search": self.ef_search,
                "compact_ratio": self.compact_ratio, "threads": self.threads}

    def compact(self) -> None:
        """Rebuild the graph from the live vectors, dropping every tombstone."""
        live = np.flatnonzero(self._label_ids[:self._index.ntotal] >= 0)
        ids = self._label_ids[live]
        vecs = self._index.reconstruct_batch(live) if len(live) else np.zeros((0, self.dim), np.float32)
        ef = self.ef_search
        self._index = self._new_graph()  # the old graph is freed here: one copy of the vectors less
        self.ef_search = ef
        self._label_ids = np.zeros(0, dtype=np.int64)
        self._slot.clear()
        if len(ids):
            self._add(ids, vecs)

    def _new_graph(self) -> Any:
        index = faiss.IndexHNSWFlat(self.dim, self.M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        return index

    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        start, m = int(self._index.ntotal), len(ids)
        if start + m > len(self._label_ids):
            grown = np.full(max(start + m, 2 * len(self._label_ids), 16), -1, dtype=np.int64)
            grown[:start] = self._label_ids[:start]
            self._label_ids = grown
        self._threads()
        self._index.add(vectors)
        self._label_ids[start:start + m] = ids
        self._slot.update(zip(ids.tolist(), range(start, start + m)))

    def _remove(self, ids: np.ndarray) -> None:
        for i in ids.tolist():
            self._label_ids[self._slot.pop(i)] = -1
        if self.n_tombstones > self.compact_ratio * self._index.ntotal:
            self.compact()

    def _raw_size(self) -> int:
        return int(self._index.ntotal)

    def _fetch_depth(self, k: int) -> int:
        # expected tombstones among the first results, doubled, plus slack; search() fetches
        # deeper for the rare query that still comes up short
        dead = self.n_tombstones
        return k + min(dead, int(2 * k * dead / max(self._raw_size(), 1)) + 10) if dead else k

    def _raw_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._threads()
        scores, labels = self._index.search(queries, k)
        ids = np.where(labels >= 0, self._label_ids[np.maximum(labels, 0)], -1)
        return ids, np.where(ids >= 0, scores, -np.inf).astype(np.float32)

    def _get(self, ids: np.ndarray) -> np.ndarray:
        return self._index.reconstruct_batch(np.asarray([self._slot[i] for i in ids.tolist()], dtype=np.int64))

    def ids(self) -> np.ndarray:
        labels = self._label_ids[:self._index.ntotal]
        return labels[labels >= 0].copy()

    def _reseed(self) -> None:
        self._index.hnsw.rng = faiss.RandomGenerator(_LEVEL_SEED)

    def _save_arrays(self, path: Path) -> None:
        faiss.write_index(self._index, str(path / "index.faiss"))
        np.save(path / "ids.npy", self._label_ids[:self._index.ntotal])
        self._reseed()   # as a loaded copy will be

    def _load_arrays(self, path: Path) -> None:
        index = faiss.read_index(str(path / "index.faiss"))
        labels = np.load(path / "ids.npy").astype(np.int64)
        if index.d != self.dim or index.ntotal != len(labels):
            raise ValueError(f"{path}: index.faiss (dim {index.d}, {index.ntotal} vectors) does not match "
                             f"config dim {self.dim} / ids.npy ({len(labels)} slots)")
        ef = self.ef_search
        self._index, self._label_ids = index, labels
        self.ef_search = ef
        self._reseed()
        live = np.flatnonzero(labels >= 0)
        self._slot = dict(zip(labels[live].tolist(), live.tolist()))
