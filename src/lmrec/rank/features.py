"""Ranker features. Each feature has an online half, `update(events)`, that folds events
into its state, and a `values(query, candidates)` half that reads the state; `fit(history,
dataset)` builds the same state in one vectorised pass (tests check it equals replaying every
event through `update`). Training the ranker offline therefore computes exactly what a
server computes per request: there is one code path, `compute(PairBatch)`, and a request is
a batch of one.

Registered features (`FEATURES`): "channels" (recall channel scores, catalog z-scores and
ranks, merge score, number of channels), "user" (activity), "popularity" and "recency" (item
counts and ages at the query time, `lmrec.rank.item_features`), "numeric" (numeric item
attributes and their distance to the user's mean), "lm" (LM cosine between the user
profile / recent items / query and the item) and "category" (category and attribute
affinity), both in `lmrec.rank.content_features`, and "sequence" (item-to-item transition
rates from the user's latest items, `lmrec.rank.sequence_features`) and "demographic" (the
item's popularity lift among users sharing the user's attributes, `lmrec.rank.user_features`).

Example:
    >>> from lmrec.testing.toy import toy_dataset
    >>> from lmrec.types import Candidates
    >>> ds = toy_dataset()
    >>> f = UserActivity().fit(ds.interactions, ds)
    >>> f.values(Query(user=0), Candidates(np.array([1, 2]), np.array([0.5, 0.1]))).shape
    (2, 3)
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import numpy as np

from lmrec.data.dataset import Dataset, Interactions
from lmrec.component import FEATURES, Component, ComponentConfig
from lmrec.types import Event, Query, events_of, session_events
from lmrec.types import Candidates

__all__ = ["RANK_PREFIX", "Z_PREFIX", "MERGE_KEY", "PairBatch", "Feature", "FeatureSet", "FEATURES",
           "ChannelFeatures", "UserActivity"]

#: stage_scores keys written by the pipeline's recall / merge stages
RANK_PREFIX = "rank:"  # 1-based position in a channel's list (absent: NaN)
Z_PREFIX = "z:"  # a channel's score z-scored over the whole catalog for this user
MERGE_KEY = "merge"

DAY = 86_400.0


@dataclass
class PairBatch:
    """The (query, candidate) pairs of several requests, flattened: pair j belongs to query
    `group[j]` and is candidate `items[j]`; `stage[name][j]` is the candidate's stage score
    (NaN when its list had none); `times[j]` the query time (-1 when unknown)."""

    queries: list[Query]
    offsets: np.ndarray
    items: np.ndarray
    stage: dict[str, np.ndarray] = field(default_factory=dict)
    n_sources: np.ndarray | None = None

    @classmethod
    def build(cls, queries: Sequence[Query], candidates: Sequence[Candidates]) -> PairBatch:
        if len(queries) != len(candidates):
            raise ValueError(f"{len(queries)} queries but {len(candidates)} candidate lists")
        sizes = np.array([len(c) for c in candidates], dtype=np.int64)
        offsets = np.r_[0, np.cumsum(sizes)]
        items = np.concatenate([c.items for c in candidates]) if len(candidates) else np.zeros(0, np.int64)
        keys = list(dict.fromkeys(k for c in candidates for k in c.stage_scores))
        stage = {}
        for k in keys:
            stage[k] = np.concatenate([np.asarray(c.stage_scores[k], np.float32) if k in c.stage_scores
                                       else np.full(len(c), np.nan, np.float32) for c in candidates]) \
                if len(candidates) else np.zeros(0, np.float32)
        n_src = np.concatenate([np.array([len(s) for s in c.sources], np.float32) if c.sources is not None
                                else np.ones(len(c), np.float32) for c in candidates]) \
            if len(candidates) else np.zeros(0, np.float32)
        return cls(list(queries), offsets, items.astype(np.int64), stage, n_src)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def group(self) -> np.ndarray:
        """Query position of every pair."""
        return np.repeat(np.arange(len(self.queries)), np.diff(self.offsets))

    @property
    def users(self) -> np.ndarray:
        """User index of every pair (-1 for anonymous queries)."""
        u = np.array([-1 if q.user is None else q.user for q in self.queries], dtype=np.int64)
        return u[self.group]

    @property
    def times(self) -> np.ndarray:
        """Query time of every pair (-1 when unknown)."""
        t = np.array([-1 if q.time is None else q.time for q in self.queries], dtype=np.int64)
        return t[self.group]


class Feature(Component):
    """One feature family: a few named columns computed per (query, candidate) pair.

    Subclasses set `name`, `Config`, implement `_reset(dataset)` (empty state sized for the
    data set), `_update_one(event)` (stateless features skip it), `columns` and
    `compute(batch)`; they may override `_fit_history` with a vectorised build that must equal
    replaying the events, and `update` with a vectorised batch update.
    """

    name: ClassVar[str] = "feature"
    Config: ClassVar[type[ComponentConfig]] = ComponentConfig

    def __init__(self, config: ComponentConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.fitted = False

    def fit(self, history: Interactions, dataset: Dataset) -> Self:
        """Build the state from `history` (indices over `dataset`); returns self."""
        self._reset(dataset)
        self._fit_history(history)
        self.fitted = True
        return self

    def _fit_history(self, history: Interactions) -> None:
        self.update(list(events_of(history)))

    def update(self, events: Sequence[Event]) -> None:
        """Fold events (in arrival order) into the state."""
        for event in events:
            self._update_one(event)

    def _update_one(self, event: Event) -> None:  # noqa: B027 - stateless features ignore events
        """Fold one event into the state (stateless features ignore it)."""

    def values(self, query: Query, candidates: Candidates) -> np.ndarray:
        """(len(candidates), len(columns)) float32 values for one request."""
        return self.compute(PairBatch.build([query], [candidates]))

    def embeddings(self, batch: PairBatch) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per-pair vectors for neural rankers as name -> (table, index per pair), see
        `RankData.vectors` (most features have none)."""
        return {}

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"feature {self.name!r} is not fitted; call fit() first")

    @abstractmethod
    def _reset(self, dataset: Dataset) -> None: ...

    @property
    @abstractmethod
    def columns(self) -> list[str]: ...

    @abstractmethod
    def compute(self, batch: PairBatch) -> np.ndarray: ...


