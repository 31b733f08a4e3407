"""Conformance tests every stage after recall gets for free: features, rankers, re-rankers and
pipelines.

Subclass a mixin in a test module and say how to build the stage; pytest runs the contract.

    from lmrec.rank.item_features import ItemPopularity
    from lmrec.testing.stage_conformance import FeatureConformance

    class TestPopularity(FeatureConformance):
        feature_factory = staticmethod(lambda: ItemPopularity(windows=[7.0]))

The data is the toy data set of `lmrec.testing.toy` (fake encoder: no model download), split
in time: the first part builds the state, the rest is replayed through `update`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from pydantic import ValidationError

from lmrec.data.dataset import Dataset, Interactions
from lmrec.data.splits import temporal_leave_one_out
from lmrec.rank.base import RankData, Ranker
from lmrec.types import Event, Query, events_of
from lmrec.rank.features import Feature, PairBatch
from lmrec.rank.history import UserHistory
from lmrec.recall.base import Recommender
from lmrec.rerank.base import Reranker, StageContext
from lmrec.testing.toy import toy_dataset
from lmrec.types import Candidates, EventKind

__all__ = ["StageData", "FeatureConformance", "RankerConformance", "RerankerConformance",
           "PipelineConformance", "planted_rank_data"]


def _factory(cls: type, attr: str) -> Callable[[], Any]:
    f = inspect.getattr_static(cls, attr, None)
    if f is None:
        raise TypeError(f"{cls.__name__} must set {attr}")
    if isinstance(f, (staticmethod, classmethod)):
        f = f.__get__(None, cls)
    return f


class StageData:
    """The toy data set, its events before / after a time cut, and candidate lists with
    recall-style stage scores for a few users (one of them unknown to the data)."""

    def __init__(self, n_users: int = 60, n_items: int = 40, seed: int = 0) -> None:
        self.dataset: Dataset = toy_dataset(n_users=n_users, n_items=n_items, events_per_user=12, seed=seed)
        inter = self.dataset.interactions
        cut = int(np.quantile(inter.timestamp, 0.7))
        self.early: Interactions = inter.select(inter.timestamp <= cut)
        self.late: Interactions = inter.select(inter.timestamp > cut)
        rng = np.random.default_rng(seed)
        now = int(inter.timestamp.max()) + 1
        self.queries = [Query(user=u, time=now) for u in (0, 1, 7, 13)] + [Query(user=None, time=now)]
        self.candidates = []
        for _ in self.queries:
            items = rng.choice(n_items, size=15, replace=False)
            scores = np.sort(rng.normal(size=15))[::-1]
            c = Candidates(items, scores, [("a",) if j % 2 else ("a", "b") for j in range(15)],
                           {"a": scores.astype(np.float32), "rank:a": np.arange(1, 16, dtype=np.float32),
                            "merge": scores.astype(np.float32)})
            self.candidates.append(c)


class FeatureConformance:
    """The contract of `lmrec.rank.features.Feature` (set `feature_factory`)."""

    feature_factory: ClassVar[Callable[[], Feature]]

    @classmethod
    def make(cls) -> Feature:
        return _factory(cls, "feature_factory")()

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> StageData:
        return StageData()

    def test_fit_returns_self_and_shapes(self, data: StageData) -> None:
        f = self.make()
        assert f.fit(data.dataset.interactions, data.dataset) is f
        batch = PairBatch.build(data.queries, data.candidates)
        v = f.compute(batch)
        assert v.dtype == np.float32
        assert v.shape == (len(batch), len(f.columns))
        assert len(set(f.columns)) == len(f.columns)

    def test_values_equal_batch(self, data: StageData) -> None:
        """One request computes exactly the rows the batch computes for it."""
        f = self.make().fit(data.dataset.interactions, data.dataset)
        batch = f.compute(PairBatch.build(data.queries, data.candidates))
        off = np.r_[0, np.cumsum([len(c) for c in data.candidates])]
        for j, (q, c) in enumerate(zip(data.queries, data.candidates)):
            np.testing.assert_allclose(f.values(q, c), batch[off[j]:off[j + 1]], rtol=1e-5, atol=1e-6)

    def test_replay_equals_fit(self, data: StageData) -> None:
        """Online `update` of the later events gives the state a fit on all events gives."""
        full = self.make().fit(data.dataset.interactions, data.dataset)
        online = self.make().fit(data.early, data.dataset)
        for e in events_of(data.late):
            online.update([e])
        batch = PairBatch.build(data.queries, data.candidates)
        np.testing.assert_allclose(online.compute(batch), full.compute(batch), rtol=1e-4, atol=1e-5)

    def test_new_user_event(self, data: StageData) -> None:
        f = self.make().fit(data.early, data.dataset)
        new = data.dataset.n_users + 3
        f.update([Event(new, 1, int(data.dataset.interactions.timestamp.max()) + 5, EventKind.CLICK, 1.0)])
        v = f.values(Query(user=new), data.candidates[0])
        assert v.shape == (len(data.candidates[0]), len(f.columns))

    def test_deterministic(self, data: StageData) -> None:
        batch = PairBatch.build(data.queries, data.candidates)
        a = self.make().fit(data.dataset.interactions, data.dataset).compute(batch)
        b = self.make().fit(data.dataset.interactions, data.dataset).compute(batch)
        np.testing.assert_array_equal(a, b)

    def test_error_before_fit(self, data: StageData) -> None:
        f = self.make()
        if f.name == "channels":
            pytest.skip("stateless: reads the candidates only")
        with pytest.raises(RuntimeError, match="not fitted"):
            f.compute(PairBatch.build(data.queries, data.candidates))

    def test_unknown_param_rejected(self) -> None:
        f = self.make()
        with pytest.raises(ValidationError, match="no_such_param"):
            type(f)(**{**f.config.model_dump(), "no_such_param": 1})


def planted_rank_data(n_groups: int = 60, size: int = 20, seed: int = 0) -> RankData:
    """Query groups whose positives follow the first dimension of their item vectors, which
    column "signal" also holds (with noise columns beside it): a ranker that learns from
    either ranks the positives first. A new seed gives new items from the same law."""
    rng = np.random.default_rng(seed)
    n = n_groups * size
    table = rng.normal(size=(200, 8)).astype(np.float32)
    items = rng.integers(0, 200, n)
    signal = table[items, 0].astype(np.float64)
    click = (signal + 0.3 * rng.normal(size=n) > 1.0).astype(np.float32)
    gappy = np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n))
    X = np.stack([signal + 0.1 * rng.normal(size=n), rng.normal(size=n), gappy], axis=1)
    high = click * (rng.random(n) < 0.5)
    users = rng.normal(size=(n_groups, 8)).astype(np.float32)
    return RankData(X, ["signal", "noise", "gappy"], np.full(n_groups, size), {"click": click, "high": high},
                    {"item": (table, items), "user": (users, np.repeat(np.arange(n_groups), size))})


class RankerConformance:
    """The contract of `lmrec.rank.base.Ranker` (set `ranker_factory`)."""

    ranker_factory: ClassVar[Callable[[], Ranker]]
    min_auc: ClassVar[float] = 0.75

    @classmethod
    def make(cls) -> Ranker:
        return _factory(cls, "ranker_factory")()

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> RankData:
        return planted_rank_data()

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, data: RankData) -> Ranker:
        return cls.make().fit(data)

    def test_score_shape(self, fitted: Ranker, data: RankData) -> None:
        s = fitted.score(data)
        assert s.shape == (len(data),) and s.dtype == np.float32
        assert np.isfinite(s).all()

    def test_learns_planted_signal(self, fitted: Ranker, data: RankData) -> None:
        from lmrec.rank.training import auc

        test = planted_rank_data(seed=1)
        value = auc(fitted.score(test), test.labels["click"])
        assert value >= self.min_auc, f"AUC {value:.3f} < {self.min_auc}"

    def test_save_load_round_trip(self, fitted: Ranker, data: RankData, tmp_path: Path) -> None:
        loaded = Ranker.load(fitted.save(tmp_path / "ranker"))
        assert loaded.params == fitted.params
        np.testing.assert_allclose(loaded.score(data), fitted.score(data), rtol=1e-5, atol=1e-6)

    def test_deterministic(self, fitted: Ranker, data: RankData) -> None:
        np.testing.assert_allclose(self.make().fit(data).score(data), fitted.score(data), rtol=1e-5, atol=1e-6)

    def test_error_before_fit(self, data: RankData) -> None:
        with pytest.raises(RuntimeError, match="not fitted"):
            self.make().score(data)

    def test_columns_must_match(self, fitted: Ranker, data: RankData) -> None:
        other = RankData(data.X[:, :2], data.columns[:2], data.groups, data.labels, data.vectors)
        with pytest.raises(ValueError, match="columns"):
            fitted.score(other)

    def test_unknown_param_rejected(self) -> None:
        r = self.make()
        with pytest.raises(ValidationError, match="no_such_param"):
            type(r)(**{**r.params, "no_such_param": 1})


class RerankerConformance:
    """The contract of `lmrec.rerank.base.Reranker` (set `reranker_factory`). Set
    `keeps_all = False` for filters (they may drop items)."""

    reranker_factory: ClassVar[Callable[[], Reranker]]
    keeps_all: ClassVar[bool] = True

    @classmethod
    def make(cls, ctx: StageContext) -> Reranker:
        r = _factory(cls, "reranker_factory")()
        r.bind(ctx)
        return r

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> StageData:
        return StageData()

    @pytest.fixture(scope="class")
    @classmethod
    def ctx(cls, data: StageData) -> StageContext:
        return StageContext(data.dataset, UserHistory().fit(data.dataset.interactions, data.dataset.n_users),
                            encoder="fake")

    def test_returns_at_most_n_of_the_input(self, ctx: StageContext, data: StageData) -> None:
        r = self.make(ctx)
        for q, c in zip(data.queries, data.candidates):
            for n in (0, 5, 15, 40):
                out = r(q, c, n)
                assert len(out) <= n
                assert len(set(out.items.tolist())) == len(out), "duplicates in the output"
                assert set(out.items.tolist()) <= set(c.items.tolist())
                if self.keeps_all:
                    assert len(out) == min(n, len(c))

    def test_columns_travel_with_items(self, ctx: StageContext, data: StageData) -> None:
        r = self.make(ctx)
        c = data.candidates[0]
        out = r(data.queries[0], c, 10)
        pos = {int(i): j for j, i in enumerate(c.items)}
        for j, item in enumerate(out.items.tolist()):
            assert out.sources[j] == c.sources[pos[item]]
            assert out.scores[j] == c.scores[pos[item]]
            assert out.stage_scores["a"][j] == c.stage_scores["a"][pos[item]]

    def test_empty_input(self, ctx: StageContext, data: StageData) -> None:
        assert len(self.make(ctx)(data.queries[0], Candidates.empty(), 10)) == 0

    def test_deterministic_for_a_seed(self, ctx: StageContext, data: StageData) -> None:
        a = [self.make(ctx)(q, c, 10).items.tolist() for q, c in zip(data.queries, data.candidates)]
        b = [self.make(ctx)(q, c, 10).items.tolist() for q, c in zip(data.queries, data.candidates)]
        assert a == b

    def test_error_before_bind(self, data: StageData) -> None:
        r = _factory(type(self), "reranker_factory")()
        with pytest.raises(RuntimeError, match="bind"):
            r(data.queries[0], data.candidates[0], 5)

    def test_params_round_trip_and_unknown_rejected(self) -> None:
        from lmrec.component import RERANKERS

        r = _factory(type(self), "reranker_factory")()
        assert RERANKERS.create(r.name, r.params).params == r.params
        with pytest.raises(ValidationError, match="no_such_param"):
            type(r)(**{**r.params, "no_such_param": 1})


class PipelineConformance:
    """A pipeline as a `Recommender` for the full-ranking evaluator (set `pipeline_factory`):
    scores are the final list in order and -inf elsewhere, seen items never appear, results
    are deterministic and survive save / load, and it beats a random ranking."""

    pipeline_factory: ClassVar[Callable[[], Recommender]]
    k: ClassVar[int] = 10

    @classmethod
    def make(cls) -> Recommender:
        return _factory(cls, "pipeline_factory")()

    @pytest.fixture(scope="class")
    @classmethod
    def split(cls) -> Any:
        return temporal_leave_one_out(toy_dataset(n_users=150, n_items=60, events_per_user=15, seed=3))

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, split: Any) -> Recommender:
        return cls.make().fit(split.train_valid, split.dataset)

    def test_scores_are_the_list(self, fitted: Recommender, split: Any) -> None:
        users = np.arange(0, split.dataset.n_users, 9)
        scores = fitted.score(users)
        assert scores.shape == (len(users), split.dataset.n_items) and scores.dtype == np.float32
        lists = fitted.recommend(users, k=50)
        for row, c in zip(scores, lists):
            finite = np.flatnonzero(np.isfinite(row))
            assert set(finite.tolist()) == set(c.items.tolist())
            assert (np.diff(row[c.items]) < 0).all(), "list order must be descending scores"

    def test_no_seen_items(self, fitted: Recommender, split: Any) -> None:
        seen = split.train_valid.to_csr(split.dataset.n_users, split.dataset.n_items)
        for u in range(0, split.dataset.n_users, 5):
            c = fitted.recommend(int(u), k=self.k)
            assert not set(c.items.tolist()) & set(seen[u].indices.tolist())
            assert len(c) == self.k

    def test_deterministic(self, fitted: Recommender, split: Any) -> None:
        again = self.make().fit(split.train_valid, split.dataset)
        users = np.arange(0, split.dataset.n_users, 4)
        np.testing.assert_array_equal(again.score(users), fitted.score(users))

    def test_save_load(self, fitted: Recommender, split: Any, tmp_path: Path) -> None:
        loaded = type(fitted).load(fitted.save(tmp_path / "pipe"))
        users = np.arange(0, split.dataset.n_users, 4)
        np.testing.assert_array_equal(loaded.score(users), fitted.score(users))

    def test_beats_random(self, fitted: Recommender, split: Any) -> None:
        from lmrec.eval.evaluator import evaluate

        res = evaluate(fitted, split, stage="test", ks=(self.k,))
        n_unseen = split.dataset.n_items - 14  # about what each user has left to rank
        assert res.metrics[f"HR@{self.k}"] >= 1.5 * self.k / n_unseen

    def test_explanations(self, fitted: Recommender, split: Any) -> None:
        c = fitted.recommend(0, k=5, explain=True)
        assert c.explanations is not None and len(c.explanations) == len(c)
        for e, item, src in zip(c.explanations, c.items, c.sources):
            assert e["item_id"] == split.dataset.items.ids[int(item)]
            assert e["channels"] == list(src) and e["channels"]
            assert "because" in e and "shared_categories" in e
