"""The pipeline's first stage: run named recall channels with per-channel quotas and a
fallback chain, then merge their lists into one de-duplicated candidate pool per user.

Each pooled candidate keeps the channels that listed it (`sources`) and, for every channel
that ran for the user, its score on the candidate (stage_scores[channel], whether or not the
channel listed it), that score z-scored over the whole catalog for this user
(stage_scores["z:" + channel]) and its 1-based rank in the channel's list
(stage_scores["rank:" + channel], NaN when not listed). The merge score is the weighted sum
of catalog z-scores ("zscore", a CF + LM blend restricted to the pool) or reciprocal rank
fusion ("rrf").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from lmrec.rank.features import MERGE_KEY, RANK_PREFIX, Z_PREFIX
from lmrec.recall.base import Recommender
from lmrec.types import Candidates, topk_indices

__all__ = ["Channel", "RecallStage"]


@dataclass
class Channel:
    """A fitted recall model under a pipeline name, with its quota, the history length a
    user needs for it to run, its merge weight and whether it only runs as a fallback."""

    name: str
    model: Recommender
    quota: int = 100
    min_history: int = 1
    weight: float = 1.0
    fallback_only: bool = False


@dataclass
class _Listing:
    """One channel's output for a batch of users (rows where it ran)."""

    rows: np.ndarray  # batch rows the channel ran for
    scores: np.ndarray  # (len(rows), n_items) raw scores
    top: list[np.ndarray]  # per row: listed items, best first
    mean: np.ndarray
    std: np.ndarray


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

    def _run(self, ch: Channel, users: np.ndarray, rows: np.ndarray, excluded: Sequence[np.ndarray],
             allowed: np.ndarray | None) -> _Listing | None:
        rows = rows[users[rows] < ch.model.n_users]  # users the channel has never seen are cold for it
        if not len(rows):
            return None
        raw = np.asarray(ch.model.score(users[rows]), np.float32)
        mean = raw.mean(axis=1, dtype=np.float64)
        std = raw.std(axis=1, dtype=np.float64)
        masked = raw.copy()
        for j, r in enumerate(rows):
            drop = excluded[r]
            masked[j, drop[drop < masked.shape[1]]] = -np.inf
        if allowed is not None:
            masked[:, ~allowed] = -np.inf
        top = topk_indices(masked, ch.quota)
        lists = [t[np.isfinite(masked[r, t])] for r, t in enumerate(top)]
        return _Listing(rows, raw, lists, mean, std)

    def __call__(self, users: np.ndarray, history_lengths: np.ndarray, excluded: Sequence[np.ndarray],
                 allowed: np.ndarray | None = None) -> list[Candidates]:
        """Candidate pools for `users` (a batch), in merge-score order.

        `history_lengths[j]`: events of users[j] (decides which channels run);
        `excluded[j]`: item indices users[j] must not get (seen, unavailable, blocked);
        `allowed`: optional boolean mask over the catalog.
        """
        users = np.asarray(users, np.int64)
        n = len(users)
        runs: dict[str, _Listing] = {}
        for ch in self.channels.values():
            if ch.fallback_only:
                continue
            rows = np.flatnonzero(history_lengths >= ch.min_history)
            listing = self._run(ch, users, rows, excluded, allowed)
            if listing is not None:
                runs[ch.name] = listing
        listed = [set() for _ in range(n)]
        for lst in runs.values():
            for r, items in zip(lst.rows, lst.top):
                listed[r].update(items.tolist())
        for name in self.chain:
            short = np.array([r for r in range(n) if len(listed[r]) < self.min_candidates], np.int64)
            if not len(short):
                break
            ch = self.channels[name]
            prev = runs.get(name)
            todo = short[history_lengths[short] >= ch.min_history]
            if prev is not None:
                todo = todo[~np.isin(todo, prev.rows)]
            listing = self._run(ch, users, todo, excluded, allowed)
            if listing is None:
                continue
            for r, items in zip(listing.rows, listing.top):
                listed[r].update(items.tolist())
            runs[name] = listing if prev is None else _merge_listings(prev, listing)
        return [self._merge(r, runs) for r in range(n)]

    def _merge(self, row: int, runs: dict[str, _Listing]) -> Candidates:
        parts = []
        for name, lst in runs.items():
            pos = np.searchsorted(lst.rows, row)
            if pos < len(lst.rows) and lst.rows[pos] == row:
                parts.append((name, lst, int(pos)))
        if not parts:
            return Candidates.empty()
        pool = np.unique(np.concatenate([lst.top[p] for _, lst, p in parts]))
        if not len(pool):
            return Candidates.empty()
        stage: dict[str, np.ndarray] = {}
        merge = np.zeros(len(pool))
        listed_by = np.zeros((len(pool), len(parts)), bool)
        for c, (name, lst, p) in enumerate(parts):
            raw = lst.scores[p, pool].astype(np.float64)
            sd = lst.std[p]
            z = (raw - lst.mean[p]) / sd if sd > 1e-12 else np.zeros(len(pool))
            rank = np.full(len(pool), np.nan)
            where = np.searchsorted(pool, lst.top[p])
            rank[where] = np.arange(1, len(where) + 1)
            listed_by[where, c] = True
            w = self.channels[name].weight
            merge += w * z if self.method == "zscore" else np.where(np.isnan(rank), 0.0, w / (self.k_rrf + np.nan_to_num(rank)))
            stage[name], stage[Z_PREFIX + name], stage[RANK_PREFIX + name] = raw, z, rank
        order = np.lexsort((pool, -merge))
        # each item's listing channels as a bit mask, mapped once per distinct mask to a tuple
        masks = listed_by[order] @ (1 << np.arange(len(parts)))
        names = [name for name, _, _ in parts]
        tuples = {int(m): tuple(n for c, n in enumerate(names) if (int(m) >> c) & 1) for m in np.unique(masks)}
        sources = [tuples[m] for m in masks.tolist()]
        out = Candidates(pool[order], merge[order], sources,
                         {k: np.asarray(v[order], np.float32) for k, v in stage.items()})
        out.stage_scores[MERGE_KEY] = out.scores.copy()
        return out


def _merge_listings(a: _Listing, b: _Listing) -> _Listing:
    """One listing from two disjoint row sets of the same channel (rows kept sorted)."""
    rows = np.r_[a.rows, b.rows]
    order = np.argsort(rows, kind="stable")
    tops = a.top + b.top
    return _Listing(rows[order], np.concatenate([a.scores, b.scores])[order], [tops[i] for i in order],
                    np.r_[a.mean, b.mean][order], np.r_[a.std, b.std][order])
