"""Hybrid keyword + dense retrieval: reciprocal rank fusion or a normalised score blend.

Example:
    >>> from lmrec.recall.bm25 import BM25Retriever
    >>> from lmrec.recall.search import DenseRetriever
    >>> from lmrec.text.base import FakeEncoder
    >>> h = HybridRetriever(BM25Retriever(), DenseRetriever(FakeEncoder()))
    >>> c = h.fit(["cordless drill", "garden hose", "drill bit set"])("drill", k=2)
    >>> sorted(c.stage_scores)
    ['bm25', 'dense:fake-64', 'hybrid-rrf']
"""

from __future__ import annotations

from typing import Literal, Self, Sequence

import numpy as np

from lmrec.recall.normalise import normalise
from lmrec.recall.search import Retriever
from lmrec.types import Candidates


def rrf_scores(ranks: np.ndarray, k_rrf: float = 60.0) -> np.ndarray:
    """Reciprocal rank fusion: sum over channels of 1 / (k_rrf + rank), rank 1 = best.

    `ranks` is (n_items, n_channels) with 0 (or NaN) where a channel did not return the item.
    """
    r = np.nan_to_num(np.asarray(ranks, np.float64), nan=0.0)
    return np.where(r > 0, 1.0 / (k_rrf + np.where(r > 0, r, 1.0)), 0.0).sum(axis=1)



class HybridRetriever(Retriever):
    """Fuses a keyword channel (`bm25`) and a dense channel (`dense`), each asked for `depth` items.

    - `method="rrf"`: score = sum over channels of 1 / (k_rrf + rank in that channel).
    - `method="blend"`: score = alpha * norm(bm25) + (1 - alpha) * norm(dense), where each
      channel's raw scores are computed for the whole union of candidates and normalised over
      it per query (`norm="minmax"` or `"zscore"`).

    `sources` lists the channel(s) whose top-`depth` contained an item; `stage_scores` holds each
    channel's raw score for every returned item and the fused score under `name`.
    """

    def __init__(self, bm25: Retriever, dense: Retriever, method: Literal["rrf", "blend"] = "rrf", *,
                 k_rrf: float = 60.0, alpha: float = 0.5, depth: int = 100,
                 norm: Literal["minmax", "zscore"] = "minmax", name: str | None = None) -> None:
        super().__init__()
        if method not in ("rrf", "blend"):
            raise ValueError(f"method must be 'rrf' or 'blend', got {method!r}")
        self.channels = (bm25, dense)
        self.method, self.k_rrf, self.alpha, self.depth, self.norm = method, k_rrf, alpha, depth, norm
        self.name = name or f"hybrid-{method}"
        self.texts = bm25.texts

    # the catalog lives in the channels
    def fit(self, item_texts: Sequence[str], items: Sequence[int] | np.ndarray | None = None) -> Self:
        for ch in self.channels:
            ch.fit(item_texts, items)
        self.texts = self.channels[0].texts
        return self

    def add(self, item_index: int, text: str) -> None:
        for ch in self.channels:
            ch.add(item_index, text)

    def remove(self, item_index: int) -> None:
        for ch in self.channels:
            ch.remove(item_index)

    def _rebuild(self, items: np.ndarray, texts: list[str]) -> None:  # pragma: no cover - fit delegates
        pass

    def _add(self, item_index: int, text: str) -> None:  # pragma: no cover
        pass

    def _remove(self, item_index: int) -> None:  # pragma: no cover
        pass

    def _fuse(self, raw: np.ndarray, ranks: np.ndarray | None) -> np.ndarray:
        """Fused score from raw channel scores (n, 2) and, for RRF, channel ranks (n, 2)."""
        if self.method == "rrf":
            assert ranks is not None
            return rrf_scores(ranks, self.k_rrf)
        return self.alpha * normalise(raw[:, 0], self.norm) + (1 - self.alpha) * normalise(raw[:, 1], self.norm)

    def score_items(self, query: str, items: np.ndarray) -> np.ndarray:
        """Fused scores of the given items only (RRF ranks are taken within this item set)."""
        items = np.asarray(items, np.int64)
        raw = np.stack([ch.score_items(query, items) for ch in self.channels], axis=1)
        ranks = None
        if self.method == "rrf":
            ranks = np.empty(raw.shape)
            for c in range(raw.shape[1]):
                order = np.lexsort((items, -raw[:, c]))
                ranks[order, c] = np.arange(1, len(items) + 1)
        return self._fuse(raw, ranks).astype(np.float32)

    def _search(self, query: str, k: int) -> Candidates:
        return self._merge(query, [ch(query, self.depth) for ch in self.channels], k)

    def batch(self, queries: Sequence[str], k: int = 10) -> list[Candidates]:
        per_channel = [ch.batch(queries, self.depth) for ch in self.channels]
        return [self._merge(q, [pc[i] for pc in per_channel], k) for i, q in enumerate(queries)]

    def _merge(self, query: str, found: list[Candidates], k: int) -> Candidates:
        union = np.unique(np.concatenate([c.items for c in found]))
        if not len(union):
            return Candidates.empty()
        pos = {int(i): j for j, i in enumerate(union)}
        ranks = np.zeros((len(union), len(found)))
        for c, cands in enumerate(found):
            for r, item in enumerate(cands.items):
                ranks[pos[int(item)], c] = r + 1
        # each channel's raw score for every union item, so blends and explanations see both
        raw = np.stack([ch.score_items(query, union) for ch in self.channels], axis=1)
        fused = self._fuse(raw, ranks)
        order = np.lexsort((union, -fused))[:k]
        names = [ch.name for ch in self.channels]
        sources = [tuple(n for c, n in enumerate(names) if ranks[j, c] > 0) for j in order]
        out = Candidates(union[order], fused[order], sources)
        for c, n in enumerate(names):
            out.stage_scores[n] = raw[order, c].astype(np.float32)
        out.stage_scores[self.name] = out.scores.copy()
        return out
