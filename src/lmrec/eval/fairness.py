"""Popularity bias and fairness of a set of top-K lists: who gets exposure, and who is served well.

Definitions (the same everywhere in lmrec: the evaluator, the long-tail re-ranker, the reports):

- **popularity** of an item: the number of distinct users who interacted with it in the training
  data of the stage (what the model saw).
- **head**: the ceil(20% x catalog size) most popular items, ties going to the lower item index;
  an item nobody interacted with is never in the head. Everything else is the **long tail**.
- **long-tail share@k**: of all filled slots of all top-k lists, the share holding a long-tail
  item (padding slots are not counted). A popularity ranking scores 0; a uniform random ranking
  scores about 0.8.
- **exposure Gini@k**: the Gini coefficient of how often each rankable item appears in the top-k
  lists, over the whole rankable catalog (items never shown count as 0). 0: every item is shown
  equally often; close to 1: a few items take every slot.
- **user groups**: activity deciles (users ordered by their number of distinct training items,
  cut into ten groups of equal size; d1 the least active) and, when the data set carries them,
  gender and age groups (ML-1M's age bands; ML-100k ages are put in the same bands).

Example:
    >>> import numpy as np
    >>> head_items(np.array([5, 0, 9, 1, 1]), share=0.4).tolist()
    [True, False, True, False, False]
    >>> recs = np.array([[2, 0], [2, 3]])
    >>> round(long_tail_share(recs, head_items(np.array([5, 0, 9, 1, 1]), 0.4)), 2)
    0.25
    >>> round(exposure_gini(recs, 5), 2)
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["HEAD_SHARE", "AGE_BANDS", "item_popularity", "head_items", "long_tail_share", "exposure_gini",
           "activity_deciles", "age_band", "user_groups", "group_metrics"]

#: Share of the catalog that counts as the popular head.
HEAD_SHARE = 0.2

#: Age bands (ML-1M's codes: 1, 18, 25, 35, 45, 50, 56), lower bounds and labels.
AGE_BANDS: tuple[tuple[int, str], ...] = ((0, "under 18"), (18, "18-24"), (25, "25-34"), (35, "35-44"),
                                          (45, "45-49"), (50, "50-55"), (56, "56+"))


def item_popularity(seen: sp.spmatrix, n_items: int | None = None) -> np.ndarray:
    """Distinct users per item of a user x item interaction matrix."""
    m = sp.csr_matrix(seen, copy=True)
    m.sum_duplicates()
    m.eliminate_zeros()
    counts = np.bincount(m.indices, minlength=m.shape[1]).astype(np.int64)
    if n_items is not None and n_items > len(counts):
        counts = np.r_[counts, np.zeros(n_items - len(counts), np.int64)]
    return counts


def head_items(popularity: np.ndarray, share: float = HEAD_SHARE) -> np.ndarray:
    """Boolean mask of the head: the ceil(share x n) most popular items (ties to the lower
    index), never an item of popularity 0."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    pop = np.asarray(popularity, np.float64)
    n = len(pop)
    n_head = min(math.ceil(share * n - 1e-9), int((pop > 0).sum()))
    mask = np.zeros(n, bool)
    if n_head > 0:
        # O(n): the n_head-th largest value, everything above it, then ties at it by lower index
        # (cheap enough for a re-ranker to redo after a batch of events)
        thr = np.partition(pop, n - n_head)[n - n_head]
        mask = pop > thr
        mask[np.flatnonzero(pop == thr)[: n_head - int(mask.sum())]] = True
    return mask


def _cut(recs: np.ndarray, k: int | None) -> np.ndarray:
    r = np.asarray(recs, np.int64)
    if r.ndim != 2:
        raise ValueError(f"recs must be a 2-d (n_users, K) array, got shape {r.shape}")
    return r if k is None else r[:, :k]


def long_tail_share(recs: np.ndarray, head: np.ndarray, k: int | None = None) -> float:
    """Share of the filled top-k slots that hold a long-tail (non-head) item; NaN if none is filled."""
    r = _cut(recs, k)
    filled = r[r >= 0]
    if not len(filled):
        return float("nan")
    head = np.asarray(head, bool)
    in_head = np.zeros(len(filled), bool)
    known = filled < len(head)
    in_head[known] = head[filled[known]]  # items added after the head was fixed are tail
    return float(1.0 - in_head.mean())


