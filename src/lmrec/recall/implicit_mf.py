"""Matrix factorisation baselines trained by the `implicit` library (CPU): ALS (Hu, Koren &
Volinsky 2008) and BPR (Rendle et al. 2009). Scores are user_factors @ item_factors.T."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from threadpoolctl import threadpool_limits

from lmrec.data.dataset import Dataset, Interactions
from lmrec.component import ComponentConfig
from lmrec.recall.base import Recommender
from lmrec.recall.scores import UserScores, VectorCache
from lmrec.types import HistoryBatch


class ALSConfig(ComponentConfig):
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


class BPRConfig(ComponentConfig):
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
        self.__dict__.pop("_yty", None)
        self._vectors = VectorCache()

    def _score(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors[users] @ self.item_factors.T

    # --- as a channel: stored factors while the user's items are those of the fit ---------
    def runs_for(self, batch: HistoryBatch) -> np.ndarray:
        self._check_fitted()
        known = (batch.users >= 0) & (batch.users < self.n_users)
        if not self.can_fold_in:
            return known
        return known | (batch.lengths() > 0)

    can_fold_in = False

    def _fold_in(self, items: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def user_scores(self, batch: HistoryBatch) -> UserScores:
        """<user factor, item factor>: the fitted factor of a user whose distinct items are
        those of the fit; for a changed history (new events, a new user) a fold-in of the
        current items when the model can (ALS), else the fitted factor (BPR)."""
        self._check_fitted()
        vecs = np.zeros((len(batch), self.user_factors.shape[1]), np.float32)
        m = self.matrix
        n_fit_items = len(self.item_factors)
        for r, u in enumerate(batch.users.tolist()):
            items = batch.distinct(r)
            items = items[items < n_fit_items]
            known = 0 <= u < self.n_users
            same = known and np.array_equal(items, m.indices[m.indptr[u]:m.indptr[u + 1]])
            if same or (known and not self.can_fold_in):
                vecs[r] = self.user_factors[u]
            elif self.can_fold_in:
                vecs[r] = self._fold_in(items)
        if not hasattr(self, "_vectors"):
            self._vectors = VectorCache()
        stats, ann = self._vectors.get(self.item_factors, None, self.n_items, self.retrieval)
        from lmrec.recall.scores import VectorScores

        return VectorScores(vecs, self.item_factors, stats, None, ann, self.n_items)

    def prepare_retrieval(self, index: str = "exact", **params: Any) -> None:
        super().prepare_retrieval(index, **params)
        if self.matrix is not None:
            self._vectors = VectorCache()
            self._vectors.get(self.item_factors, None, self.n_items, self.retrieval)

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

    can_fold_in = True

    def _fold_in(self, items: np.ndarray) -> np.ndarray:
        """The user factor ALS gives these items with the item factors fixed: the exact
        solution of (Y^T Y + sum (c - 1) y y^T + lam I) x = sum c y, c = 1 + alpha."""
        y = self.item_factors.astype(np.float64)
        if not hasattr(self, "_yty"):
            self._yty = y.T @ y
        if not len(items):
            return np.zeros(y.shape[1], np.float32)
        c = 1.0 + self.config.alpha
        yi = y[items]
        a = self._yty + (c - 1.0) * (yi.T @ yi) + self.config.regularization * np.eye(y.shape[1])
        return np.linalg.solve(a, c * yi.sum(axis=0)).astype(np.float32)


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
