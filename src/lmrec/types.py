"""Core types shared by every stage: event kinds and the `Candidates` list that flows
between recall, rank and rerank."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

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


def config_hash(config: dict[str, Any]) -> str:
    """A short, stable hash of a JSON-able config; saved artifacts (models, indexes) carry it."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
