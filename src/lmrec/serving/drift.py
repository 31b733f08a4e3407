"""Drift checks: how the recent events differ from the data the served version was fitted on.

`DriftMonitor` keeps the last `window` applied events (every worker applies every event, so
each reports the same window) and compares them with the training data of the served version
(its `dataset.interactions`, which online updates do not grow):

- **event-kind mix**: each kind's share in the window and in the training data, and their total
  variation distance over the learning kinds (0: the same mix, 1: disjoint);
- **item popularity shift**: Jensen-Shannon divergence (base 2, in [0, 1]) and total variation
  between the window's item distribution and the training one. A window of W events is a sample,
  so even without drift its divergence from the training distribution is above 0, the more so for
  a large catalog and a small window: `item_js_baseline` is the divergence of the last W training
  events from the whole training data, the level to read `item_js` against;
- **unknown items**: the share of window events about items the catalog does not hold
  (`unknown_item_share`: never upserted, or deleted), and about items without any event in the
  training data (`cold_item_share`: the model cannot score them from behaviour yet).

Example:
    >>> m = DriftMonitor(window=4)
    >>> m.observe([("view", "a", True), ("view", "b", True), ("purchase", "x", False)])
    >>> r = m.report(None)
    >>> r["window_events"], r["kinds"]["recent"]["purchase"], round(r["unknown_item_share"], 3)
    (3, 0.333, 0.333)
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from lmrec.types import EventKind

__all__ = ["DriftMonitor", "js_divergence", "tv_distance"]


def _aligned(p: dict[str, float], q: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    keys = sorted(set(p) | set(q))
    return (np.array([p.get(k, 0.0) for k in keys], np.float64), np.array([q.get(k, 0.0) for k in keys], np.float64))


def tv_distance(p: dict[str, float], q: dict[str, float]) -> float:
    """Total variation distance between two distributions given as {key: probability}."""
    a, b = _aligned(p, q)
    return float(0.5 * np.abs(a - b).sum())


def js_divergence(p: dict[str, float], q: dict[str, float]) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) between two {key: probability} maps."""
    a, b = _aligned(p, q)
    m = 0.5 * (a + b)

    def kl(x: np.ndarray) -> float:
        nz = x > 0
        return float((x[nz] * np.log2(x[nz] / m[nz])).sum())

    return max(0.0, min(1.0, 0.5 * kl(a) + 0.5 * kl(b)))


def _shares(counts: Counter[str] | dict[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()} if total else {}


class DriftMonitor:
    """See the module docstring. `observe` is called with each applied batch (kind, item id,
    whether the catalog holds the item); `report(version)` compares with its training data."""

    def __init__(self, window: int = 10_000, kinds: Sequence[str] | None = None) -> None:
        self.window = int(window)
        self.kinds = tuple(kinds) if kinds is not None else EventKind.names()
        self._events: deque[tuple[str, str, bool]] = deque(maxlen=max(self.window, 1))
        self._lock = threading.Lock()
        self._ref_key: tuple[str, int] | None = None
        self._ref: dict[str, Any] = {}

    def observe(self, events: Iterable[tuple[str, str, bool]]) -> None:
        if self.window <= 0:
            return
        with self._lock:
            self._events.extend(events)

    def _reference(self, version: Any) -> dict[str, Any]:
        """Kind shares, item shares and the sampling baseline of the version's training data
        (cached per version and size of its training data)."""
        ds = version.pipeline.dataset
        inter = ds.interactions
        key = (version.name, len(inter))
        if key == self._ref_key:
            return self._ref
        kind_counts = np.bincount(np.asarray(inter.kind, np.int64), minlength=len(EventKind.names()))
        kinds = _shares({EventKind(i).name.lower(): int(c) for i, c in enumerate(kind_counts.tolist()) if c})
        counts = np.bincount(np.asarray(inter.item, np.int64), minlength=ds.n_items)
        ids = ds.items.ids
        items = {ids[i]: c / len(inter) for i, c in enumerate(counts.tolist()) if c} if len(inter) else {}
        tail = np.asarray(inter.item[-self.window:], np.int64) if self.window > 0 else np.zeros(0, np.int64)
        sample = _shares(Counter(ids[i] for i in tail.tolist()))
        self._ref_key = key
        self._ref = {"kinds": kinds, "items": items, "events": len(inter),
                     "item_js_baseline": round(js_divergence(sample, items), 4) if sample and items else None}
        return self._ref

    def report(self, version: Any) -> dict[str, Any]:
        """The drift figures (None where there is nothing to compare)."""
        with self._lock:
            events = list(self._events)
        ref = self._reference(version) if version is not None else {"kinds": {}, "items": {}, "events": 0,
                                                                     "item_js_baseline": None}
        n = len(events)
        recent_kinds = _shares(Counter(k for k, _, _ in events))
        learn = set(self.kinds)
        recent_learn = _shares(Counter(k for k, _, _ in events if k in learn))
        recent_items = _shares(Counter(i for k, i, _ in events if k in learn))
        items = ref["items"]
        return {
            "window": self.window, "window_events": n, "training_events": ref["events"],
            "kinds": {"recent": {k: round(v, 3) for k, v in sorted(recent_kinds.items())},
                      "training": {k: round(v, 3) for k, v in sorted(ref["kinds"].items())}},
            "kind_mix_tv": round(tv_distance(recent_learn, ref["kinds"]), 4) if recent_learn and ref["kinds"] else None,
            "item_js": round(js_divergence(recent_items, items), 4) if recent_items and items else None,
            "item_js_baseline": ref["item_js_baseline"],
            "item_tv": round(tv_distance(recent_items, items), 4) if recent_items and items else None,
            "unknown_item_share": round(sum(1 for _, _, known in events if not known) / n, 4) if n else None,
            "cold_item_share": (round(sum(1 for _, i, _ in events if i not in items) / n, 4)
                                if n and version is not None else None),
        }
