"""Core types shared by every stage: event kinds, a behaviour `Event`, a request `Query`, the
users of a batch of requests with their histories (`HistoryBatch`) and the `Candidates` list
that flows between recall, rank and rerank."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol

import numpy as np


class EventKind(IntEnum):
    """Kinds of behaviour events. Stored as int8 codes in `Interactions.kind`."""

    VIEW = 0
    CLICK = 1
    CART = 2
    PURCHASE = 3
    RATING = 4
    IMPRESSION = 5

    @classmethod
    def parse(cls, value: str | int | EventKind) -> EventKind:
        """Parse 'view' / 'VIEW' / 0 into an EventKind; raises ValueError naming the value."""
        if isinstance(value, EventKind):
            return value
        if isinstance(value, (int, np.integer)):
            return cls(int(value))
        try:
            return cls[str(value).strip().upper()]
        except KeyError:
            names = ", ".join(k.name.lower() for k in cls)
            raise ValueError(f"unknown event kind {value!r} (expected one of: {names})") from None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The kinds as the lower-case strings the service and files use ("view", ...)."""
        return tuple(k.name.lower() for k in cls)


@dataclass(frozen=True)
class Query:
    """One request to the pipeline's stages.

    `user` is an internal user index (None: anonymous); `text` a search query (None: plain
    recommendation); `time` the request time in the data's time unit (None: the user's last
    event, which is what offline replays use, so training and serving see the same clock);
    `context` holds per-request business data, e.g. `{"blocked": [item indices]}`; a session
    (an anonymous history, `RecPipeline.recommend_for_history`) has user None and its events in
    time order under `context[SESSION_KEY]`, which the stages after recall read instead of a
    stored history (`session_items`).
    """

    user: int | None = None
    text: str | None = None
    time: int | None = None
    context: Mapping[str, Any] = field(default_factory=dict)


#: `Query.context` key of a session's history: (items int64, times int64, values float32), in
#: (time, item) order
SESSION_KEY = "session"


