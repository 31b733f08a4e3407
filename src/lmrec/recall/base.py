"""The base class of every model that scores the whole catalog for a user.

Public `fit` / `score` / `recommend` do the housekeeping (shape checks, seen-item masking,
id bookkeeping); subclasses implement `_fit` and `_score`.

Example:
    >>> from lmrec.testing.toy import toy_dataset
    >>> from lmrec.recall.popular import MostPopular
    >>> ds = toy_dataset()
    >>> model = MostPopular().fit(ds.interactions, ds)
    >>> [len(c) for c in model.recommend([0, 1], k=5)]
    [5, 5]
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict

from lmrec.data.dataset import Dataset, Interactions
from lmrec.types import Candidates, config_hash


class ModelConfig(BaseModel):
    """Base of every model config: typed, validated, round-trippable to JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Recommender(ABC):
    """A model that gives a score to every item of the catalog for a user.

    Subclasses set `name` and `Config` and implement `_fit(matrix, train, dataset)` and
    `_score(users) -> (len(users), n_items) float32`. The user-item matrix of the training
    interactions is kept in `self.matrix` (binary CSR) so `recommend` can drop seen items.
    """

    name: ClassVar[str] = "base"
    Config: ClassVar[type[ModelConfig]] = ModelConfig

    def __init__(self, config: ModelConfig | None = None, **params: Any) -> None:
        if config is not None and params:
            raise TypeError("give either a config object or keyword parameters, not both")
        self.config = config if config is not None else self.Config(**params)
        self.matrix: sp.csr_matrix | None = None
        self.n_users = 0
        self.n_items = 0

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}({args})"

    @property
    def params(self) -> dict[str, Any]:
        return self.config.model_dump()

    @property
    def is_fitted(self) -> bool:
        return self.matrix is not None

    def fit(self, train: Interactions, dataset: Dataset) -> Self:
        """Fit on `train` (indices over `dataset`'s id maps). Returns self."""
        self.n_users, self.n_items = dataset.n_users, dataset.n_items
        self.matrix = train.to_csr(self.n_users, self.n_items)
        self._fit(self.matrix, train, dataset)
        return self

    def score(self, users: np.ndarray | list[int]) -> np.ndarray:
        """Scores of every item for each user: float32 array (len(users), n_items)."""
        if self.matrix is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
        users = np.asarray(users, dtype=np.int64)
        if len(users) and (users.min() < 0 or users.max() >= self.n_users):
            raise IndexError(f"user index out of range 0..{self.n_users - 1}")
        out = np.asarray(self._score(users), dtype=np.float32)
        if out.shape != (len(users), self.n_items):
            raise AssertionError(f"{type(self).__name__}._score returned {out.shape}, "
                                 f"expected {(len(users), self.n_items)}")
        return out

    def recommend(self, users: np.ndarray | list[int], k: int = 10, *, exclude_seen: bool = True,
                  candidates: np.ndarray | None = None) -> list[Candidates]:
        """Top-k items for each user, optionally without already-seen items and restricted
        to a candidate set of item indices."""
        users = np.asarray(users, dtype=np.int64)
        scores = self.score(users)
        if candidates is not None:
            allowed = np.zeros(self.n_items, dtype=bool)
            allowed[np.asarray(candidates, dtype=np.int64)] = True
            scores[:, ~allowed] = -np.inf
        out = []
        for row, u in enumerate(users):
            seen = self.matrix.indices[self.matrix.indptr[u]:self.matrix.indptr[u + 1]] if exclude_seen else None
            out.append(Candidates.from_scores(scores[row], k, source=self.name, exclude=seen))
        return out

    # --- persistence: a folder with config.json and arrays -------------------------------
    def save(self, path: str | Path) -> Path:
        """Save to a folder: config.json (name, params, config hash) and state arrays (.npz)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        cfg = {"model": self.name, "params": self.params, "n_users": self.n_users, "n_items": self.n_items}
        cfg["config_hash"] = config_hash(cfg)
        (path / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
        state = self._state()
        if self.matrix is not None:
            state.update(_csr_state("matrix", self.matrix))
        np.savez(path / "state.npz", **state)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Self:
        path = Path(path)
        cfg = json.loads((path / "config.json").read_text())
        if cfg["model"] != cls.name:
            raise ValueError(f"{path}: holds a {cfg['model']!r} model, not {cls.name!r}")
        model = cls(**cfg["params"])
        model.n_users, model.n_items = cfg["n_users"], cfg["n_items"]
        with np.load(path / "state.npz", allow_pickle=False) as z:
            state = dict(z)
        if "matrix_data" in state:
            model.matrix = _csr_from_state("matrix", state, (model.n_users, model.n_items))
        model._set_state(state)
        return model

    # --- hooks ---------------------------------------------------------------------------
    @abstractmethod
    def _fit(self, matrix: sp.csr_matrix, train: Interactions, dataset: Dataset) -> None: ...

    @abstractmethod
    def _score(self, users: np.ndarray) -> np.ndarray: ...

    def _state(self) -> dict[str, np.ndarray]:
        """Arrays that `_set_state` needs to restore a fitted model."""
        return {}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        pass



def _csr_state(prefix: str, m: sp.csr_matrix) -> dict[str, np.ndarray]:
    return {f"{prefix}_data": m.data, f"{prefix}_indices": m.indices, f"{prefix}_indptr": m.indptr}


def _csr_from_state(prefix: str, state: dict[str, np.ndarray], shape: tuple[int, int]) -> sp.csr_matrix:
    return sp.csr_matrix((state[f"{prefix}_data"], state[f"{prefix}_indices"], state[f"{prefix}_indptr"]),
                         shape=shape)
