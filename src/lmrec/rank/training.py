"""How a ranker is trained and judged offline: a held-out window of the training events
(the ranker's labels), labels for candidate lists, and ranking quality of scored groups (AUC,
NDCG).

The window imitates what the ranker faces at serving time: channels are fitted on the events
before the window, candidates are generated for each window user as of their last earlier
event, and a candidate is positive when the user interacted with it in the window.

Example:
    >>> import numpy as np
    >>> from lmrec.data.dataset import Interactions
    >>> inter = Interactions(np.array([0, 0, 0, 1, 1]), np.array([1, 2, 3, 4, 5]), np.array([1, 2, 3, 1, 2]))
    >>> hist, window = window_split(inter, WindowSpec(size=1, min_history=1))
    >>> window.item.tolist(), len(hist)
    ([3, 5], 3)
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field
from scipy.stats import mannwhitneyu

from lmrec.data.dataset import Interactions
from lmrec.component import ComponentConfig
from lmrec.types import Candidates, EventKind

__all__ = ["WindowSpec", "window_split", "window_folds", "candidate_labels", "auc", "group_auc", "group_ndcg"]


class WindowSpec(ComponentConfig):
    """strategy "user-last": each user's last `size` events (the leave-one-out protocol's
    shape); "time": every event after the (1 - fraction) quantile of timestamps; "random": a
    seeded random `fraction` of each user's events (at least one; the shape of a random
    per-user split, and the only meaningful window for data without a clock, where the other
    two would follow file order). Users keep their window only with at least `min_history`
    events outside it. `max_users` caps the window
    users (a seeded sample) to bound the ranker's training time. `repeats` > 1 adds earlier
    windows (`window_folds`): more training queries for the same data, each fold with the
    channels refitted on its own history ("random": independent draws with seeds seed,
    seed + 1, ...)."""

    strategy: Literal["user-last", "time", "random"] = "user-last"
    size: int = Field(1, ge=1)
    fraction: float = Field(0.1, gt=0, lt=1)
    min_history: int = Field(3, ge=1)
    max_users: int | None = Field(None, ge=1)
    repeats: int = Field(1, ge=1)
    seed: int = 0


def window_split(inter: Interactions, spec: WindowSpec) -> tuple[Interactions, Interactions]:
    """(history, window) of `inter` by `spec`; history keeps every event not in the window."""
    s = inter.sorted()
    n = len(s)
    if n == 0:
        raise ValueError("window_split: no interactions")
    starts = np.r_[0, np.flatnonzero(np.diff(s.user)) + 1]
    ends = np.r_[starts[1:], n]
    in_window = np.zeros(n, dtype=bool)
    if spec.strategy == "user-last":
        pos = np.arange(n) - np.repeat(starts, ends - starts)  # position in the user's history
        length = np.repeat(ends - starts, ends - starts)
        in_window = (pos >= length - spec.size) & (length - spec.size >= spec.min_history)
    elif spec.strategy == "random":
        length = ends - starts
        take = np.maximum(1, np.rint(spec.fraction * length).astype(np.int64))
        # a random order inside each user's events: rank of a uniform key within the user
        key = np.random.default_rng(spec.seed).random(n)
        order = np.lexsort((key, s.user))
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n) - np.repeat(starts, length)
        ok = length - take >= spec.min_history
        in_window = (rank < np.repeat(take, length)) & np.repeat(ok, length)
    else:
        cut = np.quantile(s.timestamp, 1 - spec.fraction)
        late = s.timestamp > cut
        before = np.add.reduceat(~late, starts)  # events before the cut, per user
        in_window = late & (np.repeat(before, ends - starts) >= spec.min_history)
    if spec.max_users is not None:
        users = np.unique(s.user[in_window])
        if len(users) > spec.max_users:
            keep = np.random.default_rng(spec.seed).choice(users, spec.max_users, replace=False)
            in_window &= np.isin(s.user, keep)
    return s.select(~in_window), s.select(in_window)


def window_folds(inter: Interactions, spec: WindowSpec) -> list[tuple[Interactions, Interactions]]:
    """`spec.repeats` (history, window) pairs, latest first: fold r is `window_split` of the
    events left after dropping each user's last r * size events ("user-last") or the events
    after the (1 - r * fraction) quantile of timestamps ("time"); "random" folds are
    independent random windows of all of `inter` (seeds seed + r). Folds without a window are
    left out."""
    folds = []
    if spec.strategy == "random":
        for r in range(spec.repeats):
            hist, window = window_split(inter, spec.model_copy(update={"seed": spec.seed + r}))
            if len(window):
                folds.append((hist, window))
        return folds
    rest = inter
    for r in range(spec.repeats):
        if r:
            s = rest.sorted()
            if spec.strategy == "user-last":
                starts = np.r_[0, np.flatnonzero(np.diff(s.user)) + 1]
                ends = np.r_[starts[1:], len(s)]
                pos = np.arange(len(s)) - np.repeat(starts, ends - starts)
                rest = s.select(pos < np.repeat(ends - starts, ends - starts) - spec.size)
            else:
                rest = s.select(s.timestamp <= np.quantile(s.timestamp, 1 - spec.fraction))
        if not len(rest):
            break
        hist, window = window_split(rest, spec)
        if len(window):
            folds.append((hist, window))
    return folds


def candidate_labels(users: np.ndarray, lists: list[Candidates], truth: Interactions, *,
                     high_value: float = 4.0) -> dict[str, np.ndarray]:
    """Label columns for the flattened candidates of `users`: "click" (the user has any
    `truth` event on the item), "high" (one with value >= high_value, e.g. a high rating) and
    "purchase" (a purchase event)."""
    n_items = int(max([truth.item.max() + 1 if len(truth) else 0]
                      + [int(c.items.max()) + 1 for c in lists if len(c)]))
    base = np.asarray(users, np.int64)[:, None]

    def keyset(mask: np.ndarray) -> np.ndarray:
        return np.unique(truth.user[mask] * n_items + truth.item[mask])

    sets = {"click": keyset(np.ones(len(truth), bool)), "high": keyset(truth.value >= high_value),
            "purchase": keyset(truth.kind == int(EventKind.PURCHASE))}
    keys = np.concatenate([base[j, 0] * n_items + c.items for j, c in enumerate(lists)]) if lists else \
        np.zeros(0, np.int64)
    return {name: np.isin(keys, s).astype(np.float32) for name, s in sets.items()}


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC-AUC of `scores` for binary `labels` (Mann-Whitney U / (n_pos * n_neg)); NaN
    when one class is missing."""
    y = np.asarray(labels) > 0
    s = np.asarray(scores, np.float64)
    if y.all() or not y.any():
        return float("nan")
    u = mannwhitneyu(s[y], s[~y], alternative="two-sided").statistic
    return float(u / (y.sum() * (~y).sum()))


def group_auc(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    """Mean AUC over the groups that have both a positive and a negative."""
    off = np.r_[0, np.cumsum(groups)]
    vals = [auc(scores[a:b], labels[a:b]) for a, b in zip(off[:-1], off[1:])]
    vals = [v for v in vals if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def group_ndcg(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, k: int = 10) -> np.ndarray:
    """Per-group NDCG@k (binary gains) of each group's rows ordered by score, ties by row
    order; groups without a positive get NaN."""
    off = np.r_[0, np.cumsum(groups)]
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    out = np.full(len(groups), np.nan)
    for g, (a, b) in enumerate(zip(off[:-1], off[1:])):
        y = np.asarray(labels[a:b]) > 0
        if not y.any():
            continue
        order = np.lexsort((np.arange(b - a), -np.asarray(scores[a:b])))[:k]
        ideal = disc[:min(int(y.sum()), k)].sum()
        out[g] = float((y[order] * disc[:len(order)]).sum() / ideal)
    return out
