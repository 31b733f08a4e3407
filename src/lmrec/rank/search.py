"""The search path after recall: query -> first-stage retriever (e.g. hybrid BM25 + dense) ->
features of each (query, product) pair -> a learned ranker -> top k.

Features: the first stage's fused score and rank, each fused channel's raw score and rank
(its `stage_scores`), the score of each extra pair scorer (a second bi-encoder, a
cross-encoder when one is available), query length, text length and the share of query
words found in the text. `SearchRanker` is itself a `Retriever`, so it plugs into the same
benchmarks and re-rankers as the first stage.

Example:
    >>> from lmrec.recall.bm25 import BM25Retriever
    >>> texts = ["cordless drill", "drill bit set", "garden hose", "hose reel"]
    >>> sr = SearchRanker(BM25Retriever(), depth=4).fit(texts)
    >>> _ = sr.train(["drill", "hose"], [({0: 3.0, 1: 2.0}), ({2: 3.0, 3: 1.0})],
    ...              n_estimators=5, min_child_samples=1)
    >>> int(sr("drill", k=1).items[0]) in (0, 1)
    True
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np

from lmrec.rank.base import RankData, Ranker
from lmrec.rank.ltr import LambdaRankRanker
from lmrec.recall.search import PairScorer, Retriever, SecondStage
from lmrec.types import Candidates

__all__ = ["SearchRanker", "grade_labels"]

_WORD = re.compile(r"\w+", re.UNICODE)


def grade_labels(grades: np.ndarray, low: float = 1.0, steps: float = 3.0) -> np.ndarray:
    """Graded relevance (e.g. Home Depot's 1..3 with thirds) as integer LambdaRank labels:
    unjudged (NaN) 0, judged 1 + round((grade - low) * steps)."""
    g = np.asarray(grades, np.float64)
    return np.where(np.isnan(g), 0, 1 + np.rint((np.nan_to_num(g, nan=low) - low) * steps)).astype(np.float32)


class SearchRanker(SecondStage):
    """Re-ranks the first stage's top `depth` with `ranker` over pair features (see the module
    docstring); untrained, it keeps the first stage's order."""

    def __init__(self, first_stage: Retriever, scorers: Sequence[PairScorer] = (), ranker: Ranker | None = None,
                 *, depth: int = 100, name: str | None = None) -> None:
        super().__init__()
        self.first, self.scorers, self.depth = first_stage, list(scorers), depth
        self.ranker = ranker
        self.name = name or f"ranked:{first_stage.name}"
        self.texts = first_stage.texts
        self._channels: list[str] | None = None

    # --- features --------------------------------------------------------------------------
    def columns(self, channels: list[str]) -> list[str]:
        cols = ["first:score", "first:rank"]
        for c in channels:
            cols += [f"{c}:score", f"{c}:rank"]
        cols += [f"{s.name}:score" for s in self.scorers]
        return cols + ["query:words", "text:words", "query:overlap"]

    def features(self, query: str, c: Candidates) -> np.ndarray:
        """Pair features of the candidates `c` of `query` (first-stage order)."""
        n = len(c)
        if self._channels is None and n:  # the first stage's channels, fixed by the first answer
            self._channels = sorted(k for k in c.stage_scores if k != self.first.name)
        cols: list[np.ndarray] = [np.asarray(c.scores, np.float64), np.arange(1, n + 1, dtype=np.float64)]
        for ch in self._channels or []:
            raw = np.asarray(c.stage_scores.get(ch, np.full(n, np.nan)), np.float64)
            rank = np.full(n, np.nan)
            ok = np.isfinite(raw)
            rank[np.flatnonzero(ok)[np.lexsort((np.flatnonzero(ok), -raw[ok]))]] = np.arange(1, ok.sum() + 1)
            cols += [raw, rank]
        texts = [self.first.texts[int(i)] for i in c.items]
        for s in self.scorers:
            cols.append(np.asarray(s(query, texts), np.float64))
        qw = set(_WORD.findall(query.lower()))
        tw = [set(_WORD.findall(t.lower())) for t in texts]
        cols += [np.full(n, float(len(qw))), np.array([len(w) for w in tw], np.float64),
                 np.array([len(qw & w) / max(len(qw), 1) for w in tw])]
        return np.stack(cols, axis=1).astype(np.float32) if n else np.zeros((0, len(cols)), np.float32)

    # --- training --------------------------------------------------------------------------
    def rank_data(self, queries: Sequence[str], judged: Sequence[Mapping[int, float]]) -> RankData:
        """Features of every query's first-stage top `depth`, labelled by `grade_labels` of the
        judgments (item -> grade; unjudged items get label 0)."""
        if len(queries) != len(judged):
            raise ValueError(f"{len(queries)} queries but {len(judged)} judgment sets")
        found = self.first.batch(list(queries), self.depth)
        blocks, labels, sizes = [], [], []
        for q, c, j in zip(queries, found, judged):
            blocks.append(self.features(q, c))
            labels.append(grade_labels(np.array([j.get(int(i), np.nan) for i in c.items], np.float64)))
            sizes.append(len(c))
        cols = self.columns(self._channels or [])
        X = np.concatenate(blocks) if blocks else np.zeros((0, len(cols)), np.float32)
        y = np.concatenate(labels) if labels else np.zeros(0, np.float32)
        return RankData(X, cols, np.array(sizes, np.int64), {"click": (y > 0).astype(np.float32), "grade": y})

    def train(self, queries: Sequence[str], judged: Sequence[Mapping[int, float]], **params: Any) -> Self:
        """Fit a graded LambdaRank ranker (`params` go to LambdaRankRanker) on labelled queries."""
        data = self.rank_data(queries, judged)
        self.ranker = LambdaRankRanker(**{"label": "grade", **params}).fit(data)
        return self

    # --- retrieval --------------------------------------------------------------------------
    def _rescore(self, query: str, c: Candidates) -> np.ndarray:
        if self.ranker is None or not len(c):
            return np.asarray(c.scores, np.float32)
        X = self.features(query, c)
        return self.ranker.score(RankData(X, self.columns(self._channels or []), np.array([len(c)])))

    def _search(self, query: str, k: int) -> Candidates:
        c = self.first(query, max(k, self.depth))
        s = self._rescore(query, c)
        order = np.lexsort((np.arange(len(c)), -s))[:k]
        out = c.take(order, scores=s[order])
        out.stage_scores[self.name] = out.scores.copy()
        return out

    def score_items(self, query: str, items: np.ndarray) -> np.ndarray:
        """Ranker scores of the given catalog items, their first-stage features taken within
        this item set (as `HybridRetriever.score_items` does)."""
        items = np.asarray(items, np.int64)
        first = self.first.score_items(query, items)
        order = np.lexsort((items, -first))
        c = Candidates(items[order], first[order])
        chans = getattr(self.first, "channels", ())
        for ch in chans:
            c.stage_scores[ch.name] = ch.score_items(query, c.items)
        s = self._rescore(query, c)
        out = np.empty(len(items), np.float32)
        out[order] = s
        return out
