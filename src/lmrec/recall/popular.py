"""MostPopular: every user gets the items with the most distinct users in training."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from lmrec.data.dataset import Dataset, Interactions
from lmrec.recall.base import ModelConfig, Recommender


class MostPopularConfig(ModelConfig):
    pass


class MostPopular(Recommender):
    name = "popular"
    Config = MostPopularConfig

    def _fit(self, matrix: sp.csr_matrix, train: Interactions, dataset: Dataset) -> None:
        self.popularity = np.asarray(matrix.sum(axis=0)).ravel().astype(np.float32)

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity, (len(users), self.n_items)).copy()

    def _state(self) -> dict[str, np.ndarray]:
        return {"popularity": self.popularity}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.popularity = state["popularity"]
