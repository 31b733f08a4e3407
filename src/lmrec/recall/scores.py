"""A recall channel's scores for a batch of users without scoring the whole catalog.

`Recommender.user_scores(batch)` returns one `UserScores`: what the recall stage needs of a
channel for each row of a `HistoryBatch`:

- `top(row, k, exclude, allowed)`: the channel's k best items (ties broken by the lower item
  index, items in `exclude` or outside `allowed` skipped);
- `at(row, items)`: the raw score of any items (the pool's items the channel did not list);
- `moments(row)`: mean and standard deviation of the score over the whole catalog (the
  merge's z-score), computed exactly from sufficient statistics rather than by scoring every
  item; `moments_without(row, dead)` the same over the catalog without the items `dead`
  (the unavailable ones: deleted or withdrawn items are not part of the catalog a user is
  served, so they do not move anyone's z-scores), at the cost of scoring `dead` only.

Kinds:
- `DenseScores`: a full score matrix (the fallback for any model; what `score` gives).
- `VectorScores`: score = <user vector, item vector> (+ item bias). Exact top-k by one
  matrix product (moments from the same product), or approximate by an HNSW inner-product
  index with the moments from the catalog's first and second moments (`ItemStats`), O(dim^2)
  per user: nothing proportional to the catalog is computed.
- `SparseRowScores`: a sparse score vector per user (item-item models over a sparse
  neighbour matrix): the items with a non-zero score are listed, zero-score items fill the
  rest in index order, exactly as a full sort would.
- `ConstantScores`: the same score vector for every user (popularity), sorted once.

Items beyond a model's own tables (added to the catalog after it was fitted) score 0 and
count as such in the moments, which is what refitting on the same events would give them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from lmrec.types import not_in, topk_indices

__all__ = ["UserScores", "DenseScores", "VectorScores", "SparseRowScores", "ConstantScores", "ItemStats",
           "AnnIndex"]


def _mask(scores: np.ndarray, exclude: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
    """A copy of a score vector with excluded and disallowed items at -inf."""
    s = np.array(scores, dtype=np.float32, copy=True)
    if len(exclude):
        ex = exclude[(exclude >= 0) & (exclude < len(s))]
        s[ex] = -np.inf
    if allowed is not None:
        n = min(len(allowed), len(s))
        s[:n][~allowed[:n]] = -np.inf
        s[n:] = -np.inf
    return s


def _inside(dead: np.ndarray | None, n: int) -> np.ndarray:
    """The entries of the sorted index array `dead` below `n`."""
    if dead is None or not len(dead):
        return np.zeros(0, np.int64)
    d = np.asarray(dead, np.int64)
    return d[:int(np.searchsorted(d, n))]


def _less(n: int, mean: float, std: float, removed: np.ndarray) -> tuple[float, float]:
    """(mean, std) of n values of moments (mean, std) once the values `removed` are taken out."""
    m = n - len(removed)
    if m <= 0:
        return 0.0, 0.0
    x = np.asarray(removed, np.float64)
    s1 = n * mean - x.sum()
    s2 = n * (std * std + mean * mean) - x @ x
    mu = s1 / m
    return float(mu), float(np.sqrt(max(s2 / m - mu * mu, 0.0)))


def _live_moments(scores: np.ndarray, dead: np.ndarray) -> tuple[float, float]:
    """Exact (mean, std) of a full score vector without the entries `dead` (in range)."""
    if not len(dead):
        return float(scores.mean(dtype=np.float64)), float(scores.std(dtype=np.float64))
    keep = np.ones(len(scores), bool)
    keep[dead] = False
    r = scores[keep]
    if not len(r):
        return 0.0, 0.0
    return float(r.mean(dtype=np.float64)), float(r.std(dtype=np.float64))


def _top_of_vector(scores: np.ndarray, k: int, exclude: np.ndarray, allowed: np.ndarray | None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The k best finite entries of one full score vector (ties by lower index)."""
    s = _mask(scores, exclude, allowed)
    if k <= 0 or not len(s):
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    top = topk_indices(s[None, :], k)[0]
    top = top[np.isfinite(s[top])]
    return top, s[top]


