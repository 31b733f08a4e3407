"""Business filters: items the user already consumed, items not available, blocked items.

Example:
    >>> import numpy as np
    >>> from lmrec.testing.toy import toy_dataset
    >>> from lmrec.types import Query
    >>> from lmrec.rerank.base import StageContext
    >>> from lmrec.types import Candidates
    >>> ctx = StageContext(toy_dataset())
    >>> f = BlockFilter(items=["1"]); f.bind(ctx)  # original item id "1" is item index 0
    >>> f(Query(user=0, context={"blocked": [2]}), Candidates(np.arange(4), np.zeros(4)), 10).items.tolist()
    [1, 3]
"""

from __future__ import annotations

import numpy as np

from lmrec.component import ComponentConfig

from lmrec.types import Query
from lmrec.rerank.base import Filter, StageContext

__all__ = ["SeenFilter", "AvailabilityFilter", "BlockFilter"]


class SeenConfig(ComponentConfig):
    pass


class SeenFilter(Filter):
    """Drops items in the user's history (kept current by the pipeline's `update`)."""

    name = "seen"
    Config = SeenConfig

    def excluded(self, query: Query) -> np.ndarray:
        if self.ctx is None:
            return np.zeros(0, np.int64)
        return np.unique(self.ctx.items_of(query))


class AvailabilityConfig(ComponentConfig):
    pass


class AvailabilityFilter(Filter):
    """Drops items marked unavailable (`ItemTable.available`, or `set_available` at run time)."""

    name = "available"
    Config = AvailabilityConfig

    def set_available(self, item: int, available: bool) -> None:
        if self.ctx is None:
            raise RuntimeError("available: bind(context) first")
        self.ctx.set_available(item, available)

    def excluded(self, query: Query) -> np.ndarray:
        if self.ctx is None:
            return np.zeros(0, np.int64)
        return self.ctx.unavailable()


class BlockConfig(ComponentConfig):
    """items: original item ids blocked for everyone; a request may block more with
    `Query.context["blocked"]` (item indices)."""

    items: list[str] = []


class BlockFilter(Filter):
    """Drops globally blocked items and the request's `context["blocked"]` items."""

    name = "blocked"
    Config = BlockConfig
    config: BlockConfig

    def bind(self, ctx: StageContext) -> None:
        super().bind(ctx)
        unknown = [i for i in self.config.items if i not in ctx.dataset.items]
        if unknown:
            raise ValueError(f"blocked.items: unknown item id {unknown[0]!r}")
        self.blocked = ctx.dataset.items.indices(self.config.items) if self.config.items else np.zeros(0, np.int64)

    def excluded(self, query: Query) -> np.ndarray:
        extra = query.context.get("blocked", ()) if query.context else ()
        base = getattr(self, "blocked", np.zeros(0, np.int64))
        if not len(extra):
            return base
        try:
            extra_arr = np.asarray(list(extra), dtype=np.int64)
        except (TypeError, ValueError):
            raise ValueError("query.context['blocked'] must be a list of item indices") from None
        return np.union1d(base, extra_arr)
