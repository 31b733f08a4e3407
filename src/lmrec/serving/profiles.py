"""Online per-user and per-item state folded in event by event: LM profile vectors, seen sets
and time-decayed popularity.

Everything here is updated in O(dim) (profiles) or O(1) (popularity, seen sets) per event, so
ingesting never costs work proportional to the event log, and a restart rebuilds it exactly
by replaying the log through the same `apply` calls (no train/serve skew between the replayed
and the live state). Not thread-safe on its own: the engine calls writes under its write lock.

Example:
    >>> import numpy as np
    >>> p = UserProfiles(dim=2, half_life=1.0)
    >>> p.apply("u", 0, np.array([1.0, 0.0], np.float32), weight=1.0, consumed=True)
    >>> p.apply("u", 1, np.array([0.0, 1.0], np.float32), weight=1.0, consumed=True)
    >>> [round(float(x), 3) for x in p.profile("u")], sorted(p.seen("u"))
    ([0.447, 0.894], [0, 1])
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["UserProfiles", "Popularity"]


class UserProfiles:
    """Recency-weighted mean of the item vectors of each user's events.

    After each contributing event the running sums become `s <- s * 2^(-1/half_life) + w * v`
    and `W <- W * 2^(-1/half_life) + w`, so the profile s / |s| is the mean of the history's
    vectors weighted by the event weight times 2^-(events since it / half_life): the same
    vector `lm-recency` fits offline, kept current in O(dim) per event.
    """

    def __init__(self, dim: int, half_life: float = 20.0) -> None:
        if half_life <= 0:
            raise ValueError(f"half_life must be positive, got {half_life}")
        self.dim = int(dim)
        self.half_life = float(half_life)
        self._decay = 2.0 ** (-1.0 / self.half_life)
        self._row: dict[str, int] = {}
        self._sums = np.zeros((0, self.dim), dtype=np.float32)  # capacity buffer
        self._weights = np.zeros(0, dtype=np.float64)
        self._n_events = np.zeros(0, dtype=np.int64)
        self._seen: list[set[int]] = []

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._row

    def users(self) -> list[str]:
        return list(self._row)

    def _ensure(self, user_id: str) -> int:
        row = self._row.get(user_id)
        if row is not None:
            return row
        row = len(self._row)
        if row >= len(self._sums):  # geometric growth keeps one-by-one inserts O(1) amortised
            cap = max(16, 2 * len(self._sums))
            for name, dtype, shape in (("_sums", np.float32, (cap, self.dim)), ("_weights", np.float64, (cap,)),
                                       ("_n_events", np.int64, (cap,))):
                grown = np.zeros(shape, dtype=dtype)
                old = getattr(self, name)
                grown[:len(old)] = old
                setattr(self, name, grown)
        self._row[user_id] = row
        self._seen.append(set())
        return row

    def touch(self, user_id: str) -> None:
        """Register a user (e.g. one upserted with attributes) without any event."""
        self._ensure(user_id)

    def apply(self, user_id: str, item: int | None, vector: np.ndarray | None, *, weight: float,
              consumed: bool) -> None:
        """Fold in one event: `item` joins the seen set when `consumed`; `vector` (the item's,
        normalised) enters the profile with `weight` when both are given and weight > 0."""
        row = self._ensure(user_id)
        self._n_events[row] += 1
        if consumed and item is not None:
            self._seen[row].add(int(item))
        if vector is not None and weight > 0:
            self._sums[row] *= self._decay
            self._sums[row] += np.float32(weight) * vector
            self._weights[row] = self._weights[row] * self._decay + weight

    def profile(self, user_id: str) -> np.ndarray | None:
        """The user's normalised profile vector, or None without any contributing event."""
        row = self._row.get(user_id)
        if row is None or self._weights[row] <= 0:
            return None
        v = self._sums[row]
        n = float(np.linalg.norm(v))
        return (v / n).astype(np.float32) if n > 0 else None

    def seen(self, user_id: str) -> set[int]:
        """Item indices the user consumed (a copy)."""
        row = self._row.get(user_id)
        return set(self._seen[row]) if row is not None else set()

    def n_events(self, user_id: str) -> int:
        row = self._row.get(user_id)
        return int(self._n_events[row]) if row is not None else 0

    def forget_item(self, item: int) -> None:
        """Drop a deleted item from every seen set (its index is never reused, so this only
        keeps the sets small)."""
        for s in self._seen:
            s.discard(item)


class Popularity:
    """Item popularity with exponential time decay: each event adds `weight * 2^((t - t0) / H)`.

    Counters are kept relative to a reference time t0 that moves forward (rescaling all
    counters) before the exponent can overflow, so only the ratios matter and an old burst
    fades with half-life H seconds. The top list is cached and recomputed only after a change.
    """

    def __init__(self, half_life_s: float = 7 * 86400.0, pool: int = 1000) -> None:
        if half_life_s <= 0:
            raise ValueError(f"popularity half-life must be positive, got {half_life_s}")
        self.half_life_s = float(half_life_s)
        self.pool = int(pool)
        self._counts = np.zeros(0, dtype=np.float64)
        self._t0: float | None = None
        self._top: np.ndarray | None = None  # item indices, best first (a cache)

    def add(self, item: int, weight: float, t: float) -> None:
        if weight <= 0:
            return
        if self._t0 is None:
            self._t0 = float(t)
        exponent = (float(t) - self._t0) / self.half_life_s
        if exponent > 60.0:  # move t0 forward: 2^60 is far from float64 overflow, and ratios stay
            self._counts *= 2.0 ** -exponent
            self._t0, exponent = float(t), 0.0
        if item >= len(self._counts):
            grown = np.zeros(max(item + 1, 2 * len(self._counts), 16), dtype=np.float64)
            grown[:len(self._counts)] = self._counts
            self._counts = grown
        self._counts[item] += weight * math.pow(2.0, exponent)
        self._top = None

    def remove_item(self, item: int) -> None:
        if item < len(self._counts):
            self._counts[item] = 0.0
            self._top = None

    def score(self, item: int) -> float:
        return float(self._counts[item]) if 0 <= item < len(self._counts) else 0.0

    def top(self, k: int, *, exclude: set[int] = frozenset(), allowed: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """The k most popular items (indices, scores) not in `exclude` and allowed by the
        boolean mask `allowed` (indexed by item; items beyond it are not allowed)."""
        counts = self._counts
        top = self._top
        if top is None:  # recomputed by whichever reader sees the change first; idempotent
            n = min(self.pool, int(np.count_nonzero(counts)))
            if n == 0:
                top = np.zeros(0, dtype=np.int64)
            else:
                part = np.argpartition(-counts, n - 1)[:n]
                top = part[np.lexsort((part, -counts[part]))]
            self._top = top
        picked = self._pick(top, k, exclude, allowed)
        if len(picked) < k and len(top) < np.count_nonzero(counts):  # the pool ran out: full order
            nz = np.flatnonzero(counts)
            picked = self._pick(nz[np.lexsort((nz, -counts[nz]))], k, exclude, allowed)
        return picked, counts[picked].astype(np.float32)

    @staticmethod
    def _pick(order: np.ndarray, k: int, exclude: set[int], allowed: np.ndarray | None) -> np.ndarray:
        out: list[int] = []
        for i in order.tolist():
            if i in exclude or (allowed is not None and (i >= len(allowed) or not allowed[i])):
                continue
            out.append(i)
            if len(out) == k:
                break
        return np.asarray(out, dtype=np.int64)
