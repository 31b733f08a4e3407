"""Each user's event history, kept up to date event by event.

The pipeline, the seen-item filter and the explanations read the same history, so an event
given to `update` is excluded from the very next recommendation and can be the "because you
watched" item of the next explanation.

Example:
    >>> import numpy as np
    >>> from lmrec.data.dataset import Interactions
    >>> h = UserHistory().fit(Interactions(np.array([0, 0, 1]), np.array([3, 1, 2]), np.array([5, 9, 7])), 2)
    >>> h.items(0).tolist(), h.last_time(0)
    ([3, 1], 9)
    >>> h.update([Event(0, 4, 12)]); h.items(0).tolist()
    [3, 1, 4]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np
import scipy.sparse as sp

from lmrec.data.dataset import Interactions
from lmrec.types import Event

__all__ = ["UserHistory"]


class UserHistory:
    """Per-user (item, timestamp, value) sequences in (timestamp, item) order.

    Fitted histories sit in CSR-like arrays; events that arrive later are kept per user and
    merged on read, so `update` is O(1) for an event newer than the user's last one.
    """

    def __init__(self) -> None:
        self.n_users = 0
        self._indptr = np.zeros(1, dtype=np.int64)
        self._items = np.zeros(0, dtype=np.int64)
        self._ts = np.zeros(0, dtype=np.int64)
        self._val = np.zeros(0, dtype=np.float32)
        self._extra: dict[int, list[tuple[int, int, float]]] = {}
        self._n_extra = 0
        # a user's fitted and later events merged, kept until their next event (the number of
        # later events tells whether it is current)
        self._merged: dict[int, tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}

    def fit(self, inter: Interactions, n_users: int) -> Self:
        s = inter.sorted()
        self.n_users = max(int(n_users), int(s.user.max()) + 1 if len(s) else 0)
        self._indptr = np.searchsorted(s.user, np.arange(self.n_users + 1)).astype(np.int64)
        self._items, self._ts, self._val = s.item.copy(), s.timestamp.copy(), s.value.copy()
        self._extra = {}
        self._n_extra = 0
        self._merged = {}
        return self

    def update(self, events: Sequence[Event]) -> None:
        """Append events (any user index; new users grow the table)."""
        for event in events:
            if event.user < 0 or event.item < 0:
                raise ValueError(f"event user / item index must be >= 0, got user={event.user} item={event.item}")
        top = max((e.user for e in events), default=-1)
        if top >= self.n_users:
            self._indptr = np.r_[self._indptr, np.full(top + 1 - self.n_users, self._indptr[-1])]
            self.n_users = top + 1
        for event in events:
            self._extra.setdefault(event.user, []).append((int(event.timestamp), int(event.item), float(event.value)))
            self._n_extra += 1
        if self._n_extra > max(100_000, len(self._items)):
            self.compact()

    def forget(self, u: int) -> int:
        """Erase user u's events (their row stays, empty); returns how many there were."""
        if u < 0 or u >= self.n_users:
            return 0
        n = self.n_events(u)
        a, b = int(self._indptr[u]), int(self._indptr[u + 1])
        if b > a:
            keep = np.r_[0:a, b:len(self._items)]
            self._items, self._ts, self._val = self._items[keep], self._ts[keep], self._val[keep]
            self._indptr = np.r_[self._indptr[:u + 1], self._indptr[u + 1:] - (b - a)]
        self._n_extra -= len(self._extra.pop(u, ()))
        self._merged.pop(u, None)
        return n

    def compact(self) -> None:
        """Merge the events that arrived since `fit` into the flat arrays (reads get cheaper;
        the histories do not change)."""
        if not self._extra:
            return
        users, items, ts, vals = [np.repeat(np.arange(self.n_users), np.diff(self._indptr))], [self._items], \
            [self._ts], [self._val]
        for u, ev in self._extra.items():
            et, ei, evv = (np.array(c) for c in zip(*ev))
            users.append(np.full(len(ev), u, np.int64))
            items.append(ei.astype(np.int64))
            ts.append(et.astype(np.int64))
            vals.append(evv.astype(np.float32))
        inter = Interactions(np.concatenate(users), np.concatenate(items), np.concatenate(ts),
                             value=np.concatenate(vals))
        self.fit(inter, self.n_users)

    def _slice(self, u: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if u < 0 or u >= self.n_users:
            z = np.zeros(0, dtype=np.int64)
            return z, z, np.zeros(0, dtype=np.float32)
        a, b = self._indptr[u], self._indptr[u + 1]
        items, ts, val = self._items[a:b], self._ts[a:b], self._val[a:b]
        extra = self._extra.get(u)
        if extra:
            merged = self._merged.get(u)
            if merged is not None and merged[0] == len(extra):  # a user read several times per request
                return merged[1]
            et, ei, ev = (np.array(c) for c in zip(*extra))
            items, ts, val = np.r_[items, ei], np.r_[ts, et], np.r_[val, ev].astype(np.float32)
            order = np.lexsort((items, ts))
            items, ts, val = items[order], ts[order], val[order]
            if len(self._merged) > 10_000:
                self._merged.clear()
            self._merged[u] = (len(extra), (items, ts, val))
        return items, ts, val

    def items(self, u: int) -> np.ndarray:
        """User u's items in time order (repeats kept); empty for unknown users."""
        return self._slice(u)[0]

    def events(self, u: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(items, timestamps, values) of user u in time order."""
        return self._slice(u)

    def seen(self, u: int) -> np.ndarray:
        """Distinct items user u interacted with (sorted)."""
        return np.unique(self.items(u))

    def n_events(self, u: int) -> int:
        if u < 0 or u >= self.n_users:
            return 0
        return int(self._indptr[u + 1] - self._indptr[u]) + len(self._extra.get(u, ()))

    def last_time(self, u: int, default: int | None = None) -> int | None:
        """Timestamp of user u's latest event (`default` when the user has none)."""
        ts = self._slice(u)[1]
        return int(ts.max()) if len(ts) else default

    def lengths(self) -> np.ndarray:
        """Number of events of every user."""
        out = np.diff(self._indptr)
        for u, ev in self._extra.items():
            out[u] += len(ev)
        return out

    def last_times(self) -> np.ndarray:
        """Latest timestamp of every user (-1 for users without events)."""
        out = np.full(self.n_users, -1, dtype=np.int64)
        has = np.diff(self._indptr) > 0
        if len(self._ts):
            out[has] = np.maximum.reduceat(self._ts, self._indptr[:-1][has])
        for u, ev in self._extra.items():
            out[u] = max(out[u], max(t for t, _, _ in ev))
        return out

    def seen_matrix(self, n_items: int) -> sp.csr_matrix:
        """Binary user x item matrix of everything seen so far."""
        users = np.repeat(np.arange(self.n_users), np.diff(self._indptr))
        items = self._items
        if self._extra:
            eu = np.concatenate([np.full(len(v), u) for u, v in self._extra.items()])
            ei = np.concatenate([[i for _, i, _ in v] for v in self._extra.values()])
            users, items = np.r_[users, eu], np.r_[items, ei]
        n_items = max(n_items, int(items.max()) + 1 if len(items) else 0)
        m = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=(self.n_users, n_items))
        m.sum_duplicates()
        m.data[:] = 1.0
        return m