class UserScores(ABC):
    """One channel's scores for the rows of a batch (see the module docstring)."""

    n_items: int

    @abstractmethod
    def top(self, row: int, k: int, exclude: np.ndarray, allowed: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """(items, scores) of the row's k best allowed, non-excluded items, best first."""

    @abstractmethod
    def at(self, row: int, items: np.ndarray) -> np.ndarray:
        """Raw float32 scores of `items` for the row."""

    @abstractmethod
    def moments(self, row: int) -> tuple[float, float]:
        """(mean, population standard deviation) of the row's scores over the whole catalog."""

    def moments_without(self, row: int, dead: np.ndarray) -> tuple[float, float]:
        """`moments` over the catalog without the items `dead` (sorted, unique indices; those
        beyond `n_items` are ignored). Default: the whole catalog's moments less the scores of
        `dead` (O(len(dead)) scores), so the result depends only on the items that remain,
        whatever their indices and whatever the dead items are."""
        d = _inside(dead, self.n_items)
        if not len(d):
            return self.moments(row)
        mean, std = self.moments(row)
        return _less(self.n_items, mean, std, self.at(row, d))


class DenseScores(UserScores):
    """Scores held as a full (rows, n_items) matrix."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = np.asarray(scores, dtype=np.float32)
        self.n_items = self.scores.shape[1]

    def top(self, row: int, k: int, exclude: np.ndarray, allowed: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        return _top_of_vector(self.scores[row], k, exclude, allowed)

    def at(self, row: int, items: np.ndarray) -> np.ndarray:
        return self.scores[row, np.asarray(items, np.int64)]

    def moments(self, row: int) -> tuple[float, float]:
        r = self.scores[row]
        return float(r.mean(dtype=np.float64)), float(r.std(dtype=np.float64))

    def moments_without(self, row: int, dead: np.ndarray) -> tuple[float, float]:
        return _live_moments(self.scores[row], _inside(dead, self.n_items))


@dataclass
class ItemStats:
    """Sufficient statistics of an item table V (n, d) with optional bias b (n,) over a
    catalog of `n_items` >= n items (the others are zero rows): the sums S1 = sum v,
    S2 = sum v v^T, sums of b, b^2 and v b. `moments(u)` gives the mean and standard deviation of
    <u, v_i> + b_i over the catalog in O(d^2)."""

    n_items: int
    s1: np.ndarray
    s2: np.ndarray
    b1: float = 0.0
    b2: float = 0.0
    vb: np.ndarray | None = None

    @classmethod
    def of(cls, vectors: np.ndarray, bias: np.ndarray | None = None, n_items: int | None = None) -> ItemStats:
        v = np.asarray(vectors, np.float64)
        n = len(v) if n_items is None else int(n_items)
        if bias is None:
            return cls(n, v.sum(axis=0), v.T @ v)
        b = np.asarray(bias, np.float64)
        return cls(n, v.sum(axis=0), v.T @ v, float(b.sum()), float(b @ b), v.T @ b)

    def add_row(self, old: np.ndarray | None, new: np.ndarray) -> None:
        """Replace one item's vector `old` (None: a zero row, e.g. a new item) by `new`
        (biases unchanged; `grow` sets the catalog size)."""
        if old is not None:
            o = np.asarray(old, np.float64)
            self.s1 -= o
            self.s2 -= np.outer(o, o)
        v = np.asarray(new, np.float64)
        self.s1 += v
        self.s2 += np.outer(v, v)

    def grow(self, n_items: int) -> None:
        """The catalog now has `n_items` items (the new ones are zero rows)."""
        self.n_items = max(self.n_items, int(n_items))

    def moments(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) per row of the user vectors `users` (m, d)."""
        u = np.asarray(users, np.float64)
        n = max(self.n_items, 1)
        first = u @ self.s1 + self.b1
        second = ((u @ self.s2) * u).sum(axis=1) + self.b2  # u^T S2 u per row, as BLAS products
        if self.vb is not None:
            second = second + 2.0 * (u @ self.vb)
        mean = first / n
        var = np.maximum(second / n - mean * mean, 0.0)
        return mean, np.sqrt(var)


class AnnIndex:
    """Approximate maximum-inner-product search over an item table: a faiss HNSW graph on
    the inner product (vectors augmented with the bias as one more coordinate). Built once per
    table; `add` appends rows for new items."""

    def __init__(self, vectors: np.ndarray, bias: np.ndarray | None = None, *, M: int = 16,
                 ef_construction: int = 64, ef_search: int = 128) -> None:
        import faiss

        self.ef_search = int(ef_search)
        v = self._augment(vectors, bias)
        self.index = faiss.IndexHNSWFlat(v.shape[1], int(M), faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = int(ef_construction)
        self.index.hnsw.efSearch = self.ef_search
        if len(v):
            self.index.add(v)
        self.with_bias = bias is not None

    @staticmethod
    def _augment(vectors: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
        v = np.ascontiguousarray(vectors, dtype=np.float32)
        if bias is not None:
            v = np.ascontiguousarray(np.concatenate([v, np.asarray(bias, np.float32)[:, None]], axis=1))
        return v

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, vectors: np.ndarray, bias: np.ndarray | None = None) -> None:
        """Append rows (the next item indices)."""
        v = self._augment(vectors, bias if self.with_bias else None)
        if self.with_bias and bias is None:
            v = np.concatenate([v, np.zeros((len(v), 1), np.float32)], axis=1)
        self.index.add(np.ascontiguousarray(v))

    def search(self, user: np.ndarray, k: int) -> np.ndarray:
        """Up to k item indices of high inner product with `user` (no particular order)."""
        import faiss

        q = np.asarray(user, np.float32).reshape(1, -1)
        if self.with_bias:
            q = np.concatenate([q, np.ones((1, 1), np.float32)], axis=1)
        k = min(int(k), len(self))
        if k <= 0:
            return np.zeros(0, np.int64)
        params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
        _, ids = self.index.search(np.ascontiguousarray(q), k, params=params)
        ids = ids[0]
        return ids[ids >= 0].astype(np.int64)


class VectorScores(UserScores):
    """score(row, i) = <users[row], items[i]> (+ bias[i]); items beyond the table score 0."""

    def __init__(self, users: np.ndarray, items: np.ndarray, stats: ItemStats, bias: np.ndarray | None = None,
                 index: AnnIndex | None = None, n_items: int | None = None) -> None:
        self.users = np.asarray(users, np.float32)
        self.items, self.bias, self.stats, self.index = items, bias, stats, index
        self.n_items = int(n_items if n_items is not None else len(items))
        self._full_rows: dict[int, np.ndarray] = {}
        if index is not None and len(self.users):  # sub-linear: moments from the sufficient statistics
            self._mean, self._std = stats.moments(self.users)

    def _full(self, row: int) -> np.ndarray:
        """The row's scores over the whole catalog (the exact path computes them anyway, and
        then takes the moments from them too)."""
        got = self._full_rows.get(row)
        if got is None:
            s = self.items @ self.users[row]
            if self.bias is not None:
                s = s + self.bias
            if len(s) < self.n_items:
                s = np.concatenate([s, np.zeros(self.n_items - len(s), np.float32)])
            got = self._full_rows[row] = np.asarray(s, np.float32)
        return got

    def top(self, row: int, k: int, exclude: np.ndarray, allowed: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        if self.index is None or k <= 0:
            return _top_of_vector(self._full(row), k, exclude, allowed)
        depth = k + len(exclude)
        n = len(self.index)
        while True:
            found = self.index.search(self.users[row], depth)
            keep = found[not_in(found, exclude)]
            if allowed is not None:
                keep = keep[(keep < len(allowed)) & allowed[np.minimum(keep, len(allowed) - 1)]]
            if len(keep) >= k or depth >= n:
                break
            depth = min(n, depth * 4)
        if len(keep) < k and n < self.n_items:  # items outside the index (score 0) can fill the list
            return _top_of_vector(self._full(row), k, exclude, allowed)
        s = self.at(row, keep)
        order = np.lexsort((keep, -s))[:k]
        return keep[order], s[order]

    def at(self, row: int, items: np.ndarray) -> np.ndarray:
        items = np.asarray(items, np.int64)
        inside = items < len(self.items)
        out = np.zeros(len(items), np.float32)
        idx = items[inside]
        if len(idx):
            s = self.items[idx] @ self.users[row]
            if self.bias is not None:
                s = s + self.bias[idx]
            out[inside] = s
        return out

    def moments(self, row: int) -> tuple[float, float]:
        if self.index is None:
            r = self._full(row)
            return float(r.mean(dtype=np.float64)), float(r.std(dtype=np.float64))
        return float(self._mean[row]), float(self._std[row])

    def moments_without(self, row: int, dead: np.ndarray) -> tuple[float, float]:
        if self.index is None:  # the exact path scores every item anyway: leave the dead ones out
            return _live_moments(self._full(row), _inside(dead, self.n_items))
        return super().moments_without(row, dead)


class SparseRowScores(UserScores):
    """Per row, a sparse score vector (`cols[row]` sorted, `vals[row]`); every other item
    scores 0. With `fill` the top list continues past the positive scores with zero-score
    items in index order (what a full sort gives); without it only items with evidence (a
    positive score) are listed."""

    def __init__(self, cols: list[np.ndarray], vals: list[np.ndarray], n_items: int, *, fill: bool = True) -> None:
        self.cols = [np.asarray(c, np.int64) for c in cols]
        self.vals = [np.asarray(v, np.float32) for v in vals]
        self.n_items = int(n_items)
        self.fill = fill

    def top(self, row: int, k: int, exclude: np.ndarray, allowed: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        cols, vals = self.cols[row], self.vals[row]
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        ok = not_in(cols, exclude)
        if allowed is not None:
            ok &= (cols < len(allowed)) & allowed[np.minimum(cols, max(len(allowed) - 1, 0))]
        cols, vals = cols[ok], vals[ok]
        pos = vals > 0
        order = np.lexsort((cols[pos], -vals[pos]))[:k]
        items, scores = cols[pos][order], vals[pos][order]
        if len(items) == k or not self.fill:
            return items, scores
        # then the zero-score items (explicit zeros and every item without an entry) by index,
        # then the negative ones: the order a full sort of the dense vector gives
        neg = vals < 0
        blocked = np.union1d(np.union1d(exclude, items), cols[neg])
        need = k - len(items)
        zeros = _first_free(self.n_items, blocked, allowed, need)
        items = np.r_[items, zeros]
        scores = np.r_[scores, np.zeros(len(zeros), np.float32)]
        if len(items) < k and neg.any():
            order = np.lexsort((cols[neg], -vals[neg]))[:k - len(items)]
            items = np.r_[items, cols[neg][order]]
            scores = np.r_[scores, vals[neg][order]]
        return items.astype(np.int64), scores.astype(np.float32)

    def at(self, row: int, items: np.ndarray) -> np.ndarray:
        items = np.asarray(items, np.int64)
        cols, vals = self.cols[row], self.vals[row]
        pos = np.searchsorted(cols, items)
        hit = (pos < len(cols)) & (cols[np.minimum(pos, max(len(cols) - 1, 0))] == items) if len(cols) else \
            np.zeros(len(items), bool)
        out = np.zeros(len(items), np.float32)
        out[hit] = vals[pos[hit]]
        return out

    def moments(self, row: int) -> tuple[float, float]:
        return self._moments(self.vals[row], self.n_items)

    def moments_without(self, row: int, dead: np.ndarray) -> tuple[float, float]:
        d = _inside(dead, self.n_items)
        if not len(d):
            return self.moments(row)
        return self._moments(self.vals[row][not_in(self.cols[row], d)], self.n_items - len(d))

    @staticmethod
    def _moments(vals: np.ndarray, n: int) -> tuple[float, float]:
        """Moments of n values: `vals` and zeros."""
        if n <= 0:
            return 0.0, 0.0
        v = vals.astype(np.float64)
        mean = v.sum() / n
        return float(mean), float(np.sqrt(max((v @ v) / n - mean * mean, 0.0)))


def _first_free(n_items: int, blocked: np.ndarray, allowed: np.ndarray | None, need: int) -> np.ndarray:
    """The `need` lowest item indices not in `blocked` (sorted) and allowed."""
    out: list[np.ndarray] = []
    got, start, step = 0, 0, max(2 * need + len(blocked), 64)
    while got < need and start < n_items:
        stop = min(n_items, start + step)
        cand = np.arange(start, stop)
        cand = cand[not_in(cand, blocked)]
        if allowed is not None:
            cand = cand[(cand < len(allowed)) & allowed[np.minimum(cand, max(len(allowed) - 1, 0))]]
        out.append(cand[:need - got])
        got += len(out[-1])
        start = stop
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


class ConstantScores(UserScores):
    """The same score vector for every row; the best items are selected once (a partial
    sort, ties by lower index) and the selection deepens only when a request needs more."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = np.asarray(scores, np.float32)
        self.n_items = len(self.scores)
        self._head = np.zeros(0, np.int64)
        s = self.scores.astype(np.float64)
        self._moments = (float(s.mean()), float(s.std())) if self.n_items else (0.0, 0.0)
        self._live: tuple[np.ndarray | None, tuple[float, float]] = (None, self._moments)

    def _order(self, depth: int) -> np.ndarray:
        if depth > len(self._head) and len(self._head) < self.n_items:
            self._head = topk_indices(self.scores[None, :], max(depth, 2 * len(self._head), 256))[0]
        return self._head[:depth]

    def top(self, row: int, k: int, exclude: np.ndarray, allowed: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        if k <= 0 or not self.n_items:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        depth = k + len(exclude)
        while True:
            head = self._order(depth)
            keep = head[not_in(head, exclude)]
            if allowed is not None:
                keep = keep[(keep < len(allowed)) & allowed[np.minimum(keep, max(len(allowed) - 1, 0))]]
            if len(keep) >= k or depth >= self.n_items:
                break
            depth = min(self.n_items, depth * 4)
        keep = keep[:k]
        return keep.astype(np.int64), self.scores[keep]

    def at(self, row: int, items: np.ndarray) -> np.ndarray:
        return self.scores[np.asarray(items, np.int64)]

    def moments(self, row: int) -> tuple[float, float]:
        return self._moments

    def moments_without(self, row: int, dead: np.ndarray) -> tuple[float, float]:
        # the same for every row and request until the dead set changes (the caller hands the
        # same array while it does not): computed once per change
        d = _inside(dead, self.n_items)
        if not len(d):
            return self._moments
        seen, got = self._live
        if seen is not dead:
            got = _live_moments(self.scores, d)
            self._live = (dead, got)
        return got


class VectorCache:
    """What a vector model keeps for `VectorScores` across requests: the item table's
    `ItemStats` and, when asked for, an `AnnIndex`. Rebuilt when the table object changes;
    `rows_changed` keeps both current when rows are replaced or appended (new items), so a
    new item costs O(dim^2), not a rebuild."""

    def __init__(self) -> None:
        self.table: np.ndarray | None = None
        self.stats: ItemStats | None = None
        self.ann: AnnIndex | None = None
        self.kind = "exact"
        self.stale: set[int] = set()  # graph rows holding an older vector than the table (dead items)

    def get(self, items: np.ndarray, bias: np.ndarray | None, n_items: int, retrieval: tuple[str, dict]
            ) -> tuple[ItemStats, AnnIndex | None]:
        kind, params = retrieval
        if self.table is not items or self.stats is None or self.kind != kind:
            self.stats = ItemStats.of(items, bias, n_items)
            self.ann = AnnIndex(items, bias, **params) if kind == "hnsw" else None
            self.table, self.kind, self.stale = items, kind, set()
        self.stats.grow(n_items)
        return self.stats, self.ann

    def rows_changed(self, table: np.ndarray, rows: np.ndarray, old: np.ndarray | None, n_old: int,
                     dead: np.ndarray | None = None) -> None:
        """`table` (maybe a new array) now holds new vectors at `rows`; `old` holds the
        previous vectors of the rows below `n_old` (the table's old length), in order.
        `dead`: those of `rows` that are unavailable items (deleted or withdrawn): never
        retrieved, and scored from the table, so a new vector of theirs (a deleted item's
        content cleared) leaves the graph as it is until they come back."""
        if self.stats is None:
            return
        rows = np.asarray(rows, np.int64)
        inside = rows[rows < n_old]
        prev = {int(r): o for r, o in zip(inside, old if old is not None else [])}
        for r in rows.tolist():
            self.stats.add_row(prev.get(r), table[r])
        if self.ann is not None:
            new = rows[rows >= n_old]
            if len(new):
                if int(new.min()) != len(self.ann) or len(new) != int(new.max()) - int(new.min()) + 1:
                    self.table = None  # not a contiguous append: rebuild at the next request
                    return
                self.ann.add(table[np.sort(new)])
            gone = set() if dead is None else set(np.asarray(dead, np.int64).tolist())
            for r in inside.tolist():
                if r in gone:
                    if r in prev and not np.array_equal(prev[r], table[r]):
                        self.stale.add(r)
                elif r in self.stale or (r in prev and not np.array_equal(prev[r], table[r])):
                    self.table = None  # a live item's vector changed inside the graph: rebuild (text edits)
                    return
        self.table = table
