"""Item-to-item transitions as a recall channel, kept online ("transitions").

Every event of a user adds a transition from each of that user's `window` previous items to
the new item (and the reverse with `symmetric`, i.e. co-occurrence within a window). A user's
score for item j sums, over their `recent` latest items i (the latest weighted 1, the one
before `decay`, ...), the count of i -> j divided by i's outgoing count when `normalize`
(the share of what followed i that was j). The counts are a global statistic: `update`
folds each event in at once (O(window)), so a new co-occurrence changes everyone's next list,
and `fit` builds the same counts in one vectorised pass. `forget` (an erased user) takes a
user's transitions back out, so the counts are those of the remaining events however they
were folded in.

Example:
    >>> import numpy as np
    >>> from lmrec.data.dataset import Dataset, IdMap, Interactions
    >>> from lmrec.types import Event, HistoryBatch
    >>> inter = Interactions(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), np.array([1, 2, 1, 2]))
    >>> ds = Dataset("d", IdMap("ab"), IdMap("xyz"), inter)
    >>> ch = ItemTransitionsChannel(window=1, recent=1).fit(inter, ds)
    >>> s = ch.user_scores(HistoryBatch([0], [np.array([0])], [np.array([1])], [np.array([1.0])]))
    >>> s.top(0, 1, np.array([0]))[0].tolist()  # after x comes y
    [1]
    >>> ch.update([Event(1, 2, 3)] * 3)  # user b goes y -> z three times
    >>> s = ch.user_scores(HistoryBatch([0], [np.array([1])], [np.array([2])], [np.array([1.0])]))
    >>> s.top(0, 1, np.array([1]))[0].tolist()
    [2]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from lmrec.component import ComponentConfig
from lmrec.data.dataset import Dataset, Interactions
from lmrec.recall.base import Recommender
from lmrec.recall.scores import SparseRowScores, UserScores
from lmrec.types import Event, HistoryBatch, grow_rows

__all__ = ["ItemTransitionsChannel", "PairCounts", "transition_pairs", "latest_items"]

_SHIFT = 32  # key = src << 32 | dst: room for 4 billion items, and catalogs can grow


def transition_pairs(s: Interactions, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(from, to) item pairs of every event and each of its user's next `window` events;
    `s` must be sorted by (user, timestamp, item)."""
    n = len(s)
    src, dst = [], []
    for d in range(1, window + 1):
        if n <= d:
            break
        same = s.user[d:] == s.user[:n - d]
        src.append(s.item[:n - d][same])
        dst.append(s.item[d:][same])
    if not src:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(src), np.concatenate(dst)


def latest_items(s: Interactions, out: np.ndarray) -> None:
    """Write each user's latest items into `out` (n_users, width), latest last, -1 padded;
    `s` sorted by (user, timestamp, item)."""
    width = out.shape[1]
    starts = np.searchsorted(s.user, np.arange(len(out) + 1))
    after = starts[s.user + 1] - 1 - np.arange(len(s))  # later events of the same user
    sel = after < width
    out[s.user[sel], width - 1 - after[sel]] = s.item[sel]


