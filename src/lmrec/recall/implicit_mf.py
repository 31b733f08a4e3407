"""Matrix factorisation baselines trained by the `implicit` library (CPU): ALS (Hu, Koren &
Volinsky 2008) and BPR (Rendle et al. 2009). Scores are user_factors @ item_factors.T."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from threadpoolctl import threadpool_limits

from lmrec.data.dataset import Dataset, Interactions
from lmrec.recall.base import ModelConfig, Recommender


class ALSConfig(ModelConfig):
    """Parameters of `ALS`.

    alpha: confidence of an observed interaction is 1 + alpha (Hu et al.'s c = 1 + alpha * x
    on the binary matrix); unobserved pairs have confidence 1 and preference 0.
    num_threads: threads of implicit's solver (0 = all cores); results do not depend on it
    because every user (item) row is solved independently.
    """

    factors: int = Field(64, ge=1)
    regularization: float = Field(0.01, ge=0.0)
    alpha: float = Field(1.0, ge=0.0)
    iterations: int = Field(15, ge=1)
    seed: int = 0
    num_threads: int = Field(0, ge=0)


class BPRConfig(ModelConfig):
    """Parameters of `BPR`.

    num_threads: implicit's BPR runs lock-free parallel SGD, whose result depends on thread
    timing; the default of 1 thread keeps fits reproducible for a given seed.
    """

    factors: int = Field(64, ge=1)
    learning_rate: float = Field(0.01, gt=0.0)
    regularization: float = Field(0.01, ge=0.0)
    iterations: int = Field(100, ge=1)
    seed: int = 0
    num_threads: int = Field(1, ge=0)


class _FactorModel(Recommender):
    """Shared part of the factor models: scoring and persistence of the two factor arrays."""

    user_factors: np.ndarray
    item_factors: np.ndarray

    def _fit(self, matrix: sp.csr_matrix, train: Interactions, dataset: Dataset) -> None:
        # implicit runs its own thread pool; a multi-threaded BLAS underneath it
        # oversubscribes the cores (implicit warns about it), so BLAS gets one thread here.
        with threadpool_limits(1, "blas"):
            model = self._make_estimator()
            model.fit(self._fit_matrix(matrix), show_progress=False)
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)

    def _score(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors[users] @ self.item_factors.T

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.user_factors = state["user_factors"]
        self.item_factors = state["item_factors"]

    def _make_estimator(self) -> Any:
        raise NotImplementedError

    def _fit_matrix(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        return matrix


class ALS(_FactorModel):
    """Implicit-feedback ALS with conjugate-gradient updates (implicit's CPU solver).

    Users without training interactions get zero factors (so all-zero scores).

    Example:
        >>> from lmrec.testing.toy import toy_dataset
        >>> ds = toy_dataset()
        >>> model = ALS(factors=8, iterations=5).fit(ds.interactions, ds)
        >>> model.user_factors.shape, model.item_factors.shape
        ((60, 8), (40, 8))
        >>> model.score([0]).dtype
        dtype('float32')
    """

    name = "als"
    Config = ALSConfig
    config: ALSConfig

    def _make_estimator(self) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares

        c = self.config
        # alpha is applied in _fit_matrix, so implicit's own scaling stays at 1
        return AlternatingLeastSquares(factors=c.factors, regularization=c.regularization, alpha=1.0,
                                       iterations=c.iterations, num_threads=c.num_threads,
                                       random_state=c.seed)

    def _fit_matrix(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        # implicit reads a stored value as the confidence itself (p = 1 where it is > 0)
        conf = matrix.astype(np.float32, copy=True)
        conf.data = 1.0 + self.config.alpha * conf.data
        return conf


class BPR(_FactorModel):
    """Bayesian Personalised Ranking matrix factorisation trained by SGD (implicit's CPU code).

    The factors carry an item bias: `item_factors` has `factors + 1` columns, the last one
    the bias, and the last column of `user_factors` is 1, so the dot product includes it.

    Example:
        >>> from lmrec.testing.toy import toy_dataset
        >>> ds = toy_dataset()
        >>> model = BPR(factors=8, iterations=20).fit(ds.interactions, ds)
        >>> model.item_factors.shape
        (40, 9)
        >>> [len(c) for c in model.recommend([0, 1], k=5)]
        [5, 5]
    """

    name = "bpr"
    Config = BPRConfig
    config: BPRConfig

    def _make_estimator(self) -> Any:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        c = self.config
        return BayesianPersonalizedRanking(factors=c.factors, learning_rate=c.learning_rate,
                                           regularization=c.regularization, iterations=c.iterations,
                                           num_threads=c.num_threads, random_state=c.seed)
