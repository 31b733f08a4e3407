"""The re-ranking stage: `Reranker.__call__(query, candidates, n) -> Candidates`, the shared
`StageContext` re-rankers read (catalog, user histories, item embeddings, availability), and
the `RERANKERS` registry.

A re-ranker returns at most `n` candidates; the list order is the presentation order, and
`scores` keep each item's relevance estimate from the ranker (a diversity or exploration
stage moves items without pretending to re-estimate relevance), while its own values go to
`stage_scores[name]`. Filters also say up front which items they will drop (`excluded`), so
the recall stage can skip them instead of wasting its quotas.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from lmrec.data.dataset import Dataset
from lmrec.rank.base import Event, Query, Registry, StageConfig
from lmrec.rank.history import UserHistory
from lmrec.types import Candidates

__all__ = ["StageContext", "Reranker", "RERANKERS", "Filter"]


class StageContext:
    """What the stages after recall read about the world: the data set (id maps, item
    table), every user's history (kept current by the pipeline's `update`), item
    availability (mutable at run time) and item embeddings from `encoder` (loaded on first
    use, through the embedding cache)."""

    def __init__(self, dataset: Dataset, history: UserHistory | None = None, *, encoder: str = "minilm",
                 item_vectors: np.ndarray | None = None) -> None:
        self.dataset = dataset
        self.history = history if history is not None else UserHistory()
        self.encoder = encoder
        table = dataset.item_table
        self.available = (np.asarray(table.available, bool).copy() if table is not None
                          else np.ones(dataset.n_items, bool))
        if item_vectors is not None:
            self.__dict__["item_vectors"] = np.asarray(item_vectors, np.float32)

    @cached_property
    def item_vectors(self) -> np.ndarray:
        """(n_items, dim) normalised text embeddings of the catalog."""
        from lmrec.recall.item2item import dataset_item_vectors

        return np.asarray(dataset_item_vectors(self.dataset, self.encoder), np.float32)

    @cached_property
    def categories(self) -> list[list[str]]:
        table = self.dataset.item_table
        return table.categories if table is not None else [[] for _ in range(self.dataset.n_items)]

    @property
    def n_items(self) -> int:
        return self.dataset.n_items


class Reranker(ABC):
    """One re-ranking stage (see the module docstring). Subclasses set `name` and `Config`
    and implement `rerank(query, candidates, n)`; `bind(ctx)` is called before use."""

    name: ClassVar[str] = "reranker"
    Config: ClassVar[type[StageConfig]] = StageConfig

    def __init__(self, **params: Any) -> None:
        self.config = self.Config(**params)
        self.ctx: StageContext | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params.items())})"

    @property
    def params(self) -> dict[str, Any]:
        return self.config.model_dump(by_alias=True)

    def bind(self, ctx: StageContext) -> None:
        """Attach the shared context (the catalog, histories, embeddings)."""
        self.ctx = ctx

    def __call__(self, query: Query, candidates: Candidates, n: int) -> Candidates:
        if self.ctx is None:
            raise RuntimeError(f"re-ranker {self.name!r} is not bound; call bind(context) first")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if not len(candidates):
            return candidates
        out = self.rerank(query, candidates, n)
        return out if len(out) <= n else out.top(n)

    @abstractmethod
    def rerank(self, query: Query, candidates: Candidates, n: int) -> Candidates: ...

    def update(self, event: Event) -> None:  # noqa: B027 - most stages keep no feedback state
        """Feedback for stages that learn online (exploration); others ignore it."""

    def excluded(self, query: Query) -> np.ndarray | None:
        """Items this stage would drop for `query` (None: it drops none by rule)."""
        return None

    def state(self) -> dict[str, np.ndarray]:
        """Arrays to persist (learned feedback)."""
        return {}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        pass


class Filter(Reranker):
    """A re-ranker that only removes items: those in `excluded(query)`; order is kept."""

    def rerank(self, query: Query, candidates: Candidates, n: int) -> Candidates:
        drop = self.excluded(query)
        if drop is None or not len(drop):
            return candidates
        return candidates.take(np.flatnonzero(~np.isin(candidates.items, drop)))

    @abstractmethod
    def excluded(self, query: Query) -> np.ndarray: ...


RERANKERS: Registry[Reranker] = Registry("reranker")
for _name, _path in {"seen": "filters:SeenFilter", "available": "filters:AvailabilityFilter",
                     "blocked": "filters:BlockFilter", "mmr": "diversity:MMR",
                     "category-run": "diversity:CategoryRunLimit", "sim-threshold": "diversity:SimilarityThreshold",
                     "thompson": "exploration:ThompsonSampling", "ucb": "exploration:UCB",
                     "gumbel": "exploration:GumbelTopK"}.items():
    RERANKERS.register(_name, f"lmrec.rerank.{_path}")
