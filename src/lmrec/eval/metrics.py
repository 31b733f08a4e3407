"""Ranking metrics over batches of top-K lists.

A batch of lists is `recs`: an (n_users, K) integer array of item indices in rank order, where
-1 pads lists shorter than K. Relevance ("truth") is given per row as a CSR matrix
(rows aligned with `recs`, columns = items), a dense boolean (n_users, n_items) array, or a
sequence of item-index arrays. Every per-user function returns a float64 array of length
n_users; catalog-level metrics (coverage) return one float.

Conventions:
- an item repeated within a list counts once, at its first (best) rank;
- a row whose truth is empty scores 0 (the evaluator never passes such rows);
- Precision@K divides by K even when the list is padded.

Example:
    >>> import numpy as np
    >>> recs = np.array([[5, 3, 1]])
    >>> ndcg(recs, [np.array([1, 7])], k=3).round(4)  # hit at rank 3, |truth| = 2
    array([0.3066])
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp

Truth = sp.spmatrix | sp.sparray | np.ndarray | Sequence[np.ndarray]

__all__ = [
    "truth_matrix", "hits_matrix", "hit_rate", "ndcg", "mrr", "recall", "precision", "ranking_metrics",
    "gains_matrix", "gains_from_arrays", "graded_ndcg", "coverage", "category_matrix", "intra_list_diversity",
    "self_information", "novelty",
]


# --- inputs ---------------------------------------------------------------------------------

def _recs(recs: np.ndarray, k: int | None) -> tuple[np.ndarray, int]:
    """`recs` as a 2-d int64 array cut to k columns, and k (defaults to the list length)."""
    r = np.asarray(recs)
    if r.ndim != 2:
        raise ValueError(f"recs must be a 2-d (n_users, K) array, got shape {r.shape}")
    r = r.astype(np.int64, copy=False)
    k = r.shape[1] if k is None else int(k)
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    return r[:, :k], k


def truth_matrix(truth: Truth, n_rows: int, n_items: int | None = None) -> sp.csr_matrix:
    """Truth in canonical form: a CSR matrix with sorted, unique column indices and no stored zeros.

    Sequences of item arrays are accepted; `n_items` defaults to one past the largest index.
    """
    if isinstance(truth, np.ndarray) and truth.ndim == 2:
        m = sp.csr_matrix(truth.astype(np.float32))
    elif sp.issparse(truth):
        m = sp.csr_matrix(truth, dtype=np.float32, copy=True)
    else:
        lists = [np.asarray(t, dtype=np.int64).ravel() for t in truth]
        cols = np.concatenate(lists) if lists else np.zeros(0, dtype=np.int64)
        rows = np.repeat(np.arange(len(lists)), [len(t) for t in lists])
        width = n_items if n_items is not None else (int(cols.max()) + 1 if len(cols) else 1)
        m = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(lists), width))
    if m.shape[0] != n_rows:
        raise ValueError(f"truth has {m.shape[0]} rows but recs has {n_rows}")
    m.sum_duplicates()  # also sorts the column indices, which the key lookup relies on
    m.eliminate_zeros()
    return m


def _lookup(recs: np.ndarray, m: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """For every cell of `recs`, whether (row, item) is stored in `m` and its value (0 if not)."""
    n, n_cols = m.shape
    valid = (recs >= 0) & (recs < n_cols)
    if m.nnz == 0:
        return np.zeros(recs.shape, bool), np.zeros(recs.shape, np.float64)
    # Encode (row, col) as one int64 key: the keys of a canonical CSR matrix are sorted, so a
    # single searchsorted finds every cell at once without a Python loop over users.
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(m.indptr))
    keys = rows * n_cols + m.indices
    query = np.arange(n, dtype=np.int64)[:, None] * n_cols + np.where(valid, recs, 0)
    pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    found = valid & (keys[pos] == query)
    return found, np.where(found, m.data[pos], 0.0).astype(np.float64)


def _first_occurrence(recs: np.ndarray) -> np.ndarray:
    """True where an entry is a valid item that did not appear earlier in its row."""
    order = np.argsort(recs, axis=1, kind="stable")  # stable: the earliest rank sorts first
    s = np.take_along_axis(recs, order, axis=1)
    repeat = np.zeros(recs.shape, dtype=bool)
    np.put_along_axis(repeat, order[:, 1:], s[:, 1:] == s[:, :-1], axis=1)
    return (recs >= 0) & ~repeat


def _discounts(k: int) -> np.ndarray:
    """1 / log2(rank + 1) for ranks 1..k."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


