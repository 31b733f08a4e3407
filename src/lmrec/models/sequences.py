"""Per-user item sequences for sequential models (numpy only, no torch).

A `Histories` holds every user's items in (timestamp, item index) order, the order the
temporal split uses, so "the next item" means the same thing in training, early stopping and
evaluation. Training examples are windows of at most `max_len + 1` consecutive items: the
first `max_len` are the input, each position's target is the item that follows it. Batches
are right-padded with 0 and item indices are shifted by one (0 is the padding token), so with
a causal mask the padding never reaches a real position.

Example:
    >>> import numpy as np
    >>> from lmrec.data.dataset import Interactions
    >>> h = Histories.from_interactions(Interactions([0, 0, 0, 1], [5, 3, 4, 2], [2, 1, 3, 1]), n_users=2)
    >>> h.of(0).tolist(), h.of(1).tolist()
    ([3, 5, 4], [2])
    >>> inputs, targets = h.training_batch(h.windows(max_len=2, mode="last"))
    >>> inputs.tolist(), targets.tolist()
    ([[4, 6]], [[5, 4]])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from lmrec.data.dataset import Interactions

WindowMode = Literal["last", "all"]
PAD = 0  # the padding token; item index i is token i + 1
IGNORE = -100  # target of a padded position (torch's cross-entropy ignore_index)


@dataclass(frozen=True)
class Histories:
    """Users' item sequences as one flat array: user u owns items[indptr[u]:indptr[u + 1]]."""

    indptr: np.ndarray
    items: np.ndarray

    def __post_init__(self) -> None:
        if self.indptr.ndim != 1 or len(self.indptr) == 0 or self.indptr[0] != 0 \
                or self.indptr[-1] != len(self.items) or np.any(np.diff(self.indptr) < 0):
            raise ValueError("Histories: indptr must start at 0, never decrease and end at len(items)")

    @classmethod
    def from_interactions(cls, inter: Interactions, n_users: int) -> Histories:
        """Each user's items sorted by (timestamp, item index); repeated events are kept."""
        if len(inter) and (inter.user.min() < 0 or inter.user.max() >= n_users):
            raise IndexError(f"interaction user index outside 0..{n_users - 1}")
        s = inter.sorted()
        indptr = np.searchsorted(s.user, np.arange(n_users + 1)).astype(np.int64)
        return cls(indptr, s.item.astype(np.int64))

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def of(self, user: int) -> np.ndarray:
        return self.items[self.indptr[user]:self.indptr[user + 1]]

    def holdout_last(self) -> tuple[Histories, np.ndarray, np.ndarray]:
        """Carve each user's last event out: (the shortened histories, users, their last items).

        Every user with at least two events gives one held-out event (early stopping scores
        it against the rest of the catalog). A user whose last item also occurs earlier in the
        history is left out of the returned users, as the evaluator drops truth the user has
        already seen; their last event is removed all the same, so all users are treated alike.
        """
        lengths = self.lengths
        users = np.flatnonzero(lengths >= 2)
        last = self.indptr[users + 1] - 1
        targets = self.items[last]
        keep = np.ones(len(self.items), dtype=bool)
        keep[last] = False
        removed = np.zeros(self.n_users, dtype=np.int64)
        removed[users] = 1
        rest = Histories(self.indptr - np.r_[0, np.cumsum(removed)], self.items[keep])
        width = int(self.items.max()) + 1 if len(self.items) else 1
        owner = np.repeat(np.arange(self.n_users, dtype=np.int64), rest.lengths)
        repeat = np.isin(users * width + targets, owner * width + rest.items)
        return rest, users[~repeat], targets[~repeat]

    def windows(self, max_len: int, mode: WindowMode = "last") -> np.ndarray:
        """Training windows as (n, 2) [start, end) spans into `items`, each of 2..max_len + 1 items.

        "last": one window per user, their most recent max_len + 1 items (SASRec's choice).
        "all": the whole history cut into windows from the end that overlap by one item, so
        every event but a user's first is a target exactly once.
        """
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, got {max_len}")
        starts, ends = self.indptr[:-1], self.indptr[1:]
        has_pair = ends - starts >= 2
        starts, ends = starts[has_pair], ends[has_pair]
        if mode == "last":
            return np.stack([np.maximum(ends - (max_len + 1), starts), ends], axis=1)
        if mode != "all":
            raise ValueError(f"window mode must be 'last' or 'all', got {mode!r}")
        spans = []
        while len(ends):
            lo = np.maximum(ends - (max_len + 1), starts)
            spans.append(np.stack([lo, ends], axis=1))
            more = lo - starts >= 1  # items left before this window: next window ends at its first item + 1
            starts, ends = starts[more], lo[more] + 1
        return np.concatenate(spans) if spans else np.zeros((0, 2), dtype=np.int64)

    def training_batch(self, spans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded (inputs, targets) of windows `spans`: (b, w) int64 each, w = the longest
        window - 1. Inputs are item tokens (index + 1, 0 = padding); targets are item indices,
        IGNORE where padded."""
        spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
        n = spans[:, 1] - spans[:, 0] - 1
        width = int(n.max()) if len(n) else 0
        col = np.arange(width)[None, :]
        valid = col < n[:, None]
        idx = np.where(valid, spans[:, :1] + col, 0)
        inputs = np.where(valid, self.items[idx] + 1, PAD) if len(self.items) else np.zeros_like(idx)
        targets = np.where(valid, self.items[np.where(valid, idx + 1, 0)], IGNORE) if len(self.items) \
            else np.full_like(idx, IGNORE)
        return inputs.astype(np.int64), targets.astype(np.int64)

    def recent(self, users: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Each user's last `max_len` items as right-padded tokens (b, w) and their lengths (b,);
        w is the longest of them (at least 1). Users without history get length 0."""
        users = np.asarray(users, dtype=np.int64)
        ends = self.indptr[users + 1]
        starts = np.maximum(self.indptr[users], ends - max_len)
        n = ends - starts
        width = max(int(n.max()) if len(n) else 0, 1)
        col = np.arange(width)[None, :]
        valid = col < n[:, None]
        idx = np.where(valid, starts[:, None] + col, 0)
        tokens = np.where(valid, self.items[idx] + 1, PAD) if len(self.items) else np.zeros_like(idx)
        return tokens.astype(np.int64), n.astype(np.int64)