class ChannelConfig(ComponentConfig):
    """channels: recall channel names (the pipeline fills them in); zscore / ranks: add each
    channel's catalog z-score and 1-based rank in its list."""

    channels: list[str] = []
    zscore: bool = True
    ranks: bool = True


class ChannelFeatures(Feature):
    """Recall-stage evidence: each channel's raw score, catalog z-score and list rank (NaN
    where the channel did not list the item), the merge score and the number of channels
    that listed the item. Stateless: it reads the candidates' stage scores."""

    name = "channels"
    Config = ChannelConfig
    config: ChannelConfig

    def _reset(self, dataset: Dataset) -> None:
        pass

    def _fit_history(self, history: Interactions) -> None:
        pass

    @property
    def columns(self) -> list[str]:
        cols = []
        for c in self.config.channels:
            cols.append(f"{c}:score")
            if self.config.zscore:
                cols.append(f"{c}:z")
            if self.config.ranks:
                cols.append(f"{c}:rank")
        return cols + ["n_channels", "merge:score"]

    def compute(self, batch: PairBatch) -> np.ndarray:
        nan = np.full(len(batch), np.nan, np.float32)
        cols = []
        for c in self.config.channels:
            cols.append(batch.stage.get(c, nan))
            if self.config.zscore:
                cols.append(batch.stage.get(Z_PREFIX + c, nan))
            if self.config.ranks:
                cols.append(batch.stage.get(RANK_PREFIX + c, nan))
        cols.append(batch.n_sources if batch.n_sources is not None else nan)
        cols.append(batch.stage.get(MERGE_KEY, nan))
        return np.stack(cols, axis=1).astype(np.float32) if cols else np.zeros((len(batch), 0), np.float32)


class UserActivityConfig(ComponentConfig):
    pass


