"""Item-side ranker features: popularity and recency at the query time, numeric attributes.

Counts are taken "as of" the query time: an offline replay at time t counts only events with
timestamp <= t, which is what a server answering at t could have counted. Data sets without
a clock (Amazon sequences: timestamps are positions) get all-time counts and no recency.

Example:
    >>> tl = ItemTimeline()
    >>> tl.extend(np.array([1, 1, 2]), np.array([10, 20, 15]))
    >>> tl.count_le(np.array([1, 1, 2]), np.array([15, 25, 14])).tolist()
    [1, 2, 0]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmrec.data.dataset import Dataset, Interactions
from lmrec.component import ComponentConfig
from lmrec.types import Event, session_items
from lmrec.rank.features import DAY, Feature, PairBatch

__all__ = ["ItemTimeline", "ItemPopularity", "ItemRecency", "NumericAttributes", "numeric_attributes"]

_TS_BITS = 37  # timestamps must lie in [-2**36, 2**36): seconds over +-2,000 years
_TS_OFF = 1 << (_TS_BITS - 1)
_MERGE_AT = 4096  # pending events merged into the main sorted array beyond this many


class ItemTimeline:
    """Timestamps of every item's events, searchable by (item, time).

    Events live in one sorted int64 key array (item << 37 | timestamp + 2**36) plus a small
    sorted array of events added since the last merge, so an update costs O(pending) and a
    lookup two binary searches.
    """

    def __init__(self) -> None:
        self.keys = np.zeros(0, np.int64)
        self.pending = np.zeros(0, np.int64)
        self.all_ts = np.zeros(0, np.int64)  # every event's timestamp, sorted (window totals)
        self.pending_ts = np.zeros(0, np.int64)

    @staticmethod
    def _key(items: np.ndarray, ts: np.ndarray) -> np.ndarray:
        ts = np.asarray(ts, np.int64)
        if len(ts) and (ts.min() < -_TS_OFF or ts.max() >= _TS_OFF):
            raise ValueError(f"timestamp out of the supported range [-2**36, 2**36): {ts.min()}..{ts.max()}")
        return (np.asarray(items, np.int64) << _TS_BITS) | (ts + _TS_OFF)

    def extend(self, items: np.ndarray, ts: np.ndarray) -> None:
        """Add many events at once (a fit)."""
        self.keys = np.sort(np.r_[self.keys, self._key(items, ts)])
        self.all_ts = np.sort(np.r_[self.all_ts, np.asarray(ts, np.int64)])

    def add(self, item: int, ts: int) -> None:
        """Add one event (an update)."""
        key = self._key(np.array([item]), np.array([ts]))[0]
        self.pending = np.insert(self.pending, np.searchsorted(self.pending, key), key)
        self.pending_ts = np.insert(self.pending_ts, np.searchsorted(self.pending_ts, ts), ts)
        if len(self.pending) > _MERGE_AT:
            self.keys = np.sort(np.r_[self.keys, self.pending])
            self.all_ts = np.sort(np.r_[self.all_ts, self.pending_ts])
            self.pending, self.pending_ts = np.zeros(0, np.int64), np.zeros(0, np.int64)

    def _bounds(self, items: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Search keys of (item, -inf) and just past (item, t)."""
        items = np.asarray(items, np.int64)
        t = np.clip(np.asarray(t, np.int64), -_TS_OFF, _TS_OFF - 2)
        return items << _TS_BITS, self._key(items, t) + 1

    def latest(self) -> int:
        """The latest timestamp seen (0 when empty): "now" for a query without a time."""
        last = [int(a[-1]) for a in (self.all_ts, self.pending_ts) if len(a)]
        return max(last) if last else 0

    def count_le(self, items: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Events of each item with timestamp <= t."""
        lo, hi = self._bounds(items, t)
        n = np.searchsorted(self.keys, hi) - np.searchsorted(self.keys, lo)
        if len(self.pending):
            n += np.searchsorted(self.pending, hi) - np.searchsorted(self.pending, lo)
        return n

    def last_le(self, items: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Latest timestamp <= t of each item's events (float, NaN when none)."""
        lo, hi = self._bounds(items, t)
        out = np.full(len(lo), np.nan)
        for arr in (self.keys, self.pending):
            if not len(arr):
                continue
            pos = np.searchsorted(arr, hi) - 1
            ok = (pos >= 0) & (arr[np.maximum(pos, 0)] >= lo)
            ts = ((arr[np.maximum(pos, 0)] & ((1 << _TS_BITS) - 1)) - _TS_OFF).astype(np.float64)
            out = np.where(ok, np.fmax(out, ts), out)
        return out

    def first(self, items: np.ndarray) -> np.ndarray:
        """Earliest timestamp of each item's events (float, NaN when none)."""
        lo = np.asarray(items, np.int64) << _TS_BITS
        out = np.full(len(lo), np.nan)
        for arr in (self.keys, self.pending):
            if not len(arr):
                continue
            pos = np.searchsorted(arr, lo)
            ok = (pos < len(arr)) & ((arr[np.minimum(pos, len(arr) - 1)] >> _TS_BITS) == np.asarray(items))
            ts = ((arr[np.minimum(pos, len(arr) - 1)] & ((1 << _TS_BITS) - 1)) - _TS_OFF).astype(np.float64)
            out = np.where(ok, np.fmin(out, ts), out)
        return out

    def total_in(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Events of all items with lo < timestamp <= hi."""
        n = np.searchsorted(self.all_ts, hi, side="right") - np.searchsorted(self.all_ts, lo, side="right")
        if len(self.pending_ts):
            n += (np.searchsorted(self.pending_ts, hi, side="right")
                  - np.searchsorted(self.pending_ts, lo, side="right"))
        return n


class _TimelineFeature(Feature):
    """A feature over an ItemTimeline of every event it has seen."""

    def _reset(self, dataset: Dataset) -> None:
        self.timeline = ItemTimeline()
        self.clock = dataset.has_timestamps

    def _fit_history(self, history: Interactions) -> None:
        self.timeline.extend(history.item, history.timestamp)

    def _update_one(self, event: Event) -> None:
        self.timeline.add(event.item, event.timestamp)

    def _times(self, batch: PairBatch) -> np.ndarray:
        """Query time per pair: the timeline's latest time when the query has none, and for
        data without a clock (every count is then all-time)."""
        t = batch.times
        return np.where((t >= 0) & self.clock, t, self.timeline.latest())


class PopularityConfig(ComponentConfig):
    """windows: recent windows in days (data with real timestamps only)."""

    windows: list[float] = [7.0, 30.0]


class ItemPopularity(_TimelineFeature):
    """log(1 + events of the item up to the query time), and per recent window the item's
    log count and its log share of all events in that window (a trend signal)."""

    name = "popularity"
    Config = PopularityConfig
    config: PopularityConfig

    @property
    def columns(self) -> list[str]:
        cols = ["pop:log_count"]
        if getattr(self, "clock", True):
            for w in self.config.windows:
                cols += [f"pop:log_count_{w:g}d", f"pop:log_share_{w:g}d"]
        return cols

    def compute(self, batch: PairBatch) -> np.ndarray:
        self._check_fitted()
        t = self._times(batch)
        count = self.timeline.count_le(batch.items, t)
        cols = [np.log1p(count)]
        if self.clock:
            for w in self.config.windows:
                lo = t - int(w * DAY)
                recent = np.log1p(count - self.timeline.count_le(batch.items, lo))
                cols += [recent, recent - np.log1p(self.timeline.total_in(lo, t))]
        return np.stack(cols, axis=1).astype(np.float32)


class RecencyConfig(ComponentConfig):
    pass


class ItemRecency(_TimelineFeature):
    """Days since the item's first event, since its latest event up to the query time, and
    since its release date (`ItemTable.created_at`, when known). No columns on data without
    a clock."""

    name = "recency"
    Config = RecencyConfig

    def _reset(self, dataset: Dataset) -> None:
        super()._reset(dataset)
        table = dataset.item_table
        created = table.created_at if table is not None else np.full(dataset.n_items, -1)
        self.created = np.where(np.asarray(created) >= 0, np.asarray(created, np.float64), np.nan)

    def add_items(self, items: np.ndarray, dataset: Dataset) -> None:
        table = dataset.item_table
        if table is None or not self.fitted:
            return
        created = np.asarray(table.created_at, np.float64)
        self.created = np.r_[self.created, np.full(max(len(created) - len(self.created), 0), np.nan)]
        self.created[items] = np.where(created[items] >= 0, created[items], np.nan)

    @property
    def columns(self) -> list[str]:
        return ["rec:age_days", "rec:since_last_days", "rec:release_days"] if getattr(self, "clock", True) else []

    def compute(self, batch: PairBatch) -> np.ndarray:
        self._check_fitted()
        if not self.clock:
            return np.zeros((len(batch), 0), np.float32)
        tq = self._times(batch)
        t = tq.astype(np.float64)
        has = self.timeline.count_le(batch.items, tq) > 0
        first = np.where(has, self.timeline.first(batch.items), np.nan)
        last = self.timeline.last_le(batch.items, tq)
        items = batch.items
        created = np.where(items < len(self.created), self.created[np.minimum(items, len(self.created) - 1)], np.nan)
        return np.stack([(t - first) / DAY, (t - last) / DAY, (t - created) / DAY], axis=1).astype(np.float32)


def _as_float(v: Any) -> float:
    if v is None or isinstance(v, bool):
        return np.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return np.nan


def numeric_attributes(dataset: Dataset) -> list[str]:
    """Item attributes that hold numbers for at least half of the items that have a value,
    leaving out identifiers (names ending in "id") and URLs."""
    table = dataset.item_table
    if table is None:
        return []
    out = []
    for name, values in table.attributes.items():
        low = name.lower()
        if low.endswith("id") or "url" in low:
            continue
        present = [v for v in values if v not in (None, "")]
        nums = [x for x in (_as_float(v) for v in present) if np.isfinite(x)]
        if present and len(nums) >= 0.5 * len(present):
            out.append(name)
    return out


class NumericConfig(ComponentConfig):
    """attributes: numeric item attributes to use, or "auto" (see `numeric_attributes`)."""

    attributes: list[str] | str = "auto"


class NumericAttributes(Feature):
    """Each numeric item attribute (e.g. a film's year) and its difference to the mean of the
    user's history (NaN where either is unknown)."""

    name = "numeric"
    Config = NumericConfig
    config: NumericConfig

    def _reset(self, dataset: Dataset) -> None:
        attrs = self.config.attributes
        if attrs == "auto":
            self.attrs = numeric_attributes(dataset)
        elif isinstance(attrs, str):
            raise ValueError(f"numeric.attributes must be a list of names or 'auto', got {attrs!r}")
        else:
            table = dataset.item_table
            known = list(table.attributes) if table is not None else []
            for a in attrs:
                if a not in known:
                    raise ValueError(f"numeric.attributes: {a!r} is not an item attribute; known: {known}")
            self.attrs = list(attrs)
        table = dataset.item_table
        self.item_values = np.stack([np.array([_as_float(v) for v in table.attributes[a]]) for a in self.attrs],
                                    axis=1) if self.attrs else np.zeros((dataset.n_items, 0))
        self.sums = np.zeros((dataset.n_users, len(self.attrs)))
        self.counts = np.zeros((dataset.n_users, len(self.attrs)))

    def _grow(self, n: int) -> None:
        if n > len(self.sums):
            pad = np.zeros((n - len(self.sums), len(self.attrs)))
            self.sums, self.counts = np.r_[self.sums, pad], np.r_[self.counts, pad]

    def _fit_history(self, history: Interactions) -> None:
        vals = self.item_values[history.item]
        ok = np.isfinite(vals)
        for j in range(len(self.attrs)):
            self.sums[:, j] += np.bincount(history.user, weights=np.where(ok[:, j], vals[:, j], 0.0),
                                           minlength=len(self.sums))[:len(self.sums)]
            self.counts[:, j] += np.bincount(history.user, weights=ok[:, j].astype(float),
                                             minlength=len(self.sums))[:len(self.sums)]

    def add_items(self, items: np.ndarray, dataset: Dataset) -> None:
        table = dataset.item_table
        if table is None or not self.fitted or not self.attrs:
            return
        n = dataset.n_items
        if n > len(self.item_values):
            self.item_values = np.r_[self.item_values, np.full((n - len(self.item_values), len(self.attrs)), np.nan)]
        for j, a in enumerate(self.attrs):
            col = table.attributes.get(a)
            if col is not None:
                self.item_values[items, j] = [_as_float(col[i]) for i in np.asarray(items).tolist()]

    def _update_one(self, event: Event) -> None:
        if event.item >= len(self.item_values):
            return  # an item added after fit has no attributes here
        self._grow(event.user + 1)
        v = self.item_values[event.item]
        ok = np.isfinite(v)
        self.sums[event.user, ok] += v[ok]
        self.counts[event.user, ok] += 1

    @property
    def columns(self) -> list[str]:
        return [c for a in getattr(self, "attrs", []) for c in (f"num:{a}", f"num:{a}:diff")]

    def compute(self, batch: PairBatch) -> np.ndarray:
        self._check_fitted()
        if not self.attrs:
            return np.zeros((len(batch), 0), np.float32)
        items = batch.items
        known_item = items < len(self.item_values)
        vals = np.where(known_item[:, None], self.item_values[np.where(known_item, items, 0)], np.nan)
        users = batch.users
        known = (users >= 0) & (users < len(self.sums))
        u = np.where(known, users, 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(known[:, None] & (self.counts[u] > 0), self.sums[u] / self.counts[u], np.nan)
            for g, q in enumerate(batch.queries):  # a session: the mean over its own items' values
                hist = session_items(q)
                if hist is not None:
                    v = self.item_values[hist[hist < len(self.item_values)]]
                    ok = np.isfinite(v)
                    mean[batch.offsets[g]:batch.offsets[g + 1]] = np.where(
                        ok.sum(axis=0) > 0, np.where(ok, v, 0.0).sum(axis=0) / ok.sum(axis=0), np.nan)
        out = np.empty((len(batch), 2 * len(self.attrs)), np.float32)
        out[:, 0::2], out[:, 1::2] = vals, vals - mean
        return out