def session_events(query: Query) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The (items, times, values) of the session a query carries (None for a stored user's)."""
    return query.context.get(SESSION_KEY) if query.context else None


def session_items(query: Query) -> np.ndarray | None:
    """The items of the session a query carries, in time order (None for a stored user's query)."""
    ev = session_events(query)
    return None if ev is None else ev[0]


@dataclass(frozen=True)
class Event:
    """One behaviour event over internal indices: what every stage's `update(events)` takes."""

    user: int
    item: int
    timestamp: int
    kind: EventKind = EventKind.VIEW
    value: float = 1.0


def events_of(inter: Any) -> Iterator[Event]:
    """The rows of an `Interactions` as Events, in (timestamp, user, item) order: the order a
    live system would have seen them in."""
    order = np.lexsort((inter.item, inter.user, inter.timestamp))
    for i in order:
        yield Event(int(inter.user[i]), int(inter.item[i]), int(inter.timestamp[i]),
                    EventKind(int(inter.kind[i])), float(inter.value[i]))


class HistorySource(Protocol):
    """Anything that gives a user's events in time order (`lmrec.rank.history.UserHistory`)."""

    def events(self, u: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


@dataclass
class HistoryBatch:
    """The users of a batch of requests and their histories as of the request: what a recall
    channel reads to build each user's state (`Recommender.user_scores`).

    `users[r]` is the user index of row r (-1: an anonymous session); `items[r]`,
    `times[r]` and `values[r]` the row's events in (time, item) order, repeats kept. Channels
    read the history from here, never from a copy they keep, so an event folded into the
    pipeline's history changes the next request of every channel at once, and a history given
    with the request (a session) is scored without changing anyone else's state.
    """

    users: np.ndarray
    items: list[np.ndarray]
    times: list[np.ndarray]
    values: list[np.ndarray]

    def __post_init__(self) -> None:
        self.users = np.asarray(self.users, dtype=np.int64)
        n = len(self.users)
        if not (len(self.items) == len(self.times) == len(self.values) == n):
            raise ValueError("HistoryBatch: users, items, times and values must have one entry per row")

    def __len__(self) -> int:
        return len(self.users)

    @classmethod
    def of(cls, users: Sequence[int] | np.ndarray, source: HistorySource) -> HistoryBatch:
        """The histories of `users` read from `source` (one read per user)."""
        users = np.asarray(users, dtype=np.int64)
        items, times, values = [], [], []
        for u in users.tolist():
            i, t, v = source.events(int(u))
            items.append(np.asarray(i, np.int64))
            times.append(np.asarray(t, np.int64))
            values.append(np.asarray(v, np.float32))
        return cls(users, items, times, values)

    @classmethod
    def from_matrix(cls, users: Sequence[int] | np.ndarray, matrix: Any) -> HistoryBatch:
        """Histories from the rows of a binary user x item CSR matrix (one event per item, in
        item order, time 0): the fit-time view of models without event order."""
        users = np.asarray(users, dtype=np.int64)
        items = [matrix.indices[matrix.indptr[u]:matrix.indptr[u + 1]].astype(np.int64)
                 if 0 <= u < matrix.shape[0] else np.zeros(0, np.int64) for u in users.tolist()]
        return cls(users, items, [np.zeros(len(i), np.int64) for i in items],
                   [np.ones(len(i), np.float32) for i in items])

    def lengths(self) -> np.ndarray:
        return np.array([len(i) for i in self.items], dtype=np.int64)

    def to_csr(self, n_items: int) -> Any:
        """Binary (rows, n_items) CSR matrix of each row's distinct items (items >= n_items are
        left out: a model fitted on a smaller catalog knows nothing of them)."""
        import scipy.sparse as sp

        cols = [np.unique(i[(i >= 0) & (i < n_items)]) for i in self.items]
        indptr = np.r_[0, np.cumsum([len(c) for c in cols])].astype(np.int64)
        indices = np.concatenate(cols).astype(np.int32) if cols else np.zeros(0, np.int32)
        return sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(cols), n_items))

    def distinct(self, r: int) -> np.ndarray:
        """Row r's distinct items, sorted."""
        return np.unique(self.items[r])

    def rows(self, which: np.ndarray | Sequence[int]) -> HistoryBatch:
        """A batch of the rows at positions `which`."""
        idx = [int(j) for j in which]
        return HistoryBatch(self.users[idx], [self.items[j] for j in idx], [self.times[j] for j in idx],
                            [self.values[j] for j in idx])


@dataclass
class Candidates:
    """A ranked list of candidate items for one query/user.

    `items` are internal item indices (rows of the dataset's item IdMap), `scores` the score
    of the stage that produced the current order. `sources` names the channel(s) that produced
    each item and `stage_scores` keeps every stage's score column so later stages (and
    explanations) can use them. `explanations`, when present, holds one JSON-able dict per
    item (why it was recommended), filled by the pipeline's `recommend(..., explain=True)`.
    """

    items: np.ndarray
    scores: np.ndarray
    sources: list[tuple[str, ...]] | None = None
    stage_scores: dict[str, np.ndarray] = field(default_factory=dict)
    explanations: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        self.items = np.asarray(self.items, dtype=np.int64)
        self.scores = np.asarray(self.scores, dtype=np.float32)
        if self.items.shape != self.scores.shape or self.items.ndim != 1:
            raise ValueError(
                f"Candidates: items {self.items.shape} and scores {self.scores.shape} must be equal 1-d"
            )
        if self.sources is not None and len(self.sources) != len(self.items):
            raise ValueError("Candidates: sources must have one entry per item")
        for name, col in self.stage_scores.items():
            if len(col) != len(self.items):
                raise ValueError(f"Candidates: stage score {name!r} has the wrong length")
        if self.explanations is not None and len(self.explanations) != len(self.items):
            raise ValueError("Candidates: explanations must have one entry per item")

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def empty(cls) -> Candidates:
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))

    @classmethod
    def from_scores(cls, scores: np.ndarray, k: int, source: str | None = None,
                    exclude: np.ndarray | None = None) -> Candidates:
        """Top-k of a dense score vector over the catalog (ties broken by lower item index).

        `exclude` is an array of item indices that must not be returned.
        """
        s = np.asarray(scores, dtype=np.float32).copy()
        if exclude is not None and len(exclude):
            s[np.asarray(exclude, dtype=np.int64)] = -np.inf
        valid = np.isfinite(s)
        n_valid = int(valid.sum())
        k = min(k, n_valid)
        if k <= 0:
            return cls.empty()
        top = topk_indices(s[None, :], k)[0]
        out = cls(top, s[top])
        if source is not None:
            out.sources = [(source,)] * len(top)
            out.stage_scores[source] = out.scores.copy()
        return out

    def top(self, n: int) -> Candidates:
        """The first n candidates (the list is assumed to be in rank order)."""
        return self.take(slice(0, max(int(n), 0)))

    def take(self, index: np.ndarray | slice | list[int], scores: np.ndarray | None = None) -> Candidates:
        """The candidates at `index` (positions: a reorder, a subset or a slice), carrying every
        column along; `scores` replaces the score column of the result when given."""
        pos = np.arange(len(self.items))[index] if isinstance(index, slice) else \
            np.asarray(index, dtype=np.int64).reshape(-1)
        new_scores = self.scores[pos] if scores is None else np.asarray(scores, dtype=np.float32)
        if len(new_scores) != len(pos):
            raise ValueError(f"Candidates.take: {len(new_scores)} scores for {len(pos)} items")
        return Candidates(
            self.items[pos], new_scores,
            None if self.sources is None else [self.sources[i] for i in pos],
            {k: np.asarray(v)[pos] for k, v in self.stage_scores.items()},
            None if self.explanations is None else [self.explanations[i] for i in pos],
        )


