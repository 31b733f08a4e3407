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

from abc import abstractmethod
from collections.abc import Sequence
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from lmrec.data.dataset import Dataset
from lmrec.component import RERANKERS, Component, ComponentConfig
from lmrec.types import Event, Query
from lmrec.rank.history import UserHistory
from lmrec.types import Candidates, Query, not_in, session_items

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

    def items_of(self, query: Query) -> np.ndarray:
        """The query's history items in time order: a session's own (`Query.context`), else the
        stored user's (empty for an anonymous query)."""
        items = session_items(query)
        if items is not None:
            return items
        return self.history.items(query.user) if query.user is not None else np.zeros(0, np.int64)

    @cached_property
    def item_vectors(self) -> np.ndarray:
        """(n_items, dim) normalised text embeddings of the catalog."""
        from lmrec.recall.item2item import dataset_item_vectors

        return np.asarray(dataset_item_vectors(self.dataset, self.encoder), np.float32)

    def add_items(self, items: np.ndarray) -> None:
        """Items at `items` are new or changed in the data set: availability follows the item
        table, and their embeddings are computed now if the catalog's already are."""
        table = self.dataset.item_table
        n = self.dataset.n_items
        if len(self.available) < n:
            self.available = np.r_[self.available, np.ones(n - len(self.available), bool)]
        if table is not None:
            self.available[items] = np.asarray(table.available, bool)[items]
        self._unavailable = None
        if "item_vectors" in self.__dict__:
            from lmrec.recall.item2item import item_vectors_for

            self.__dict__["item_vectors"] = item_vectors_for(self.dataset, self.encoder, items,
                                                             self.__dict__["item_vectors"])
        self.__dict__.pop("categories", None)  # re-read from the (grown) table

    def unavailable(self) -> np.ndarray:
        """Indices of the items not available (computed once per change, not per request)."""
        got = getattr(self, "_unavailable", None)
        if got is None:
            got = self._unavailable = np.flatnonzero(~self.available)
        return got

    def set_available(self, item: int, available: bool) -> None:
        if not 0 <= item < len(self.available):
            raise IndexError(f"item index {item} outside the catalog of {len(self.available)}")
        self.available[item] = available
        self._unavailable = None

    @cached_property
    def categories(self) -> list[list[str]]:
        table = self.dataset.item_table
        return table.categories if table is not None else [[] for _ in range(self.dataset.n_items)]

    @property
    def n_items(self) -> int:
        return self.dataset.n_items


class Reranker(Component):
    """One re-ranking stage (see the module docstring). Subclasses set `name` and `Config`
    and implement `rerank(query, candidates, n)`; `bind(ctx)` is called before use."""

    name: ClassVar[str] = "reranker"
    Config: ClassVar[type[ComponentConfig]] = ComponentConfig

    def __init__(self, config: ComponentConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.ctx: StageContext | None = None

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

    def update(self, events: Sequence[Event]) -> None:
        """Feedback for stages that learn online (exploration); others ignore it."""
        for event in events:
            self._update_one(event)

    def _update_one(self, event: Event) -> None:  # noqa: B027 - most stages keep no feedback state
        pass

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
        return candidates.take(np.flatnonzero(not_in(candidates.items, drop)))

    @abstractmethod
    def excluded(self, query: Query) -> np.ndarray: ...