# --- binary relevance -----------------------------------------------------------------------

def _is_lists(truth: Truth) -> bool:
    return not isinstance(truth, np.ndarray) and not sp.issparse(truth)


def _canon(truth: Truth, recs: np.ndarray) -> sp.csr_matrix:
    """Canonical CSR truth for a batch of lists; list-form truth is sized to cover every index."""
    if _is_lists(truth):
        hi = [int(np.max(t)) for t in truth if len(t)]
        width = max([int(recs.max()) if recs.size else 0, *hi]) + 1
        return truth_matrix(truth, len(recs), width)
    return truth_matrix(truth, len(recs))


def _hits(recs: np.ndarray, m: sp.csr_matrix) -> np.ndarray:
    found, _ = _lookup(recs, m)
    return found & _first_occurrence(recs)


def hits_matrix(recs: np.ndarray, truth: Truth, k: int | None = None) -> np.ndarray:
    """Boolean (n_users, k): whether the item at each rank is relevant (repeats and padding are not)."""
    r, _ = _recs(recs, k)
    return _hits(r, _canon(truth, r))


def _from_hits(hits: np.ndarray, n_truth: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """All binary metrics at cut-off k from a precomputed hit matrix (columns beyond k ignored)."""
    h = hits[:, :k]
    n_hits = h.sum(axis=1).astype(np.float64)
    disc = _discounts(k)[: h.shape[1]]
    dcg = h @ disc
    ideal_n = np.minimum(n_truth, k).astype(np.int64)
    idcg = np.r_[0.0, np.cumsum(_discounts(k))][ideal_n]
    first = np.argmax(h, axis=1) if h.shape[1] else np.zeros(len(h), np.int64)
    any_hit = n_hits > 0
    return {
        "HR": any_hit.astype(np.float64),
        "NDCG": np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0),
        "MRR": np.where(any_hit, 1.0 / (first + 1.0), 0.0),
        "Recall": np.divide(n_hits, n_truth, out=np.zeros_like(n_hits), where=n_truth > 0),
        "Precision": n_hits / k,
    }