def topk_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Row-wise indices of the k largest scores, sorted by score descending.

    Ties are broken by the lower column index, so results are deterministic.
    `scores` is (n_rows, n_cols); returns (n_rows, min(k, n_cols)) int64.
    """
    n_cols = scores.shape[1]
    k = min(k, n_cols)
    if k <= 0:
        return np.zeros((scores.shape[0], 0), dtype=np.int64)
    if k < n_cols:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(scores, part, axis=1)
        # order each row's k items by (score desc, index asc)
        out = np.take_along_axis(part, np.lexsort((part, -vals), axis=1), axis=1).astype(np.int64)
        # argpartition does not say which of several items tied with the k-th score it keeps:
        # only rows with more such ties than places left need the ties settled by lower index
        kth = vals.min(axis=1)
        n_at_least = (scores >= kth[:, None]).sum(axis=1)
        for r in np.flatnonzero(n_at_least > k):
            row = scores[r]
            cand = np.concatenate([np.flatnonzero(row > kth[r]), np.flatnonzero(row == kth[r])])
            out[r] = cand[np.lexsort((cand, -row[cand]))[:k]]
        return out
    order = np.lexsort((np.broadcast_to(np.arange(n_cols), scores.shape), -scores), axis=1)
    return order[:, :k].astype(np.int64)


def grow_rows(a: np.ndarray, n: int, fill: Any = 0) -> np.ndarray:
    """`a` with at least `n` rows, the new ones set to `fill`. The result is a view into a
    buffer with spare capacity (doubling), so growing one row at a time costs amortised O(1)
    rows of copying; pass the returned array back in next time."""
    if len(a) >= n:
        return a
    base = a.base
    if isinstance(base, np.ndarray) and base.dtype == a.dtype and base.shape[1:] == a.shape[1:] \
            and base.flags.writeable and a.flags.c_contiguous and len(base) >= n \
            and base.__array_interface__["data"][0] == a.__array_interface__["data"][0]:
        out = base[:n]
    else:
        buf = np.empty((max(n, 2 * len(a), 16),) + a.shape[1:], dtype=a.dtype)
        buf[:len(a)] = a
        out = buf[:n]
    out[len(a):] = fill
    return out


def not_in(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Boolean mask of the entries of `a` absent from `b` (`~np.isin(a, b)`), without isin's
    sorting overhead for the small arrays of one request."""
    a, b = np.asarray(a), np.asarray(b)
    if not len(b) or not len(a):
        return np.ones(len(a), bool)
    if len(a) * len(b) <= 65_536:
        return (a[:, None] != b[None, :]).all(axis=1)
    return ~np.isin(a, b)


def config_hash(config: dict[str, Any]) -> str:
    """A short, stable hash of a JSON-able config; saved artifacts (models, indexes) carry it."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