def exposure_gini(recs: np.ndarray, n_candidates: int | np.ndarray, k: int | None = None) -> float:
    """Gini coefficient of the items' top-k appearances over the rankable catalog
    (`n_candidates` items, or the array of rankable item indices)."""
    r = _cut(recs, k)
    filled = r[r >= 0]
    if isinstance(n_candidates, (int, np.integer)):
        if n_candidates <= 0:
            raise ValueError("n_candidates must be positive")
        counts = np.bincount(filled, minlength=int(n_candidates))[: int(n_candidates)]
    else:
        cand = np.asarray(n_candidates, np.int64)
        counts = np.bincount(filled, minlength=int(cand.max()) + 1 if len(cand) else 0)[cand]
    n, total = len(counts), counts.sum()
    if n == 0 or total == 0:
        return float("nan")
    x = np.sort(counts).astype(np.float64)
    return float(((2 * np.arange(1, n + 1) - n - 1) @ x) / (n * total))


def activity_deciles(activity: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Ten groups of equal size by activity (ties broken by user order): per-user labels
    'd1'..'d10' and, per decile, its activity range ('1-19')."""
    a = np.asarray(activity)
    n = len(a)
    order = np.argsort(a, kind="stable")
    dec = np.empty(n, np.int64)
    dec[order] = np.arange(n) * 10 // max(n, 1)
    labels = np.array([f"d{d + 1}" for d in dec], dtype=object)
    ranges = []
    for d in range(10):
        v = a[dec == d]
        ranges.append(f"{int(v.min())}-{int(v.max())}" if len(v) else "")
    return labels, ranges


def age_band(age: Any) -> str | None:
    """The ML-1M age band of an age (or of an ML-1M age code); None for a missing age."""
    if age is None or isinstance(age, bool):
        return None
    try:
        a = float(age)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(a):
        return None
    label = AGE_BANDS[0][1]
    for low, name in AGE_BANDS:
        if a >= low:
            label = name
    return label


def user_groups(users: np.ndarray, activity: np.ndarray,
                attributes: Mapping[str, Sequence[Any]] | None = None) -> dict[str, tuple[np.ndarray, dict[str, str]]]:
    """Per grouping ('activity', and 'gender' / 'age' when `attributes` has them): each evaluated
    user's group label (None: unknown) and a description per label. `activity` is aligned with
    `users`; `attributes` are indexed by user index (shorter columns: unknown)."""
    users = np.asarray(users, np.int64)
    if len(activity) != len(users):
        raise ValueError(f"activity has {len(activity)} values for {len(users)} users")
    labels, ranges = activity_deciles(np.asarray(activity))
    out: dict[str, tuple[np.ndarray, dict[str, str]]] = {
        "activity": (labels, {f"d{d + 1}": f"{ranges[d]} items" for d in range(10) if ranges[d]})}
    attrs = attributes or {}

    def column(name: str) -> list[Any]:
        values = list(attrs.get(name) or [])
        return [values[u] if 0 <= u < len(values) else None for u in users]

    if any(v is not None for v in column("gender")):
        g = np.array([None if v in (None, "") else str(v) for v in column("gender")], dtype=object)
        out["gender"] = (g, {})
    if any(v is not None for v in column("age")):
        out["age"] = (np.array([age_band(v) for v in column("age")], dtype=object), {})
    return out


def _sort_key(by: str, label: str) -> tuple[int, str]:
    if by == "activity":
        return int(label[1:]), ""
    if by == "age":
        names = [n for _, n in AGE_BANDS]
        return (names.index(label), "") if label in names else (len(names), label)
    return 0, label


def group_metrics(per_user: Mapping[str, np.ndarray], groups: Mapping[str, tuple[np.ndarray, dict[str, str]]],
                  metrics: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Mean (and standard error) of each per-user metric in `metrics` within every group:
    {grouping: [{"group", "users", "about", metric, metric_se, ...}, ...]} in group order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for by, (labels, about) in groups.items():
        rows = []
        labels = np.array([None if x is None else str(x) for x in labels], dtype=object)
        present = sorted({x for x in labels if x is not None}, key=lambda s: _sort_key(by, s))
        for g in present:
            sel = np.asarray(labels == g, bool)
            row: dict[str, Any] = {"group": g, "users": int(sel.sum())}
            if about.get(g):
                row["about"] = about[g]
            for m in metrics:
                if m not in per_user:
                    continue
                v = np.asarray(per_user[m], np.float64)[sel]
                row[m] = round(float(v.mean()), 6)
                row[f"{m}_se"] = round(float(v.std(ddof=1) / np.sqrt(len(v))), 6) if len(v) > 1 else None
            rows.append(row)
        out[by] = rows
    return out