def ranking_metrics(recs: np.ndarray, truth: Truth, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """HR, NDCG, MRR, Recall and Precision at every k in `ks`, keyed like 'NDCG@10'."""
    r, _ = _recs(recs, max(ks))
    m = _canon(truth, r)
    hits = _hits(r, m)
    n_truth = np.diff(m.indptr).astype(np.float64)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        for name, values in _from_hits(hits, n_truth, k).items():
            out[f"{name}@{k}"] = values
    return out


def _one(name: str, recs: np.ndarray, truth: Truth, k: int | None) -> np.ndarray:
    r, k = _recs(recs, k)
    m = _canon(truth, r)
    return _from_hits(_hits(r, m), np.diff(m.indptr).astype(np.float64), k)[name]


def hit_rate(recs: np.ndarray, truth: Truth, k: int | None = None) -> np.ndarray:
    """HR@k per user: 1 if any relevant item is in the top k, else 0."""
    return _one("HR", recs, truth, k)


def ndcg(recs: np.ndarray, truth: Truth, k: int | None = None) -> np.ndarray:
    """NDCG@k per user with binary gains, a log2(rank + 1) discount and the ideal DCG of
    min(|truth|, k) relevant items at the top."""
    return _one("NDCG", recs, truth, k)


def mrr(recs: np.ndarray, truth: Truth, k: int | None = None) -> np.ndarray:
    """MRR@k per user: 1 / rank of the first relevant item, 0 when none is in the top k."""
    return _one("MRR", recs, truth, k)


def recall(recs: np.ndarray, truth: Truth, k: int | None = None) -> np.ndarray:
    """Recall@k per user: relevant items in the top k / |truth|."""
    return _one("Recall", recs, truth, k)


def precision(recs: np.ndarray, truth: Truth, k: int | None = None) -> np.ndarray:
    """Precision@k per user: relevant items in the top k / k."""
    return _one("Precision", recs, truth, k)


# --- graded relevance (search) --------------------------------------------------------------

def gains_matrix(judgments: Sequence[dict[int, float]], n_items: int) -> sp.csr_matrix:
    """Per-query graded judgments {item index: grade} as a CSR matrix (queries x items)."""
    rows = np.repeat(np.arange(len(judgments)), [len(j) for j in judgments])
    cols = np.fromiter((i for j in judgments for i in j), dtype=np.int64, count=len(rows))
    vals = np.fromiter((g for j in judgments for g in j.values()), dtype=np.float64, count=len(rows))
    return sp.csr_matrix((vals, (rows, cols)), shape=(len(judgments), n_items))


def gains_from_arrays(query_idx: np.ndarray, item_idx: np.ndarray, grade: np.ndarray,
                      shape: tuple[int, int]) -> sp.csr_matrix:
    """Judgment triples (e.g. a RelevanceSet's columns) as a gains CSR matrix; a (query, item)
    pair judged more than once keeps its highest grade."""
    q, i = np.asarray(query_idx, np.int64), np.asarray(item_idx, np.int64)
    g = np.asarray(grade, np.float64)
    order = np.lexsort((-g, i, q))
    q, i, g = q[order], i[order], g[order]
    first = np.r_[True, (q[1:] != q[:-1]) | (i[1:] != i[:-1])] if len(q) else np.zeros(0, bool)
    return sp.csr_matrix((g[first], (q[first], i[first])), shape=shape)


def graded_ndcg(recs: np.ndarray, gains: sp.spmatrix | np.ndarray, k: int | None = None, *,
                gain: str = "exp") -> np.ndarray:
    """Graded NDCG@k per query.

    `gains` holds each query's judged grades (CSR or dense, queries x items; unjudged = 0).
    `gain="exp"` uses (2^g - 1) / log2(rank + 1), `gain="linear"` uses g / log2(rank + 1).
    The ideal DCG ranks the judged items by gain (only positive gains count). Repeated items
    count once; queries without a positive judgment score 0. Duplicate stored entries are
    summed, so build `gains` with `gains_matrix` or `gains_from_arrays`.
    """
    if gain not in ("exp", "linear"):
        raise ValueError(f"gain must be 'exp' or 'linear', got {gain!r}")
    r, k = _recs(recs, k)
    m = sp.csr_matrix(gains, dtype=np.float64, copy=True)
    if m.shape[0] != len(r):
        raise ValueError(f"gains has {m.shape[0]} rows but recs has {len(r)}")
    m.sum_duplicates()
    m.data = np.exp2(m.data) - 1.0 if gain == "exp" else m.data
    found, g = _lookup(r, m)
    g = np.where(found & _first_occurrence(r), g, 0.0)
    disc = _discounts(k)
    dcg = g @ disc[: r.shape[1]]
    # ideal DCG: sort each row's gains descending and keep the top k
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    keep = m.data > 0
    rows, vals = rows[keep], m.data[keep]
    order = np.lexsort((-vals, rows))
    rows, vals = rows[order], vals[order]
    starts = np.searchsorted(rows, rows, side="left")
    pos = np.arange(len(rows)) - starts
    top = pos < k
    idcg = np.bincount(rows[top], weights=vals[top] * disc[pos[top]], minlength=m.shape[0])
    return np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)


# --- beyond accuracy ------------------------------------------------------------------------

def coverage(recs: np.ndarray, n_candidates: int, k: int | None = None) -> float:
    """Catalog coverage@k: distinct items in any top-k list / number of rankable items."""
    r, _ = _recs(recs, k)
    if n_candidates <= 0:
        raise ValueError("n_candidates must be positive")
    return float(len(np.unique(r[r >= 0])) / n_candidates)


