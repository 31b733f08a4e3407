"""Fusing recall channels: weighted reciprocal rank fusion that keeps every candidate's sources.

Channels score on incomparable scales (cosine in [-1, 1], EASE's unbounded sums, decayed
event counts), so the engine fuses ranks, not scores: an item's fused score is
sum over channels c that returned it of w_c / (k_rrf + rank_c), rank 1 = the channel's best.
With k_rrf = 60 one first place is worth about as much as two places near rank 60, so an
item two channels agree on beats an item only one channel ranks slightly higher. The raw
score of every channel that returned an item is kept for explanations and later stages.

Example:
    >>> import numpy as np
    >>> fused = rrf_merge({"lm": (np.array([3, 1]), np.array([0.9, 0.8])),
    ...                    "popular": (np.array([1, 7]), np.array([40.0, 12.0]))}, {"lm": 1.0, "popular": 1.0})
    >>> [(c.slot, c.sources) for c in fused]
    [(1, ('lm', 'popular')), (3, ('lm',)), (7, ('popular',))]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Fused", "rrf_merge"]


@dataclass
class Fused:
    """One fused candidate: catalog slot, fused score, the channels that returned it (in
    channel order) and each of those channels' raw score and rank."""

    slot: int
    score: float
    sources: tuple[str, ...]
    channel_scores: dict[str, float] = field(default_factory=dict)
    channel_ranks: dict[str, int] = field(default_factory=dict)


def rrf_merge(channels: Mapping[str, tuple[np.ndarray, np.ndarray]], weights: Mapping[str, float], *,
              k_rrf: float = 60.0, keep: Callable[[int], bool] | None = None,
              limit: int | None = None) -> list[Fused]:
    """Weighted RRF over channels given as name -> (slots best first, raw scores).

    A channel missing from `weights` counts with weight 1. A slot repeated within one
    channel keeps its best rank. Result sorted by fused score, ties by lower slot; only slots
    that `keep` accepts, at most `limit` of them (the scores are computed with numpy for the
    whole union, the `Fused` records only for what is returned).
    """
    names = list(channels)
    per: list[dict[int, tuple[int, float]]] = []
    all_slots, contrib = [], []
    for name in names:
        slots = np.asarray(channels[name][0], dtype=np.int64)
        raw = np.asarray(channels[name][1], dtype=np.float64)
        uniq, first = np.unique(slots, return_index=True)  # best (first) rank of each slot
        ranks = first + 1
        per.append(dict(zip(uniq.tolist(), zip(ranks.tolist(), raw[first].tolist()))))
        all_slots.append(uniq)
        contrib.append(float(weights.get(name, 1.0)) / (k_rrf + ranks))
    if not all_slots:
        return []
    union, inverse = np.unique(np.concatenate(all_slots), return_inverse=True)
    fused = np.bincount(inverse, weights=np.concatenate(contrib), minlength=len(union))
    out: list[Fused] = []
    for j in np.lexsort((union, -fused)).tolist():
        s = int(union[j])
        if keep is not None and not keep(s):
            continue
        f = Fused(s, float(fused[j]), ())
        for name, found in zip(names, per):
            hit = found.get(s)
            if hit is not None:
                f.sources += (name,)
                f.channel_ranks[name], f.channel_scores[name] = hit
        out.append(f)
        if limit is not None and len(out) >= limit:
            break
    return out