class UserActivity(Feature):
    """How active the user is: log(1 + events), tenure (days from the first event to the
    query time; event positions when the data has no clock) and mean event value (rating)."""

    name = "user"
    Config = UserActivityConfig

    def _reset(self, dataset: Dataset) -> None:
        n = dataset.n_users
        self.count = np.zeros(n, np.float64)
        self.value_sum = np.zeros(n, np.float64)
        self.first = np.full(n, np.iinfo(np.int64).max, np.int64)
        self.scale = DAY if dataset.has_timestamps else 1.0

    def _grow(self, n: int) -> None:
        if n > len(self.count):
            extra = n - len(self.count)
            self.count = np.r_[self.count, np.zeros(extra)]
            self.value_sum = np.r_[self.value_sum, np.zeros(extra)]
            self.first = np.r_[self.first, np.full(extra, np.iinfo(np.int64).max, np.int64)]

    def _fit_history(self, history: Interactions) -> None:
        n = len(self.count)
        self.count += np.bincount(history.user, minlength=n)[:n]
        self.value_sum += np.bincount(history.user, weights=history.value.astype(np.float64), minlength=n)[:n]
        if len(history):
            np.minimum.at(self.first, history.user, history.timestamp)

    def _update_one(self, event: Event) -> None:
        self._grow(event.user + 1)
        self.count[event.user] += 1
        self.value_sum[event.user] += event.value
        self.first[event.user] = min(self.first[event.user], event.timestamp)

    @property
    def columns(self) -> list[str]:
        return ["user:log_events", "user:tenure", "user:mean_value"]

    def compute(self, batch: PairBatch) -> np.ndarray:
        self._check_fitted()
        users, times = batch.users, batch.times
        known = (users >= 0) & (users < len(self.count))
        u = np.where(known, users, 0)
        cnt = np.where(known, self.count[u], 0.0).astype(np.float64)
        first, vsum = self.first[u], np.where(known, self.value_sum[u], 0.0)
        for g, q in enumerate(batch.queries):  # a session: activity of its own events
            if (ev := session_events(q)) is not None:
                rows = slice(batch.offsets[g], batch.offsets[g + 1])
                cnt[rows], vsum[rows] = len(ev[0]), float(np.sum(ev[2]))
                first[rows] = int(ev[1].min()) if len(ev[1]) else 0
        has = cnt > 0
        tenure = np.where(has & (times >= 0), np.maximum(times - first, 0) / self.scale, np.nan)
        mean = np.where(has, vsum / np.maximum(cnt, 1), np.nan)
        return np.stack([np.log1p(cnt), tenure, mean], axis=1).astype(np.float32)


class FeatureSet:
    """The ranker's features in a fixed column order: fit / update / compute them together."""

    def __init__(self, features: Sequence[Feature]) -> None:
        names = [f.name for f in features]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"feature {sorted(dup)[0]!r} is listed twice")
        self.features = list(features)

    def __repr__(self) -> str:
        return f"FeatureSet({[f.name for f in self.features]})"

    def fit(self, history: Interactions, dataset: Dataset) -> Self:
        for f in self.features:
            f.fit(history, dataset)
        return self

    def update(self, events: Sequence[Event]) -> None:
        for f in self.features:
            f.update(events)

    def add_items(self, items: np.ndarray, dataset: Dataset) -> None:
        for f in self.features:
            f.add_items(items, dataset)

    @property
    def columns(self) -> list[str]:
        return [c for f in self.features for c in f.columns]

    def compute(self, batch: PairBatch) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
        """(X (n_pairs, n_columns) float32, embeddings by name as (table, index per pair))."""
        blocks = [f.compute(batch) for f in self.features]
        for f, b in zip(self.features, blocks):
            if b.shape != (len(batch), len(f.columns)):
                raise AssertionError(f"feature {f.name!r} returned {b.shape}, expected {(len(batch), len(f.columns))}")
        X = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(batch), 0), np.float32)
        emb: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for f in self.features:
            emb.update(f.embeddings(batch))
        return X.astype(np.float32), emb

    def values(self, query: Query, candidates: Candidates) -> np.ndarray:
        return self.compute(PairBatch.build([query], [candidates]))[0]
