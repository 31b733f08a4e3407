"""A score-level blend of a collaborative-filtering model and an LM channel.

score(u) = normalise(cf.score(u)) + weight * normalise(lm.score(u)), where normalise is a
per-user z-score over the whole catalog (default) or a per-user min-max to [0, 1]. A user
whose scores are constant (a cold user of EASE) gets zeros from that member.
Registered as "blend"; its grid tunes `weight` with the member parameters held fixed.

Example:
    >>> from lmrec.testing.toy import toy_dataset
    >>> ds = toy_dataset()
    >>> model = BlendRecommender(cf="ease", cf_params={"lam": 10.0}, lm="lm-mean",
    ...                          lm_params={"encoder": "fake"}, weight=0.5).fit(ds.interactions, ds)
    >>> [len(c) for c in model.recommend([0, 1], k=5)]
    [5, 5]
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from lmrec.data.dataset import Dataset, Interactions
from lmrec.component import ComponentConfig
from lmrec.recall.base import Recommender
from lmrec.recall.normalise import normalise

__all__ = ["BlendConfig", "BlendRecommender", "normalise_scores"]

# fitted members by (model, params, training data): tuning `weight` refits the same members
# on the same data at every grid point, so they are fitted once (a small LRU, not a store)
_MEMBERS: OrderedDict[str, Recommender] = OrderedDict()
_MEMBERS_MAX = 4


def normalise_scores(scores: np.ndarray, how: str = "zscore") -> np.ndarray:
    """Per-row normalisation of a (n_users, n_items) score matrix (`lmrec.recall.normalise`):
    "zscore" (mean 0, std 1) or "minmax" ([0, 1]); constant rows become 0. float32.

    >>> normalise_scores(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]), "minmax").tolist()
    [[0.0, 0.5, 1.0], [0.0, 0.0, 0.0]]
    """
    return normalise(scores, how).astype(np.float32)  # type: ignore[arg-type]


class BlendConfig(ComponentConfig):
    """cf / lm: registered model names of the two members, with their parameters; weight:
    the LM member's weight; norm: "zscore" or "minmax" (per user, over the catalog)."""

    cf: str = "ease"
    cf_params: dict[str, Any] = Field(default_factory=dict)
    lm: str = "lm-recency"
    lm_params: dict[str, Any] = Field(default_factory=dict)
    weight: float = Field(0.75, ge=0.0)
    norm: Literal["zscore", "minmax"] = "zscore"


def _data_key(train: Interactions, dataset: Dataset) -> str:
    h = hashlib.sha256()
    for col in (train.user, train.item, train.timestamp, train.value):
        h.update(np.ascontiguousarray(col).tobytes())
    h.update(f"{dataset.name}:{dataset.n_users}:{dataset.n_items}:{id(dataset)}".encode())
    return h.hexdigest()


class BlendRecommender(Recommender):
    """normalise(cf) + weight * normalise(lm), per user (see module docstring)."""

    name = "blend"
    Config = BlendConfig
    config: BlendConfig

    members: dict[str, Recommender]

    def _member(self, role: str) -> Recommender:
        from lmrec.component import create

        cfg = self.config
        return create(cfg.cf, cfg.cf_params) if role == "cf" else create(cfg.lm, cfg.lm_params)

    def _fit(self, matrix: sp.csr_matrix, train: Interactions, dataset: Dataset) -> None:
        data = _data_key(train, dataset)
        self.members = {}
        for role in ("cf", "lm"):
            model = self._member(role)
            key = json.dumps([model.name, model.params, data], sort_keys=True, default=str)
            if key in _MEMBERS:
                _MEMBERS.move_to_end(key)
            else:
                _MEMBERS[key] = model.fit(train, dataset)
                while len(_MEMBERS) > _MEMBERS_MAX:
                    _MEMBERS.popitem(last=False)
            self.members[role] = _MEMBERS[key]

    def _score(self, users: np.ndarray) -> np.ndarray:
        how = self.config.norm
        cf = normalise_scores(self.members["cf"].score(users), how)
        if self.config.weight == 0:
            return cf
        return cf + np.float32(self.config.weight) * normalise_scores(self.members["lm"].score(users), how)

    def _state(self) -> dict[str, np.ndarray]:
        return {f"{role}__{k}": v for role, m in self.members.items() for k, v in m._state().items()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.members = {}
        for role in ("cf", "lm"):
            model = self._member(role)
            model.n_users, model.n_items, model.matrix = self.n_users, self.n_items, self.matrix
            prefix = f"{role}__"
            model._set_state({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
            self.members[role] = model


def clear_member_cache() -> None:
    """Forget the fitted members kept for weight tuning (frees their memory)."""
    _MEMBERS.clear()
