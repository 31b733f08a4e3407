"""A sequential collaborative feature: how often other users went from the user's latest items
to the candidate within a few steps (item-to-item transition counts).

Every event of a user adds one transition from each of that user's `window` previous items
to the new item; a candidate's value for one of the user's latest items is the count of
(latest item -> candidate) transitions divided by the latest item's outgoing transitions.

Example:
    >>> import numpy as np
    >>> from lmrec.data.dataset import Dataset, IdMap, Interactions
    >>> from lmrec.types import Query
    >>> from lmrec.types import Candidates
    >>> inter = Interactions(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 0, 1, 0]), np.array([1, 2, 1, 2, 1]))
    >>> ds = Dataset("d", IdMap("abc"), IdMap("xyz"), inter)
    >>> f = ItemTransitions(window=1, recent=1).fit(inter, ds)
    >>> f.values(Query(user=2), Candidates(np.array([1, 2]), np.zeros(2)))[:, 0].tolist()  # 0 -> 1 twice, 0 -> 2 never
    [1.0, 0.0]
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from lmrec.data.dataset import Dataset, Interactions
from lmrec.component import ComponentConfig
from lmrec.types import Event, session_events
from lmrec.rank.content_features import KeyCounts
from lmrec.rank.features import Feature, PairBatch
from lmrec.recall.transitions import latest_items, transition_pairs

__all__ = ["ItemTransitions", "transition_pairs", "latest_items"]


class TransitionConfig(ComponentConfig):
    """window: how many following events a transition reaches; recent: how many of the
    user's latest items are looked up; decay: weight ratio between consecutive latest items
    in the weighted sum."""

    window: int = Field(3, ge=1)
    recent: int = Field(5, ge=1)
    decay: float = Field(0.7, gt=0, le=1)


class ItemTransitions(Feature):
    """Columns: seq:last (transition rate from the user's latest item), seq:max (the highest
    over the `recent` latest items) and seq:sum (their decay-weighted sum)."""

    name = "sequence"
    Config = TransitionConfig
    config: TransitionConfig

    def _reset(self, dataset: Dataset) -> None:
        self.n_items = dataset.n_items
        self.counts = KeyCounts()
        self.out = np.zeros(self.n_items, np.float64)
        keep = max(self.config.window, self.config.recent)
        self.latest = np.full((dataset.n_users, keep), -1, np.int64)  # latest last, -1 = empty

    def _fit_history(self, history: Interactions) -> None:
        s = history.sorted()
        a, b = transition_pairs(s, self.config.window)
        self.counts.fit(a * self.n_items + b)
        self.out += np.bincount(a, minlength=self.n_items)[:self.n_items]
        latest_items(s, self.latest)

    def _update_one(self, event: Event) -> None:
        if event.item >= self.n_items:
            return  # an item added after fit: no transitions counted for it here
        if event.user >= len(self.latest):
            self.latest = np.r_[self.latest, np.full((event.user + 1 - len(self.latest), self.latest.shape[1]), -1)]
        prev = self.latest[event.user, -self.config.window:]
        for a in prev[prev >= 0]:
            self.counts.add(int(a) * self.n_items + event.item)
            self.out[a] += 1
        self.latest[event.user, :-1] = self.latest[event.user, 1:]
        self.latest[event.user, -1] = event.item

    @property
    def columns(self) -> list[str]:
        return ["seq:last", "seq:max", "seq:sum"]

    def compute(self, batch: PairBatch) -> np.ndarray:
        self._check_fitted()
        n = len(batch)
        out = np.full((n, 3), np.nan, np.float32)
        users, items = batch.users, batch.items
        r = self.config.recent
        latest = np.full((n, r), -1, np.int64)  # each pair's query's latest items, latest last
        known = (users >= 0) & (users < len(self.latest))
        latest[known] = self.latest[users[known], -r:]
        for g, q in enumerate(batch.queries):  # a session: its own latest items (as `update` keeps them)
            if (ev := session_events(q)) is not None:
                last = ev[0][ev[0] < self.n_items][-r:]
                latest[batch.offsets[g]:batch.offsets[g + 1], r - len(last):] = last
        ok = (latest >= 0).any(axis=1) & (items < self.n_items)
        if not ok.any():
            return out
        recent = latest[ok]  # (m, r), latest last
        valid = recent >= 0
        src = np.where(valid, recent, 0)
        rate = self.counts.get((src * self.n_items + items[ok][:, None]).ravel()).reshape(src.shape)
        rate = np.where(valid, rate / np.maximum(self.out[src], 1.0), np.nan)
        has = valid.any(axis=1)
        weights = self.config.decay ** np.arange(r - 1, -1, -1)
        block = np.full((len(src), 3), np.nan)
        block[:, 0] = np.where(valid[:, -1], rate[:, -1], np.nan)
        block[has, 1] = np.nanmax(rate[has], axis=1)
        block[has, 2] = np.nansum(rate[has] * weights, axis=1)
        out[ok] = block
        return out
