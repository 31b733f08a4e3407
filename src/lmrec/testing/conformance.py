"""Conformance tests every `Recommender` gets for free.

Subclass `RecommenderConformance` in a test module and say how to build an unfitted model;
pytest then runs the whole contract (shapes, seen-item masking, determinism, persistence,
config round trip, error handling, cold users, and "learns better than random").

Example (in a test file):

    from lmrec.recall.ease import EASE
    from lmrec.testing.conformance import RecommenderConformance

    class TestEASE(RecommenderConformance):
        model_factory = staticmethod(lambda: EASE(lam=10.0))
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from pydantic import ValidationError

from lmrec.data.dataset import Dataset, Interactions
from lmrec.data.splits import random_holdout
from lmrec.recall.base import Recommender
from lmrec.testing.toy import toy_dataset
from lmrec.types import Candidates


class ConformanceData:
    """The fixed toy problem the tests run on: a clustered data set, a seeded per-user
    hold-out, and one user (`cold_user`) with no training interactions at all."""

    def __init__(self, n_users: int = 120, n_items: int = 60, events_per_user: int = 15,
                 seed: int = 0) -> None:
        self.dataset: Dataset = toy_dataset(n_users=n_users, n_items=n_items,
                                            events_per_user=events_per_user, seed=seed)
        train, test = random_holdout(self.dataset.interactions, 0.2, seed=seed)
        self.cold_user = self.dataset.n_users - 1
        self.train: Interactions = train.select(train.user != self.cold_user)
        self.test: Interactions = test.select(test.user != self.cold_user)


class RecommenderConformance:
    """A pytest mixin with the contract of `lmrec.recall.base.Recommender`.

    Set `model_factory` to a callable returning a new, unfitted model (wrap a lambda in
    `staticmethod`). Keep its parameters small: each test class fits it about three times.
    `personalized = False` skips the test that needs per-user structure (e.g. popularity).
    """

    model_factory: ClassVar[Callable[[], Recommender]]
    personalized: ClassVar[bool] = True
    k: ClassVar[int] = 5
    min_recall_lift: ClassVar[float] = 1.5  # model recall@k / the expected recall@k of a random ranking
    min_genre_lift: ClassVar[float] = 2.0  # share of top-k in the user's main genre / random share

    # --- helpers and fixtures ------------------------------------------------------------
    @classmethod
    def make_model(cls) -> Recommender:
        """A new, unfitted model from `model_factory`."""
        factory = inspect.getattr_static(cls, "model_factory", None)
        if factory is None:
            raise TypeError(f"{cls.__name__} must set model_factory")
        if isinstance(factory, (staticmethod, classmethod)):
            factory = factory.__get__(None, cls)
        return factory()

    # class-scoped: one fit per test class keeps the suite fast
    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> ConformanceData:
        return ConformanceData()

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, data: ConformanceData) -> Recommender:
        """A model fitted on the training part; tests must not modify it."""
        return cls.make_model().fit(data.train, data.dataset)

    # --- the contract ----------------------------------------------------------------------
    def test_fit_returns_self(self, data: ConformanceData) -> None:
        model = self.make_model()
        assert not model.is_fitted
        assert model.fit(data.train, data.dataset) is model
        assert model.is_fitted

    def test_score_shape_dtype_finite(self, fitted: Recommender, data: ConformanceData) -> None:
        users = np.arange(data.dataset.n_users)
        scores = fitted.score(users)
        assert scores.shape == (data.dataset.n_users, data.dataset.n_items)
        assert scores.dtype == np.float32
        assert np.isfinite(scores).all()

    def test_score_batches_agree(self, fitted: Recommender, data: ConformanceData) -> None:
        full = fitted.score(np.arange(data.dataset.n_users))
        some = np.array([7, 2, 2, 0])
        np.testing.assert_allclose(fitted.score(some), full[some], rtol=1e-5, atol=1e-6)
        assert fitted.score(np.zeros(0, dtype=np.int64)).shape == (0, data.dataset.n_items)

    def test_cold_user_scores_finite(self, fitted: Recommender, data: ConformanceData) -> None:
        scores = fitted.score([data.cold_user])
        assert np.isfinite(scores).all()
        recs = fitted.recommend([data.cold_user], k=self.k)[0]
        assert len(recs) == self.k

    def test_recommend_top_k_unseen_sorted(self, fitted: Recommender, data: ConformanceData) -> None:
        users = np.arange(0, data.dataset.n_users, 7)
        recs = fitted.recommend(users, k=self.k)
        assert len(recs) == len(users)
        m = fitted.matrix
        for u, c in zip(users, recs, strict=True):
            seen = set(m.indices[m.indptr[u]:m.indptr[u + 1]].tolist())
            assert len(c) == self.k
            assert len(set(c.items.tolist())) == self.k
            assert not seen & set(c.items.tolist()), f"user {u} got seen items"
            assert np.all(np.diff(c.scores) <= 0), "scores must be sorted descending"
            assert c.sources == [(fitted.name,)] * self.k

    def test_recommend_within_candidates(self, fitted: Recommender, data: ConformanceData) -> None:
        allowed = np.arange(0, data.dataset.n_items, 3)
        for c in fitted.recommend([0, 1, 2], k=self.k, candidates=allowed, exclude_seen=False):
            assert set(c.items.tolist()) <= set(allowed.tolist())

    def test_deterministic(self, fitted: Recommender, data: ConformanceData) -> None:
        again = self.make_model().fit(data.train, data.dataset)
        users = np.arange(data.dataset.n_users)
        np.testing.assert_array_equal(again.score(users), fitted.score(users))

    def test_save_load_round_trip(self, fitted: Recommender, data: ConformanceData, tmp_path: Path) -> None:
        from lmrec.component import load_model, model_names

        path = fitted.save(tmp_path / "model")
        loaded = type(fitted).load(path)
        assert loaded.params == fitted.params
        users = np.arange(data.dataset.n_users)
        np.testing.assert_array_equal(loaded.score(users), fitted.score(users))
        assert [c.items.tolist() for c in loaded.recommend(users[:5], k=self.k)] == \
               [c.items.tolist() for c in fitted.recommend(users[:5], k=self.k)]
        if fitted.name in model_names():
            np.testing.assert_array_equal(load_model(path).score(users[:3]), fitted.score(users[:3]))

    def test_params_round_trip(self) -> None:
        from lmrec.component import create, model_names

        model = self.make_model()
        params = json.loads(json.dumps(model.params))  # must be plain JSON
        assert type(model)(**params).params == model.params
        if model.name not in model_names():
            pytest.skip(f"{model.name!r} is not registered in lmrec.component")
        rebuilt = create(model.name, params)
        assert type(rebuilt) is type(model)
        assert rebuilt.params == model.params

    def test_error_before_fit(self) -> None:
        model = self.make_model()
        with pytest.raises(RuntimeError, match="not fitted"):
            model.score([0])
        with pytest.raises(RuntimeError, match="not fitted"):
            model.recommend([0], k=3)

    def test_unknown_param_rejected(self) -> None:
        model = self.make_model()
        with pytest.raises(ValidationError, match="no_such_param"):
            type(model)(**{**model.params, "no_such_param": 1})

    def test_channel_scores_equal_score(self, fitted: Recommender, data: ConformanceData) -> None:
        """As a pipeline channel, given each user's training history, the model lists what
        `score` ranks first (seen items excluded), scores pooled items as `score` does and
        gives the catalog mean / std of `score`."""
        from lmrec.rank.history import UserHistory
        from lmrec.types import HistoryBatch

        users = np.arange(0, data.dataset.n_users - 1, 9)
        batch = HistoryBatch.of(users, UserHistory().fit(data.train, data.dataset.n_users))
        runs = fitted.runs_for(batch)
        assert runs.dtype == bool and runs.shape == (len(users),)
        rows = np.flatnonzero(runs)
        assert len(rows) >= len(users) // 2, "the model runs for too few users with history"
        scores = fitted.user_scores(batch.rows(rows))
        full = fitted.score(users[rows])
        for j, r in enumerate(rows):
            np.testing.assert_allclose(scores.at(j, np.arange(fitted.n_items)), full[j], rtol=1e-4, atol=1e-5)
            mean, std = scores.moments(j)
            assert mean == pytest.approx(float(full[j].mean()), rel=1e-3, abs=1e-5)
            assert std == pytest.approx(float(full[j].std()), rel=1e-3, abs=1e-5)
            seen = batch.distinct(int(r))
            items, got = scores.top(j, self.k, seen)
            want = Candidates.from_scores(full[j], self.k, exclude=seen)
            np.testing.assert_allclose(got, want.scores, rtol=1e-4, atol=1e-5)  # the same k scores
            assert not set(items.tolist()) & set(seen.tolist())

    def test_channel_folds_in_new_events(self, fitted: Recommender, data: ConformanceData) -> None:
        """A history-based model's list follows the history it is given (no refit)."""
        if not type(fitted).history_based:
            pytest.skip("the model reads fit-time user state")
        from lmrec.types import HistoryBatch

        genre = np.array([c[0] for c in data.dataset.item_table.categories])
        target = genre[0]
        items = np.flatnonzero(genre == target)[:6]
        batch = HistoryBatch([data.dataset.n_users + 5], [items], [np.arange(len(items))],
                             [np.ones(len(items), np.float32)])  # a user the model never saw
        assert fitted.runs_for(batch).all()
        top, _ = fitted.user_scores(batch).top(0, self.k, items)
        if self.personalized:
            assert np.mean(genre[top] == target) > np.mean(genre == target)

    def test_beats_random(self, fitted: Recommender, data: ConformanceData) -> None:
        recall, expected = _recall_vs_random(fitted, data, self.k)
        assert recall >= self.min_recall_lift * expected, (
            f"recall@{self.k} {recall:.3f} is not {self.min_recall_lift}x the random {expected:.3f}")

    def test_learns_genre_structure(self, fitted: Recommender, data: ConformanceData) -> None:
        if not self.personalized:
            pytest.skip("model is not personalized")
        share, expected = _genre_share_vs_random(fitted, data, self.k)
        assert share >= self.min_genre_lift * expected, (
            f"top-{self.k} genre share {share:.3f} is not {self.min_genre_lift}x the random {expected:.3f}")


