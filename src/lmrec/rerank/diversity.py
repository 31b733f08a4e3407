"""Diversity re-rankers: maximal marginal relevance over LM item similarity, a limit on runs of
one category, and a similarity threshold between the items shown.

Example:
    >>> import numpy as np
    >>> from lmrec.data.dataset import Dataset, IdMap, Interactions, ItemTable
    >>> from lmrec.types import Query
    >>> from lmrec.rerank.base import StageContext
    >>> from lmrec.types import Candidates
    >>> table = ItemTable(title=list("abcd"), categories=[["x"], ["x"], ["x"], ["y"]])
    >>> ds = Dataset("d", IdMap(["u"]), IdMap(list("abcd")), Interactions.empty(), item_table=table)
    >>> r = CategoryRunLimit(max_run=2); r.bind(StageContext(ds, item_vectors=np.eye(4)))
    >>> r(Query(), Candidates(np.arange(4), np.array([4.0, 3, 2, 1])), 4).items.tolist()
    [0, 1, 3, 2]
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import ConfigDict, Field

from lmrec.component import ComponentConfig

from lmrec.types import Query
from lmrec.recall.normalise import normalise
from lmrec.rerank.base import Reranker
from lmrec.types import Candidates

__all__ = ["MMR", "CategoryRunLimit", "SimilarityThreshold", "relevance"]


def relevance(candidates: Candidates) -> np.ndarray:
    """The candidates' scores min-max normalised to [0, 1] (non-finite scores count as 0)."""
    s = np.asarray(candidates.scores, np.float64)
    ok = np.isfinite(s)
    out = np.zeros(len(s))
    if ok.any():
        out[ok] = normalise(s[ok], "minmax")
    return out


class MMRConfig(ComponentConfig):
    """lambda: weight of relevance against novelty (1 = relevance only, 0 = diversity only)."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    lambda_: float = Field(0.7, ge=0.0, le=1.0, alias="lambda")


class MMR(Reranker):
    """Greedy maximal marginal relevance: the next item maximises
    lambda * relevance - (1 - lambda) * (max cosine to the items already chosen), with
    relevance the min-max normalised score and cosines between LM item embeddings."""

    name = "mmr"
    Config = MMRConfig
    config: MMRConfig

    def rerank(self, query: Query, candidates: Candidates, n: int) -> Candidates:
        assert self.ctx is not None
        lam = self.config.lambda_
        rel = relevance(candidates)
        m = len(candidates)
        if lam >= 1.0:
            order = np.lexsort((np.arange(m), -rel))[:n]
            return _with_stage(candidates, order, self.name, rel[order])
        vec = self.ctx.item_vectors[candidates.items]
        sim = vec @ vec.T
        max_sim = np.zeros(m)
        free = np.ones(m, bool)
        order, values = [], []
        for _ in range(min(n, m)):
            obj = np.where(free, lam * rel - (1 - lam) * max_sim, -np.inf)
            j = int(np.argmax(obj))
            order.append(j)
            values.append(obj[j])
            free[j] = False
            max_sim = np.maximum(max_sim, sim[j])
        return _with_stage(candidates, np.array(order, np.int64), self.name, np.array(values))


def _with_stage(c: Candidates, order: np.ndarray, name: str, values: np.ndarray) -> Candidates:
    out = c.take(order)
    out.stage_scores[name] = np.asarray(values, np.float32)
    return out


class RunLimitConfig(ComponentConfig):
    """max_run: most items in a row that share a category; level: which categories count
    ("any" of the item's, its "first" or its "last", e.g. the most specific of a path)."""

    max_run: int = Field(2, ge=1)
    level: Literal["any", "first", "last"] = "any"


class CategoryRunLimit(Reranker):
    """Walks the list and, when the next item would make more than `max_run` items in a row
    share a category, takes the best later item that does not (or the next one when none
    is left)."""

    name = "category-run"
    Config = RunLimitConfig
    config: RunLimitConfig

    def _cats(self, item: int) -> frozenset[str]:
        assert self.ctx is not None
        cats = self.ctx.categories[item] if item < len(self.ctx.categories) else []
        if not cats:
            return frozenset()
        lvl = self.config.level
        return frozenset(cats if lvl == "any" else [cats[0] if lvl == "first" else cats[-1]])

    def rerank(self, query: Query, candidates: Candidates, n: int) -> Candidates:
        cats = [self._cats(int(i)) for i in candidates.items]
        k = self.config.max_run
        remaining = list(range(len(candidates)))
        order: list[int] = []
        while remaining and len(order) < n:
            shared = frozenset.intersection(*(cats[j] for j in order[-k:])) if len(order) >= k else frozenset()
            pick = next((r for r in remaining if not cats[r] & shared), remaining[0])
            order.append(pick)
            remaining.remove(pick)
        return candidates.take(order)


class SimThresholdConfig(ComponentConfig):
    """max_sim: cosine above which an item counts as a near-duplicate of one already shown;
    drop: remove near-duplicates instead of moving them to the end."""

    max_sim: float = Field(0.9, ge=-1.0, le=1.0)
    drop: bool = False


class SimilarityThreshold(Reranker):
    """Keeps the list order but moves (or drops) each item whose LM cosine with an item
    already kept exceeds `max_sim`."""

    name = "sim-threshold"
    Config = SimThresholdConfig
    config: SimThresholdConfig

    def rerank(self, query: Query, candidates: Candidates, n: int) -> Candidates:
        assert self.ctx is not None
        vec = self.ctx.item_vectors[candidates.items]
        kept: list[int] = []
        moved: list[int] = []
        for j in range(len(candidates)):
            if kept and float((vec[kept] @ vec[j]).max()) > self.config.max_sim:
                moved.append(j)
            else:
                kept.append(j)
            if len(kept) >= n:
                break
        order = kept if self.config.drop else kept + moved
        return candidates.take(np.array(order[:n], np.int64))
