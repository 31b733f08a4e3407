"""The pipeline's first stage: run named recall channels with per-channel quotas and a
fallback chain, then merge their lists into one de-duplicated candidate pool per user.

Each channel answers through `Recommender.user_scores(batch)` (`lmrec.recall.scores`): its
top `quota` items for the user's current history, the raw score of any other pooled item,
and the mean and standard deviation of its score over the whole catalog, so no channel has
to score every item. Each pooled candidate keeps the channels that listed it (`sources`)
and, for every channel that ran for the user, its score on the candidate
(stage_scores[channel], whether or not the channel listed it), that score z-scored over the
catalog for this user (stage_scores["z:" + channel]; the catalog of available items: deleted
and withdrawn items count in no one's moments, so the z-scores depend on the items that can
be served and not on which unavailable items a pipeline happens to hold, or at which
indices) and its 1-based rank in the channel's
list (stage_scores["rank:" + channel], NaN when not listed). The merge score is the weighted
sum of catalog z-scores ("zscore", a CF + LM blend restricted to the pool) or reciprocal rank
fusion ("rrf").
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from lmrec.rank.features import MERGE_KEY, RANK_PREFIX, Z_PREFIX
from lmrec.recall.base import Recommender
from lmrec.recall.scores import UserScores
from lmrec.types import Candidates, HistoryBatch

__all__ = ["Channel", "RecallStage"]


@dataclass
class Channel:
    """A fitted recall model under a pipeline name, with its quota, the history length a
    user needs for it to run, its merge weight, whether it only runs as a fallback, and how
    it retrieves ("exact" or "hnsw" for vector models; see `Recommender.prepare_retrieval`)."""

    name: str
    model: Recommender
    quota: int = 100
    min_history: int = 1
    weight: float = 1.0
    fallback_only: bool = False
    index: str = "exact"
    index_params: dict[str, Any] = field(default_factory=dict)

    def prepare(self) -> None:
        """Build what retrieval needs (an ANN index) once, off the request path."""
        self.model.prepare_retrieval(self.index, **self.index_params)


@dataclass
class _Run:
    """One channel's answer for some rows of a batch: per row its scores object, the row's
    position in it, the listed items and the catalog moments."""

    scores: UserScores
    pos: int
    top: np.ndarray
    mean: float
    std: float


class RecallStage:
    """Runs channels for a batch of users and merges (see the module docstring).

    `chain`: names of channels tried in order for users whose pool has fewer than
    `min_candidates` items after the main channels (e.g. new users -> popular).
    """

    def __init__(self, channels: Sequence[Channel], *, chain: Sequence[str] = (), min_candidates: int = 10,
                 method: Literal["zscore", "rrf"] = "zscore", k_rrf: float = 60.0) -> None:
        names = [c.name for c in channels]
        if len(set(names)) != len(names):
            raise ValueError(f"channel names must be unique, got {names}")
        for name in chain:
            if name not in names:
                raise ValueError(f"fallback.chain names unknown channel {name!r}; channels: {names}")
        if method not in ("zscore", "rrf"):
            raise ValueError(f"merge.method must be 'zscore' or 'rrf', got {method!r}")
        self.channels = {c.name: c for c in channels}
        self.chain, self.min_candidates, self.method, self.k_rrf = list(chain), min_candidates, method, k_rrf

    def _run(self, ch: Channel, batch: HistoryBatch, rows: np.ndarray, excluded: Sequence[np.ndarray],
             allowed: np.ndarray | None, dead: np.ndarray) -> dict[int, _Run]:
        if not len(rows):
            return {}
        runs_for = ch.model.runs_for(batch.rows(rows))
        rows = rows[runs_for]  # e.g. users an id-based model has never seen are cold for it
        if not len(rows):
            return {}
        scores = ch.model.user_scores(batch.rows(rows))
        out = {}
        for j, r in enumerate(rows.tolist()):
            top, _ = scores.top(j, ch.quota, excluded[r], allowed)
            mean, std = scores.moments_without(j, dead)
            out[r] = _Run(scores, j, top, mean, std)
        return out

    def __call__(self, batch: HistoryBatch, excluded: Sequence[np.ndarray],
                 allowed: np.ndarray | None = None, *, unavailable: np.ndarray | None = None,
                 timings: dict[str, float] | None = None) -> list[Candidates]:
        """Candidate pools for the rows of `batch`, in merge-score order.

        `excluded[j]`: item indices row j must not get (seen, unavailable, blocked);
        `allowed`: optional boolean mask over the catalog; `unavailable`: sorted indices of
        the items outside the served catalog (left out of the z-score moments; hand the same
        array while it does not change, channels cache on it); `timings`: when a dict, each
        channel's wall time ("recall:<name>") and the merge's are added to it, in ms.
        """

        def lap(key: str, t0: float) -> None:
            if timings is not None:
                timings[key] = timings.get(key, 0.0) + (time.perf_counter() - t0) * 1000.0

        n = len(batch)
        dead = np.zeros(0, np.int64) if unavailable is None else unavailable
        lengths = batch.lengths()
        runs: dict[str, dict[int, _Run]] = {}
        for ch in self.channels.values():
            if ch.fallback_only:
                continue
            t0 = time.perf_counter()
            got = self._run(ch, batch, np.flatnonzero(lengths >= ch.min_history), excluded, allowed, dead)
            if got:
                runs[ch.name] = got
            lap(f"recall:{ch.name}", t0)
        listed = [set() for _ in range(n)]
        for got in runs.values():
            for r, run in got.items():
                listed[r].update(run.top.tolist())
        for name in self.chain:
            short = np.array([r for r in range(n) if len(listed[r]) < self.min_candidates], np.int64)
            if not len(short):
                break
            t0 = time.perf_counter()
            ch = self.channels[name]
            prev = runs.get(name, {})
            todo = short[lengths[short] >= ch.min_history]
            todo = np.array([r for r in todo.tolist() if r not in prev], np.int64)
            got = self._run(ch, batch, todo, excluded, allowed, dead)
            for r, run in got.items():
                listed[r].update(run.top.tolist())
            if got:
                runs[name] = {**prev, **got}
            lap(f"recall:{name}", t0)
        t0 = time.perf_counter()
        out = [self._merge(r, runs) for r in range(n)]
        lap("merge", t0)
        return out

    def _merge(self, row: int, runs: dict[str, dict[int, _Run]]) -> Candidates:
        parts = [(name, got[row]) for name, got in runs.items() if row in got]
        if not parts:
            return Candidates.empty()
        pool = np.unique(np.concatenate([run.top for _, run in parts]))
        if not len(pool):
            return Candidates.empty()
        stage: dict[str, np.ndarray] = {}
        merge = np.zeros(len(pool))
        listed_by = np.zeros((len(pool), len(parts)), bool)
        # channels with weight 0 bring candidates and features only; when nothing weighted ran
        # for this user (a new user served by the fallback alone) they order the pool equally
        weights = {name: self.channels[name].weight for name, _ in parts}
        if not any(weights.values()):
            weights = dict.fromkeys(weights, 1.0)
        for c, (name, run) in enumerate(parts):
            raw = run.scores.at(run.pos, pool).astype(np.float64)
            z = (raw - run.mean) / run.std if run.std > 1e-12 else np.zeros(len(pool))
            rank = np.full(len(pool), np.nan)
            where = np.searchsorted(pool, run.top)
            rank[where] = np.arange(1, len(where) + 1)
            listed_by[where, c] = True
            w = weights[name]
            merge += w * z if self.method == "zscore" else np.where(np.isnan(rank), 0.0, w / (self.k_rrf + np.nan_to_num(rank)))
            stage[name], stage[Z_PREFIX + name], stage[RANK_PREFIX + name] = raw, z, rank
        order = np.lexsort((pool, -merge))
        # each item's listing channels as a bit mask, mapped once per distinct mask to a tuple
        masks = listed_by[order] @ (1 << np.arange(len(parts)))
        names = [name for name, _ in parts]
        tuples = {int(m): tuple(n for c, n in enumerate(names) if (int(m) >> c) & 1) for m in np.unique(masks)}
        sources = [tuples[m] for m in masks.tolist()]
        out = Candidates(pool[order], merge[order], sources,
                         {k: np.asarray(v[order], np.float32) for k, v in stage.items()})
        out.stage_scores[MERGE_KEY] = out.scores.copy()
        return out
