"""Long-tail re-ranking: give items outside the popular head more of the list, at a chosen
accuracy cost.

The head / tail split is the one the evaluator reports (`lmrec.eval.fairness`): the head is
the ceil(`head_share` x catalog) items with the most distinct users, from the fitted history
and every event since (`update`). Two methods:

- `xquad` (Abdollahpouri et al., 2019, "Managing popularity bias in recommender systems with
  personalized re-ranking"): greedy; the next item maximises
  (1 - strength) * relevance + strength * sum over c in {head, tail} of
  P(c | user) * [item in c] * (1 - share of c among the items already chosen), so the list
  covers the tail in proportion to P(tail | user): 0.5 with `target = "uniform"`, the share of
  tail items in the user's own history with `target = "user"`. It balances: a head-heavy list
  (what collaborative models give) gets more tail, a list already past the target does not.
- `penalty`: one pass, always away from popular items; the score is
  (1 - strength) * relevance - strength * log(1 + popularity) / log(1 + max popularity).

Relevance is the ranker's score min-max normalised over the candidates. `strength = 0`
keeps the ranker's order. The candidates' `scores` are left as the ranker made them; the
objective of each chosen item goes to `stage_scores["longtail"]`.

Example:
    >>> import numpy as np
    >>> from lmrec.data.dataset import Dataset, IdMap, Interactions
    >>> from lmrec.rank.history import UserHistory
    >>> from lmrec.types import Candidates, Query
    >>> from lmrec.rerank.base import StageContext
    >>> inter = Interactions(np.array([0, 1, 2, 0]), np.array([0, 0, 0, 1]), np.array([1, 2, 3, 4]))
    >>> ds = Dataset("d", IdMap(["a", "b", "c"]), IdMap(list("vwxyz")), inter)
    >>> r = LongTailReranker(strength=0.6, head_share=0.4)  # head: items 0 and 1
    >>> r.bind(StageContext(ds, UserHistory().fit(inter, 3)))
    >>> r(Query(user=2), Candidates(np.array([0, 1, 3]), np.array([3.0, 2.0, 1.0])), 2).items.tolist()
    [0, 3]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field

from lmrec.component import ComponentConfig
from lmrec.eval.fairness import head_items
from lmrec.rerank.base import Reranker, StageContext
from lmrec.rerank.diversity import relevance
from lmrec.types import Candidates, Event, Query

__all__ = ["LongTailReranker"]


class LongTailConfig(ComponentConfig):
    """strength: weight of the long-tail objective (0 = the ranker's order); method: "xquad"
    or "penalty"; head_share: share of the catalog that counts as the popular head; target:
    P(tail | user) for xquad, "uniform" (0.5) or "user" (the tail share of the user's history)."""

    strength: float = Field(0.3, ge=0.0, le=1.0)
    method: Literal["xquad", "penalty"] = "xquad"
    head_share: float = Field(0.2, gt=0.0, lt=1.0)
    target: Literal["uniform", "user"] = "uniform"


class LongTailReranker(Reranker):
    """Raises the long tail's share of the list (see the module docstring)."""

    name = "longtail"
    Config = LongTailConfig
    config: LongTailConfig

    def bind(self, ctx: StageContext) -> None:
        super().bind(ctx)
        seen = ctx.history.seen_matrix(ctx.n_items)
        self.popularity = np.bincount(seen.indices, minlength=ctx.n_items).astype(np.int64)
        self._head: np.ndarray | None = None

    def _update_one(self, event: Event) -> None:  # pragma: no cover - update() handles batches
        self.update([event])

    def update(self, events: Sequence[Event]) -> None:
        """Count each (user, item) pair that is new. The pipeline updates the shared history
        first, so a pair is new when the history holds it exactly as often as this batch does."""
        if not events:
            return
        if self.ctx is None:
            raise RuntimeError(f"{self.name}: bind(context) before feeding events")
        pairs: dict[tuple[int, int], int] = {}
        for e in events:
            pairs[(int(e.user), int(e.item))] = pairs.get((int(e.user), int(e.item)), 0) + 1
        top = max(i for _, i in pairs) + 1
        if top > len(self.popularity):
            self.popularity = np.r_[self.popularity, np.zeros(top - len(self.popularity), np.int64)]
        for (u, i), k in pairs.items():
            if int(np.count_nonzero(self.ctx.history.items(u) == i)) <= k:
                self.popularity[i] += 1
        self._head = None

    def forget(self, events: Sequence[Event]) -> bool:
        """An erased user no longer counts for the items they had (one each, as in `update`)."""
        if self.ctx is None:
            return False
        for i in {int(e.item) for e in events}:
            if i < len(self.popularity) and self.popularity[i] > 0:
                self.popularity[i] -= 1
        self._head = None
        return True

    def add_items(self, items: np.ndarray, dataset) -> None:  # type: ignore[no-untyped-def]
        if len(self.popularity) < dataset.n_items:
            self.popularity = np.r_[self.popularity, np.zeros(dataset.n_items - len(self.popularity), np.int64)]
            self._head = None

    def head(self) -> np.ndarray:
        """Boolean mask of the popular head (recomputed after events change the counts)."""
        if self._head is None:
            self._head = head_items(self.popularity, self.config.head_share)
        return self._head

    def _is_head(self, items: np.ndarray) -> np.ndarray:
        h = self.head()
        out = np.zeros(len(items), bool)
        known = items < len(h)
        out[known] = h[items[known]]
        return out

    def _tail_target(self, query: Query) -> float:
        if self.config.target == "uniform" or self.ctx is None:
            return 0.5
        seen = np.unique(self.ctx.items_of(query))
        if not len(seen):
            return 0.5
        return float((1.0 + (~self._is_head(seen)).sum()) / (2.0 + len(seen)))  # Laplace-smoothed

    def rerank(self, query: Query, candidates: Candidates, n: int) -> Candidates:
        lam = self.config.strength
        rel = relevance(candidates)
        m = len(candidates)
        if lam == 0.0:
            order = np.lexsort((np.arange(m), -rel))[:n]
            return _with(candidates, order, self.name, rel[order])
        items = np.asarray(candidates.items, np.int64)
        if self.config.method == "penalty":
            pop = np.zeros(m)
            known = items < len(self.popularity)
            pop[known] = self.popularity[items[known]]
            top = max(float(self.popularity.max(initial=0)), 1.0)
            obj = (1 - lam) * rel - lam * np.log1p(pop) / np.log1p(top)
            order = np.lexsort((np.arange(m), -obj))[:n]
            return _with(candidates, order, self.name, obj[order])
        tail = ~self._is_head(items)
        p_tail = self._tail_target(query)
        free = np.ones(m, bool)
        n_tail = 0
        order, values = [], []
        for step in range(min(n, m)):
            # the smooth xQuAD coverage term: how little of each group the list holds so far
            cov_tail = 1.0 - (n_tail / step if step else 0.0)
            cov_head = 1.0 - ((step - n_tail) / step if step else 0.0)
            div = np.where(tail, p_tail * cov_tail, (1.0 - p_tail) * cov_head)
            obj = np.where(free, (1 - lam) * rel + lam * div, -np.inf)
            j = int(np.argmax(obj))  # ties: the earlier (better ranked) candidate
            order.append(j)
            values.append(obj[j])
            free[j] = False
            n_tail += int(tail[j])
        return _with(candidates, np.array(order, np.int64), self.name, np.array(values))


def _with(c: Candidates, order: np.ndarray, name: str, values: np.ndarray) -> Candidates:
    out = c.take(order)
    out.stage_scores[name] = np.asarray(values, np.float32)
    return out