class PairCounts:
    """Weighted counts of (src, dst) item pairs with fast access to one source's row: sorted
    keys from the fit plus per-source dicts of later additions, folded in as they grow."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, np.int64)
        self.counts = np.zeros(0, np.float64)
        self.extra: dict[int, dict[int, float]] = {}
        self.n_extra = 0

    def fit(self, src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> None:
        keys = (np.asarray(src, np.int64) << _SHIFT) | np.asarray(dst, np.int64)
        self.keys, inv = np.unique(keys, return_inverse=True)
        w = np.ones(len(keys)) if weights is None else np.asarray(weights, np.float64)
        self.counts = np.bincount(inv, weights=w, minlength=len(self.keys)).astype(np.float64)
        self.extra, self.n_extra = {}, 0

    def add(self, src: int, dst: int, w: float = 1.0) -> None:
        row = self.extra.setdefault(int(src), {})
        row[int(dst)] = row.get(int(dst), 0.0) + w
        self.n_extra += 1
        if self.n_extra > max(50_000, len(self.keys) // 4):
            self.compact()

    def compact(self) -> None:
        if not self.extra:
            return
        k = np.array([(s << _SHIFT) | d for s, row in self.extra.items() for d in row], np.int64)
        v = np.array([w for row in self.extra.values() for w in row.values()], np.float64)
        self.keys, inv = np.unique(np.r_[self.keys, k], return_inverse=True)
        self.counts = np.bincount(inv, weights=np.r_[self.counts, v], minlength=len(self.keys))
        self.extra, self.n_extra = {}, 0

    def get(self, src: int, dst: int) -> float:
        """The count of one pair."""
        key = (int(src) << _SHIFT) | int(dst)
        i = int(np.searchsorted(self.keys, key))
        fitted = float(self.counts[i]) if i < len(self.keys) and int(self.keys[i]) == key else 0.0
        return fitted + self.extra.get(int(src), {}).get(int(dst), 0.0)

    def row(self, src: int) -> tuple[np.ndarray, np.ndarray]:
        """(dst items, counts) of one source, dst sorted."""
        lo, hi = np.searchsorted(self.keys, [src << _SHIFT, (src + 1) << _SHIFT])
        dst = self.keys[lo:hi] & ((1 << _SHIFT) - 1)
        cnt = self.counts[lo:hi]
        more = self.extra.get(int(src))
        if more:
            d = np.fromiter(more, np.int64, len(more))
            c = np.fromiter(more.values(), np.float64, len(more))
            dst, inv = np.unique(np.r_[dst, d], return_inverse=True)
            cnt = np.bincount(inv, weights=np.r_[cnt, c], minlength=len(dst))
        return dst, cnt

    def state(self) -> dict[str, np.ndarray]:
        self.compact()
        return {"pair_keys": self.keys, "pair_counts": self.counts}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.keys, self.counts = state["pair_keys"].astype(np.int64), state["pair_counts"].astype(np.float64)
        self.extra, self.n_extra = {}, 0


class TransitionsConfig(ComponentConfig):
    """window: how many of the user's previous items each event links from; recent: how many
    of the user's latest items a request reads; decay: weight ratio between consecutive
    latest items; normalize: divide by the source item's outgoing count; symmetric: count
    both directions (co-occurrence within the window, order ignored)."""

    window: int = Field(5, ge=1)
    recent: int = Field(10, ge=1)
    decay: float = Field(0.8, gt=0, le=1)
    normalize: bool = True
    symmetric: bool = False


class ItemTransitionsChannel(Recommender):
    """See the module docstring."""

    name = "transitions"
    Config = TransitionsConfig
    config: TransitionsConfig
    history_based = True

    def _fit(self, matrix: sp.csr_matrix, train: Interactions, dataset: Dataset) -> None:
        s = train.sorted()
        src, dst = transition_pairs(s, self.config.window)
        if self.config.symmetric:
            src, dst = np.r_[src, dst], np.r_[dst, src]
        self.pairs = PairCounts()
        self.pairs.fit(src, dst)
        self.out = np.bincount(src, minlength=self.n_items).astype(np.float64)
        width = max(self.config.window, self.config.recent)
        self.latest = np.full((self.n_users, width), -1, np.int64)  # latest last, -1 = empty
        latest_items(s, self.latest)

    # --- online ----------------------------------------------------------------------------
    def update(self, events: Sequence[Event]) -> None:
        self._check_fitted()
        w = self.config.window
        width = self.latest.shape[1]
        for e in events:
            if e.user >= len(self.latest):
                self.latest = grow_rows(self.latest, e.user + 1, -1)
            prev = self.latest[e.user, width - w:]
            prev = prev[prev >= 0]
            if e.item >= len(self.out) or (len(prev) and prev.max() >= len(self.out)):
                self.out = grow_rows(self.out, max(e.item, int(prev.max()) if len(prev) else 0) + 1, 0.0)
            for a in prev.tolist():
                self._count(a, e.item, 1.0)
            self.latest[e.user, :width - 1] = self.latest[e.user, 1:]
            self.latest[e.user, width - 1] = e.item
        self.n_items = max(self.n_items, len(self.out))

    def forget(self, events: Sequence[Event]) -> bool:
        """Un-count erased users' events (a user's whole history, in the order it was counted:
        time order, as `fit` reads it and as events arriving in time order are folded in):
        every transition their sequence added is taken back, and their latest-items rows are
        cleared. So the counts are those of the events that remain, whether the erased events
        were fitted, folded in online, or never seen (a service restarted after the erasure
        catches up on the remaining events only)."""
        self._check_fitted()
        w = self.config.window
        by_user: dict[int, list[int]] = {}
        for e in events:
            by_user.setdefault(int(e.user), []).append(int(e.item))
        for u, items in by_user.items():
            for j, item in enumerate(items):
                for a in items[max(0, j - w):j]:
                    # a transition never counted (events that arrived out of time order were
                    # linked in arrival order) is not taken back: no count goes below zero
                    if self.pairs.get(a, item) >= 1.0 and a < len(self.out) and self.out[a] >= 1.0:
                        self._count(a, item, -1.0)
            if 0 <= u < len(self.latest):
                self.latest[u] = -1
        return True

    def _count(self, a: int, b: int, w: float) -> None:
        """Add w to the transition a -> b (and b -> a with `symmetric`) and the outgoing counts."""
        top = max(a, b)
        if top >= len(self.out):
            self.out = grow_rows(self.out, top + 1, 0.0)
        self.pairs.add(a, b, w)
        self.out[a] += w
        if self.config.symmetric:
            self.pairs.add(b, a, w)
            self.out[b] += w

    def add_items(self, items: np.ndarray, dataset: Dataset) -> None:
        super().add_items(items, dataset)
        self.out = grow_rows(self.out, self.n_items, 0.0)

    # --- scoring ---------------------------------------------------------------------------
    def _row(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        recent = np.asarray(items, np.int64)[-cfg.recent:][::-1]  # latest first
        cols, vals = [], []
        for r, i in enumerate(recent.tolist()):
            if i >= len(self.out) or self.out[i] <= 0:
                continue
            dst, cnt = self.pairs.row(i)
            w = cfg.decay ** r
            cols.append(dst)
            vals.append(w * (cnt / self.out[i] if cfg.normalize else cnt))
        if not cols:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        c, inv = np.unique(np.concatenate(cols), return_inverse=True)
        v = np.bincount(inv, weights=np.concatenate(vals), minlength=len(c))
        return c, v.astype(np.float32)

    def user_scores(self, batch: HistoryBatch) -> UserScores:
        self._check_fitted()
        rows = [self._row(batch.items[r]) for r in range(len(batch))]
        # only items that followed the user's items are listed (no zero-score filler)
        return SparseRowScores([c for c, _ in rows], [v for _, v in rows], self.n_items, fill=False)

    def _score(self, users: np.ndarray) -> np.ndarray:
        out = np.zeros((len(users), self.n_items), np.float32)
        for r, u in enumerate(users.tolist()):
            c, v = self._row(self._history_of(u))
            out[r, c] = v
        return out

    def _history_of(self, u: int) -> np.ndarray:
        """The user's latest items as the channel saw them (the `recent` latest at most)."""
        if u >= len(self.latest):
            return np.zeros(0, np.int64)
        row = self.latest[u]
        return row[row >= 0]

    # --- persistence -----------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return {**self.pairs.state(), "out": np.asarray(self.out[:self.n_items]), "latest": self.latest}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.pairs = PairCounts()
        self.pairs.set_state(state)
        self.out = np.array(state["out"], np.float64)
        self.latest = np.array(state["latest"], np.int64)
