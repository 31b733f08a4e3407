"""Exploration re-rankers: Thompson sampling and UCB over per-item click feedback, and Gumbel
top-k (Plackett-Luce) sampling of the list with a temperature.

Feedback arrives through `update(event)`: an IMPRESSION event counts a showing, a positive
kind (click, cart, purchase by default) a success. The bandits either blend their estimate
into the normalised relevance (`weight`) or own a few list positions (`slots`): those
positions go to the candidate with the best sampled estimate among those not yet placed.

Example:
    >>> import numpy as np
    >>> from lmrec.types import Query
    >>> from lmrec.rerank.base import StageContext
    >>> from lmrec.testing.toy import toy_dataset
    >>> from lmrec.types import Candidates
    >>> g = GumbelTopK(temperature=0.0); g.bind(StageContext(toy_dataset()))
    >>> g(Query(user=0), Candidates(np.arange(5), np.array([5.0, 4, 3, 2, 1])), 3).items.tolist()
    [0, 1, 2]
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from lmrec.component import ComponentConfig

from lmrec.types import Event, Query
from lmrec.rerank.base import Reranker, StageContext
from lmrec.rerank.diversity import relevance
from lmrec.types import Candidates, EventKind

__all__ = ["ThompsonSampling", "UCB", "GumbelTopK"]


class BanditConfig(ComponentConfig):
    """weight: share of the bandit estimate in the blended score (when no `slots`); slots:
    0-based list positions the bandit fills instead; alpha / beta: the Beta prior;
    positive: event kinds that count as a success; seed: of the sampler."""

    weight: float = Field(0.2, ge=0.0, le=1.0)
    slots: list[int] = []
    alpha: float = Field(1.0, gt=0)
    beta: float = Field(1.0, gt=0)
    positive: list[str] = ["click", "cart", "purchase"]
    seed: int = 0


class _Bandit(Reranker):
    """Per-item impression / success counts and the blending or slot logic."""

    config: BanditConfig

    def bind(self, ctx: StageContext) -> None:
        super().bind(ctx)
        self.shows = np.zeros(ctx.n_items, np.float64)
        self.wins = np.zeros(ctx.n_items, np.float64)
        self.rng = np.random.default_rng(self.config.seed)
        self._positive = {EventKind.parse(k) for k in self.config.positive}

    def _grow(self, n: int) -> None:
        if n > len(self.shows):
            self.shows = np.r_[self.shows, np.zeros(n - len(self.shows))]
            self.wins = np.r_[self.wins, np.zeros(n - len(self.wins))]

    def _update_one(self, event: Event) -> None:
        if not hasattr(self, "shows"):
            raise RuntimeError(f"{self.name}: bind(context) before feeding events")
        self._grow(event.item + 1)
        if event.kind == EventKind.IMPRESSION:
            self.shows[event.item] += 1
        elif event.kind in self._positive:
            self.wins[event.item] += 1

    def _estimate(self, items: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def rerank(self, query: Query, candidates: Candidates, n: int) -> Candidates:
        self._grow(int(candidates.items.max()) + 1)
        theta = self._estimate(candidates.items)
        m = len(candidates)
        if self.config.slots:
            slots = set(self.config.slots)
            free = list(range(m))
            order = []
            for pos in range(min(n, m)):
                pick = max(free, key=lambda j: (theta[j], -j)) if pos in slots else free[0]
                order.append(pick)
                free.remove(pick)
        else:
            w = self.config.weight
            blended = (1 - w) * relevance(candidates) + w * theta
            order = np.lexsort((np.arange(m), -blended))[:n].tolist()
        out = candidates.take(np.array(order, np.int64))
        out.stage_scores[self.name] = theta[order].astype(np.float32)
        return out

    def state(self) -> dict[str, np.ndarray]:
        return {"shows": self.shows, "wins": self.wins}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.shows, self.wins = np.asarray(state["shows"], np.float64), np.asarray(state["wins"], np.float64)


class ThompsonSampling(_Bandit):
    """A draw from each item's Beta(alpha + successes, beta + failures) posterior."""

    name = "thompson"
    Config = BanditConfig

    def _estimate(self, items: np.ndarray) -> np.ndarray:
        wins, shows = self.wins[items], self.shows[items]
        return self.rng.beta(self.config.alpha + wins, self.config.beta + np.maximum(shows - wins, 0.0))


class UCBConfig(BanditConfig):
    """c: width of the confidence bonus."""

    c: float = Field(1.0, ge=0)


class UCB(_Bandit):
    """Posterior mean plus c * sqrt(2 ln(total showings + 2) / (item showings + 1)), clipped to 1."""

    name = "ucb"
    Config = UCBConfig
    config: UCBConfig

    def _estimate(self, items: np.ndarray) -> np.ndarray:
        a, b = self.config.alpha, self.config.beta
        wins, shows = self.wins[items], self.shows[items]
        mean = (a + wins) / (a + b + np.maximum(shows, wins))
        bonus = self.config.c * np.sqrt(2 * np.log(self.shows.sum() + 2) / (shows + 1))
        return np.minimum(mean + bonus, 1.0)


class GumbelConfig(ComponentConfig):
    """temperature: 0 keeps the order; larger values sample further from it. seed: of the
    sampler (each call draws new noise)."""

    temperature: float = Field(1.0, ge=0.0)
    seed: int = 0


class GumbelTopK(Reranker):
    """Samples the list from the Plackett-Luce model with logits z / temperature (z: the
    scores z-scored within the list) by sorting z / temperature + Gumbel noise: the Gumbel
    top-k trick."""

    name = "gumbel"
    Config = GumbelConfig
    config: GumbelConfig

    def bind(self, ctx: StageContext) -> None:
        super().bind(ctx)
        self.rng = np.random.default_rng(self.config.seed)

    def rerank(self, query: Query, candidates: Candidates, n: int) -> Candidates:
        m = len(candidates)
        tau = self.config.temperature
        if tau == 0:
            return candidates.top(n)
        s = np.asarray(candidates.scores, np.float64)
        ok = np.isfinite(s)
        z = np.full(m, -1e9)
        if ok.any():
            sd = s[ok].std()
            z[ok] = (s[ok] - s[ok].mean()) / sd if sd > 1e-12 else 0.0
        keys = z / tau + self.rng.gumbel(size=m)
        order = np.lexsort((np.arange(m), -keys))[:n]
        out = candidates.take(order)
        out.stage_scores[self.name] = keys[order].astype(np.float32)
        return out