def _recall_vs_random(model: Recommender, data: ConformanceData, k: int) -> tuple[float, float]:
    """Mean recall@k of held-out items, and its exact expectation under a uniformly random
    ranking of each user's unseen items (k / n_unseen)."""
    m = model.matrix
    users = np.unique(data.test.user)
    recs = model.recommend(users, k=k)
    got, expected = [], []
    for u, c in zip(users, recs, strict=True):
        seen = m.indices[m.indptr[u]:m.indptr[u + 1]]
        truth = np.setdiff1d(data.test.item[data.test.user == u], seen)
        if len(truth) == 0:
            continue
        n_unseen = data.dataset.n_items - len(seen)
        got.append(np.isin(truth, c.items).mean())
        expected.append(min(k, n_unseen) / n_unseen)
    return float(np.mean(got)), float(np.mean(expected))


def _genre_share_vs_random(model: Recommender, data: ConformanceData, k: int) -> tuple[float, float]:
    """Mean share of top-k items in the user's most frequent training genre, and the share
    of that genre among the user's unseen items (what a random ranking gets on average)."""
    genre = np.array([c[0] for c in data.dataset.item_table.categories])
    m = model.matrix
    users = np.flatnonzero(np.diff(m.indptr) > 0)
    recs = model.recommend(users, k=k)
    got, expected = [], []
    for u, c in zip(users, recs, strict=True):
        seen = m.indices[m.indptr[u]:m.indptr[u + 1]]
        names, counts = np.unique(genre[seen], return_counts=True)
        main = names[np.argmax(counts)]
        unseen = np.setdiff1d(np.arange(data.dataset.n_items), seen)
        got.append(np.mean(genre[c.items] == main))
        expected.append(np.mean(genre[unseen] == main))
    return float(np.mean(got)), float(np.mean(expected))


__all__ = ["ConformanceData", "RecommenderConformance"]