def category_matrix(item_categories: Sequence[Sequence[str]]) -> sp.csr_matrix:
    """Binary item x category CSR matrix from per-item category lists."""
    names: dict[str, int] = {}
    cols = [names.setdefault(c, len(names)) for cats in item_categories for c in dict.fromkeys(cats)]
    rows = np.repeat(np.arange(len(item_categories)), [len(dict.fromkeys(c)) for c in item_categories])
    return sp.csr_matrix((np.ones(len(cols), np.float32), (rows, np.asarray(cols, dtype=np.int64))),
                         shape=(len(item_categories), max(len(names), 1)))


def intra_list_diversity(recs: np.ndarray, k: int | None = None, *, item_vectors: np.ndarray | None = None,
                         item_categories: sp.spmatrix | Sequence[Sequence[str]] | None = None) -> np.ndarray:
    """ILD@k per user: the mean pairwise distance between the items of a list.

    With `item_vectors` (n_items x d) the distance is 1 - cosine similarity; otherwise with
    `item_categories` (per-item lists or an item x category matrix) it is the Jaccard distance
    of the category sets (two items without categories are at distance 0). Lists with fewer
    than two items score 0.
    """
    r, _ = _recs(recs, k)
    n, kk = r.shape
    valid = r >= 0
    safe = np.where(valid, r, 0)
    iu, ju = np.triu_indices(kk, 1)
    pair_ok = valid[:, iu] & valid[:, ju]
    if item_vectors is not None:
        e = np.asarray(item_vectors, dtype=np.float32)[safe]
        norms = np.linalg.norm(e, axis=2, keepdims=True)
        e = np.divide(e, norms, out=np.zeros_like(e), where=norms > 0)
        cos = np.einsum("nid,njd->nij", e, e)
        dist = (1.0 - cos[:, iu, ju]).astype(np.float64)
    elif item_categories is not None:
        c = item_categories if sp.issparse(item_categories) else category_matrix(item_categories)
        c = sp.csr_matrix(c, dtype=np.float32)
        c.data[:] = 1.0
        a, b = safe[:, iu].ravel(), safe[:, ju].ravel()
        inter = np.asarray(c[a].multiply(c[b]).sum(axis=1)).ravel()
        size = np.diff(c.indptr).astype(np.float64)
        union = size[a] + size[b] - inter
        dist = (1.0 - np.divide(inter, union, out=np.ones_like(union), where=union > 0)).reshape(n, -1)
    else:
        raise ValueError("intra_list_diversity needs item_vectors or item_categories")
    n_pairs = pair_ok.sum(axis=1)
    total = np.where(pair_ok, dist, 0.0).sum(axis=1)
    return np.divide(total, n_pairs, out=np.zeros(n, np.float64), where=n_pairs > 0)


def self_information(train: sp.spmatrix, n_users: int | None = None) -> np.ndarray:
    """-log2(p_i) per item, p_i = the fraction of training users who interacted with item i,
    floored at 1 / n_users so unseen items get a finite (maximal) value.

    `n_users` defaults to the number of users with at least one training interaction.
    """
    m = sp.csr_matrix(train, dtype=np.float32, copy=True)
    m.sum_duplicates()
    m.eliminate_zeros()
    m.data[:] = 1.0
    if n_users is None:
        n_users = int((np.diff(m.indptr) > 0).sum())
    n_users = max(int(n_users), 1)
    counts = np.asarray(m.sum(axis=0)).ravel()
    p = np.maximum(counts, 1.0) / n_users
    return -np.log2(np.minimum(p, 1.0))


def novelty(recs: np.ndarray, self_info: np.ndarray, k: int | None = None) -> np.ndarray:
    """Novelty@k per user: the mean self-information of the (non-padding) items in the list."""
    r, _ = _recs(recs, k)
    valid = r >= 0
    si = np.where(valid, np.asarray(self_info, dtype=np.float64)[np.where(valid, r, 0)], 0.0)
    cnt = valid.sum(axis=1)
    return np.divide(si.sum(axis=1), cnt, out=np.zeros(len(r), np.float64), where=cnt > 0)
