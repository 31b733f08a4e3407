"""The base class of every recall model: `fit`, `score` (the whole catalog, for offline
evaluation) and `user_scores` (a channel's top-k, pair scores and catalog moments for a batch
of users with their current histories, without scoring the whole catalog where the model
allows it; see `lmrec.recall.scores`).

Public `fit` / `score` / `recommend` do the housekeeping (shape checks, seen-item masking,
id bookkeeping); subclasses implement `_fit` and `_score`, and override `user_scores` /
`runs_for` to serve from the request's history (fold-in) and retrieve sub-linearly.

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
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from lmrec.component import Component, ComponentConfig
from lmrec.data.dataset import Dataset, Interactions
from lmrec.recall.scores import DenseScores, UserScores
from lmrec.types import Candidates, HistoryBatch, config_hash


class Recommender(Component):
    """A model that gives a score to every item of the catalog for a user.

    Subclasses set `name` and `Config` and implement `_fit(matrix, train, dataset)` and
    `_score(users) -> (len(users), n_items) float32`. The user-item matrix of the training
    interactions is kept in `self.matrix` (binary CSR) so `recommend` can drop seen items.

    As a pipeline channel a model is asked through `runs_for(batch)` (which rows it can score)
    and `user_scores(batch)`. The defaults serve the fit-time state of fit-time users through
    `score`; models whose user state is a function of the history override both, so an event
    changes their next list without refitting (`lmrec.recall.scores` has the score kinds).
    """

    name: ClassVar[str] = "base"
    Config: ClassVar[type[ComponentConfig]] = ComponentConfig
    #: the user state is computed from the request's history (fold-in), not looked up by user id
    history_based: ClassVar[bool] = False

    def __init__(self, config: ComponentConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.matrix: sp.csr_matrix | None = None
        self.n_users = 0
        self.n_items = 0
        self.retrieval: tuple[str, dict[str, Any]] = ("exact", {})

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
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64)
        if len(users) and (users.min() < 0 or users.max() >= self.n_users):
            raise IndexError(f"user index out of range 0..{self.n_users - 1}")
        out = np.asarray(self._score(users), dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != len(users) or out.shape[1] > self.n_items:
            raise AssertionError(f"{type(self).__name__}._score returned {out.shape}, "
                                 f"expected {(len(users), self.n_items)}")
        if out.shape[1] < self.n_items:  # items added after fitting: no evidence, score 0
            out = np.pad(out, ((0, 0), (0, self.n_items - out.shape[1])))
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

    # --- as a pipeline channel ----------------------------------------------------------------
    def runs_for(self, batch: HistoryBatch) -> np.ndarray:
        """Boolean mask of the batch rows this model can score: fit-time users by default;
        every row (any history, new users and sessions included) for history-based models."""
        self._check_fitted()
        if self.history_based:
            return np.ones(len(batch), bool)
        return (batch.users >= 0) & (batch.users < self.n_users)

    def user_scores(self, batch: HistoryBatch) -> UserScores:
        """The scores of the batch rows (all of them must pass `runs_for`). Default: the
        fit-time `score` of each user, padded with 0 for items added after fitting."""
        self._check_fitted()
        scores = self.score(batch.users)
        if scores.shape[1] < self.n_items:
            scores = np.pad(scores, ((0, 0), (0, self.n_items - scores.shape[1])))
        return DenseScores(scores)

    def add_items(self, items: np.ndarray, dataset: Dataset) -> None:
        """The catalog grew (or items changed): score new items 0 until the next fit.
        Text-aware models override this to embed them at once."""
        self.n_items = max(self.n_items, dataset.n_items)

    def prepare_retrieval(self, index: str = "exact", **params: Any) -> None:
        """Get ready to serve `user_scores`: vector models build an approximate index when
        `index` is "hnsw" (params: M, ef_construction, ef_search); others have nothing to do."""
        if index not in ("exact", "hnsw"):
            raise ValueError(f"index must be 'exact' or 'hnsw', got {index!r}")
        self.retrieval = (index, dict(params))

    def _check_fitted(self) -> None:
        if self.matrix is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")

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
