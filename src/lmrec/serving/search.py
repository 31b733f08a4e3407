"""Search over the live catalog: BM25 and dense hits fused by reciprocal rank fusion
(`lmrec.recall.hybrid.rrf_scores`, the one RRF of lmrec), each hit keeping its channels' raw
scores and ranks for explanations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmrec.recall.hybrid import rrf_scores

__all__ = ["fuse"]


def fuse(lists: dict[str, tuple[np.ndarray, np.ndarray]], k_rrf: float, keep: Any) -> list[dict[str, Any]]:
    """Search channels fused by reciprocal rank fusion (`lmrec.recall.hybrid.rrf_scores`),
    each hit with its sources and every channel's raw score and rank; best first, ties by slot."""
    names = list(lists)
    union = np.unique(np.concatenate([np.asarray(v[0], np.int64) for v in lists.values()])) if lists else \
        np.zeros(0, np.int64)
    if not len(union):
        return []
    ranks = np.zeros((len(union), len(names)))
    raw = np.full((len(union), len(names)), np.nan)
    for c, name in enumerate(names):
        slots, scores = np.asarray(lists[name][0], np.int64), np.asarray(lists[name][1], np.float64)
        uniq, first = np.unique(slots, return_index=True)
        pos = np.searchsorted(union, uniq)
        ranks[pos, c] = first + 1
        raw[pos, c] = scores[first]
    fused = rrf_scores(ranks, k_rrf)
    out = []
    for j in np.lexsort((union, -fused)).tolist():
        s = int(union[j])
        if not keep(s):
            continue
        on = [c for c in range(len(names)) if ranks[j, c] > 0]
        out.append({"slot": s, "score": float(fused[j]), "sources": tuple(names[c] for c in on),
                    "channel_scores": {names[c]: float(raw[j, c]) for c in on},
                    "channel_ranks": {names[c]: int(ranks[j, c]) for c in on}})
    return out
