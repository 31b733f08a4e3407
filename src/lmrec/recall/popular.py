"""MostPopular: every user gets the items with the most events, optionally with time decay.

Popularity is a global statistic kept online: `update(events)` adds each event's count, so
a burst of interest moves an item up the very next request, and `fit` gives the state that
replaying the events one by one gives. With `half_life_days` > 0 an event's weight halves
every `half_life_days` days before the latest event seen (data without a clock: positions).

Clock skew: on data with a clock, an event time is read as at most `max_future_seconds` past
the wall clock. Without that bound one event stamped in 2100 would become "the latest event"
and age every real event by decades, zeroing every other count for good.

Example:
    >>> from lmrec.testing.toy import toy_dataset
    >>> from lmrec.types import Event
    >>> ds = toy_dataset()
    >>> model = MostPopular().fit(ds.interactions, ds)
    >>> top = int(model.recommend([0], k=1, exclude_seen=False)[0].items[0])
    >>> model.update([Event(0, 7, 10**9)] * 50)
    >>> int(model.recommend([0], k=1, exclude_seen=False)[0].items[0])
    7
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from typing import Literal

from pydantic import Field, model_validator

from lmrec.component import ComponentConfig
from lmrec.data.dataset import Dataset, Interactions
from lmrec.recall.base import Recommender
from lmrec.recall.scores import ConstantScores, UserScores
from lmrec.types import Event, HistoryBatch, grow_rows

DAY = 86_400.0


class MostPopularConfig(ComponentConfig):
    """half_life_days: 0 counts every event fully; > 0 halves an event's weight every this
    many days before the latest event (time decay, "trending")."""

    half_life_days: float = Field(0.0, ge=0.0)
    max_future_seconds: float = Field(86_400.0, ge=0.0, description="event times past the wall clock by more "
                                                                    "than this count as this far (clock skew)")
    # differential privacy (lmrec.privacy.dp.noisy_counts): None = exact counts. Each user
    # counts at most dp_max_items distinct items, once each, so one user changes the count
    # vector by at most dp_max_items in L1 (Laplace: scale dp_max_items / dp_epsilon) and
    # sqrt(dp_max_items) in L2 (Gaussian: analytic sigma at dp_delta). The noisy counts are
    # released once per fit; online updates are not applied to them (each would need its own
    # noise and budget). Needs half_life_days = 0.
    dp_epsilon: float | None = Field(None, gt=0.0)
    dp_mechanism: Literal["laplace", "gaussian"] = "laplace"
    dp_delta: float = Field(1e-6, gt=0.0, lt=1.0)
    dp_max_items: int = Field(50, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _dp_no_decay(self) -> "MostPopularConfig":
        if self.dp_epsilon is not None and self.half_life_days > 0:
            raise ValueError("dp_epsilon needs half_life_days = 0 (decay weights depend on the latest event time)")
        return self


class MostPopular(Recommender):
    name = "popular"
    Config = MostPopularConfig
    config: MostPopularConfig
    history_based = True  # the same scores for everyone, new users and sessions included

    # counts are kept relative to a reference time t0 (weight 2^((t - t0) / H)); the scores
    # are the counts as of the latest event, so their scale does not drift with time
    counts: np.ndarray
    t0: float
    t_last: float

    def _half_life_s(self) -> float:
        return self.config.half_life_days * (DAY if getattr(self, "clock", True) else 1.0)

    def _times(self, t: np.ndarray) -> np.ndarray:
        """Event times as the decay reads them: clamped to the wall clock + max_future_seconds
        (data with a clock only; positions have no wall clock)."""
        t = np.asarray(t, np.float64)
        if not getattr(self, "clock", True):
            return t
        return np.minimum(t, time.time() + self.config.max_future_seconds)

    def _fit(self, matrix: sp.csr_matrix, train: Interactions, dataset: Dataset) -> None:
        self.clock = dataset.has_timestamps
        h = self._half_life_s()
        times = self._times(train.timestamp)
        self.t_last = float(times.max()) if len(train) else 0.0
        self.t0 = self.t_last
        w = np.ones(len(train))
        if h > 0 and len(train):
            w = np.exp2((times - self.t0) / h)
        self.counts = np.bincount(train.item, weights=w, minlength=self.n_items).astype(np.float64)
        if self.config.dp_epsilon is not None:
            self.counts = self._noisy_counts(train)
        self._cache: ConstantScores | None = None

    def _noisy_counts(self, train: Interactions) -> np.ndarray:
        from lmrec.privacy.dp import bound_contributions, noisy_counts

        cfg = self.config
        assert cfg.dp_epsilon is not None
        keep = bound_contributions(train.user, train.item, cfg.dp_max_items, np.random.default_rng(cfg.seed))
        exact = np.bincount(train.item[keep], minlength=self.n_items).astype(np.float64)
        gauss = cfg.dp_mechanism == "gaussian"
        sensitivity = math.sqrt(cfg.dp_max_items) if gauss else float(cfg.dp_max_items)
        return noisy_counts(exact, epsilon=cfg.dp_epsilon, sensitivity=sensitivity, mechanism=cfg.dp_mechanism,
                            delta=cfg.dp_delta, seed=cfg.seed + 1)

    def update(self, events: Sequence[Event]) -> None:
        if not events or self.config.dp_epsilon is not None:  # DP: the fit's noisy release only
            return
        self._check_fitted()
        h = self._half_life_s()
        items = np.fromiter((e.item for e in events), np.int64, len(events))
        if items.max() >= len(self.counts):
            self.counts = grow_rows(self.counts, int(items.max()) + 1, 0.0)
        if h > 0:
            t = self._times(np.fromiter((e.timestamp for e in events), np.float64, len(events)))
            top = float(t.max())
            if (top - self.t0) / h > 60.0:  # move t0 forward before 2^x can overflow; ratios stay
                self.counts *= math.pow(2.0, -(top - self.t0) / h)
                self.t0 = top
            w = np.exp2((t - self.t0) / h)
            self.t_last = max(self.t_last, top)
        else:
            w = np.ones(len(events))
        np.add.at(self.counts, items, w)
        self.n_items = max(self.n_items, len(self.counts))
        self._cache = None

    def forget(self, events: Sequence[Event]) -> bool:
        """Un-count erased events: each takes back the weight it added (2^((t - t0) / H) at
        the current reference time, so the decay they had since is accounted for); counts
        never go below zero. The noisy DP release is not changed (False)."""
        if self.config.dp_epsilon is not None:
            return False
        self._check_fitted()
        if not events:
            return True
        items = np.fromiter((e.item for e in events), np.int64, len(events))
        keep = items < len(self.counts)
        h = self._half_life_s()
        if h > 0:
            t = self._times(np.fromiter((e.timestamp for e in events), np.float64, len(events)))
            w = np.exp2((t - self.t0) / h)
        else:
            w = np.ones(len(events))
        np.subtract.at(self.counts, items[keep], w[keep])
        np.maximum(self.counts, 0.0, out=self.counts)
        self._cache = None
        return True

    def add_items(self, items: np.ndarray, dataset: Dataset) -> None:
        super().add_items(items, dataset)
        self.counts = grow_rows(self.counts, self.n_items, 0.0)
        self._cache = None

    @property
    def popularity(self) -> np.ndarray:
        """Each item's (decayed) event count as of the latest event."""
        h = self._half_life_s()
        scale = math.pow(2.0, -(self.t_last - self.t0) / h) if h > 0 else 1.0
        out = np.zeros(self.n_items, np.float32)
        n = min(self.n_items, len(self.counts))
        out[:n] = self.counts[:n] * scale
        return out

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity, (len(users), self.n_items)).copy()

    def user_scores(self, batch: HistoryBatch) -> UserScores:
        self._check_fitted()
        if self._cache is None or self._cache.n_items != self.n_items:
            self._cache = ConstantScores(self.popularity)
        return self._cache

    def _state(self) -> dict[str, np.ndarray]:
        return {"counts": np.asarray(self.counts[:self.n_items]),
                "clock": np.array([self.t0, self.t_last, float(getattr(self, "clock", True))])}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.counts = np.array(state["counts"], np.float64)
        self.t0, self.t_last, clock = (float(x) for x in state["clock"])
        self.clock = bool(clock)
        self._cache = None
