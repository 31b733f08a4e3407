"""Rankers beyond the conformance contract, and the recall / merge stage."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from lmrec.component import RANKERS

from lmrec.rank.base import RankData
from lmrec.rank.ctr import CTRRanker
from lmrec.rank.features import MERGE_KEY, RANK_PREFIX, Z_PREFIX
from lmrec.rank.ltr import LambdaRankRanker, PassthroughRanker, feature_names
from lmrec.pipeline.recall import Channel, RecallStage
from lmrec.types import HistoryBatch
from lmrec.recall.popular import MostPopular
from lmrec.component import ComponentConfig
from lmrec.recall.base import Recommender
from lmrec.testing.stage_conformance import planted_rank_data
from lmrec.testing.toy import toy_dataset


def test_passthrough_keeps_the_merge_order() -> None:
    d = RankData(np.array([[0.5, 1.0], [0.1, np.nan], [0.9, 0.0]]), ["x", "merge:score"], np.array([3]))
    r = PassthroughRanker().fit(d)
    assert r.score(d).tolist() == [1.0, -np.inf, 0.0]
    with pytest.raises(ValueError, match="not a feature column"):
        PassthroughRanker(column="nope").fit(d)


def test_lambdarank_needs_positives_and_reports_importance() -> None:
    d = planted_rank_data(n_groups=30)
    r = LambdaRankRanker(n_estimators=20, min_child_samples=5, valid_fraction=0.0).fit(d)
    imp = r.importance()
    assert next(iter(imp)) == "signal" and set(imp) == {"signal", "noise", "gappy"}
    assert r.info["train_groups"] <= 30
    none = RankData(d.X, d.columns, d.groups, {"click": np.zeros(len(d))})
    with pytest.raises(ValueError, match="no query group"):
        LambdaRankRanker().fit(none)
    with pytest.raises(ValueError, match="label 'grade'"):
        LambdaRankRanker(label="grade").fit(d)
    with pytest.raises(ValueError, match="'click' label"):
        LambdaRankRanker().fit(RankData(d.X, d.columns, d.groups))


def test_lambdarank_graded_labels() -> None:
    d = planted_rank_data(n_groups=30)
    d.labels["grade"] = np.rint(np.clip(d.X[:, 0] + 1.5, 0, 3))
    r = LambdaRankRanker(label="grade", n_estimators=20, min_child_samples=5, valid_fraction=0.0).fit(d)
    s = r.score(d)
    assert np.corrcoef(s, d.labels["grade"])[0, 1] > 0.5


def test_ctr_multitask_heads() -> None:
    d = planted_rank_data(n_groups=40)
    r = CTRRanker(epochs=15, lr=5e-3, hidden=16, tasks={"click": 1.0, "high": 2.0}, neg_per_pos=0).fit(d)
    probs = r.predict_tasks(d)
    assert set(probs) == {"click", "high"}
    for p in probs.values():
        assert ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(r.score(d), probs["click"] + 2.0 * probs["high"], rtol=1e-5)
    assert r.losses[-1] < r.losses[0]
    with pytest.raises(ValueError, match="task 'purchase'"):
        CTRRanker(tasks={"click": 1.0, "purchase": 1.0}).fit(d)
    with pytest.raises(ValueError, match="click"):
        CTRRanker(tasks={"high": 1.0})


def test_feature_names_for_lightgbm() -> None:
    assert feature_names(["a:score", "a_score", "b[1]"]) == ["a_score", "a_score_", "b_1_"]
    assert set(RANKERS.names()) >= {"none", "lambdarank", "ctr"}


class _Fixed(Recommender):
    """Scores given by a fixed matrix (to test the merge by hand)."""

    name = "fixed"
    Config = ComponentConfig

    def __init__(self, scores: np.ndarray) -> None:
        super().__init__()
        self.fixed = np.asarray(scores, np.float32)

    def _fit(self, matrix, train, dataset) -> None:  # noqa: ANN001
        pass

    def _score(self, users: np.ndarray) -> np.ndarray:
        return self.fixed[users]


def _fitted(scores: np.ndarray) -> _Fixed:
    m = _Fixed(scores)
    m.n_users, m.n_items = scores.shape
    m.matrix = sp.csr_matrix(scores.shape, dtype=np.float32)
    return m


def _batch(users: list[int], lengths: list[int]) -> HistoryBatch:
    """Users with histories of the given lengths (the items do not matter to fixed scores)."""
    return HistoryBatch(users, [np.zeros(n, np.int64) for n in lengths], [np.zeros(n, np.int64) for n in lengths],
                        [np.ones(n, np.float32) for n in lengths])


def test_recall_stage_merges_by_hand() -> None:
    a = _fitted(np.array([[5.0, 4.0, 3.0, 0.0, 0.0, 0.0], [1, 2, 3, 4, 5, 6]]))
    b = _fitted(np.array([[0.0, 0.0, 1.0, 9.0, 8.0, 0.0], [6, 5, 4, 3, 2, 1]]))
    stage = RecallStage([Channel("a", a, quota=2), Channel("b", b, quota=2, weight=0.5)])
    excluded = [np.zeros(0, np.int64), np.array([5])]  # user 1 must not get item 5
    pools = stage(_batch([0, 1], [3, 3]), excluded)
    c = pools[0]
    assert sorted(c.items.tolist()) == [0, 1, 3, 4]
    src = dict(zip(c.items.tolist(), c.sources))
    assert src[0] == ("a",) and src[3] == ("b",)
    j = c.items.tolist().index(3)
    za = (0.0 - a.fixed[0].mean()) / a.fixed[0].std()
    zb = (9.0 - b.fixed[0].mean()) / b.fixed[0].std()
    assert c.stage_scores[Z_PREFIX + "a"][j] == pytest.approx(za, rel=1e-5)
    assert c.stage_scores[MERGE_KEY][j] == pytest.approx(za + 0.5 * zb, rel=1e-5)
    assert np.isnan(c.stage_scores[RANK_PREFIX + "a"][j]) and c.stage_scores[RANK_PREFIX + "b"][j] == 1
    assert c.stage_scores["a"][j] == 0.0  # every channel's score on every pooled item
    assert (np.diff(c.scores) <= 0).all()
    assert 5 not in pools[1].items.tolist() and sorted(pools[1].items.tolist()) == [0, 1, 3, 4]


def test_recall_stage_rrf_and_fallback() -> None:
    ds = toy_dataset()
    pop = MostPopular().fit(ds.interactions, ds)
    cf = _fitted(np.tile(np.arange(ds.n_items, dtype=np.float32), (ds.n_users, 1)))
    stage = RecallStage([Channel("cf", cf, quota=5), Channel("pop", pop, quota=8, min_history=0, fallback_only=True)],
                        chain=["pop"], min_candidates=5, method="rrf", k_rrf=1.0)
    empty = [np.zeros(0, np.int64)] * 2
    pools = stage(_batch([0, 1], [4, 0]), empty)  # user 1 is new: cf needs 1 event
    assert len(pools[0]) == 5 and all(s == ("cf",) for s in pools[0].sources)
    assert pools[0].scores[0] == pytest.approx(1 / (1 + 1))
    assert len(pools[1]) == 8 and all(s == ("pop",) for s in pools[1].sources)
    with pytest.raises(ValueError, match="unknown channel"):
        RecallStage([Channel("cf", cf)], chain=["pop"])
    with pytest.raises(ValueError, match="unique"):
        RecallStage([Channel("cf", cf), Channel("cf", cf)])


def test_lambdarank_xendcg_objective() -> None:
    d = planted_rank_data(n_groups=30)
    r = LambdaRankRanker(objective="rank_xendcg", n_estimators=20, min_child_samples=5, valid_fraction=0.0).fit(d)
    assert r.booster.params["objective"] == "rank_xendcg"
    assert next(iter(r.importance())) == "signal"
    with pytest.raises(ValueError, match="objective"):
        LambdaRankRanker(objective="binary")
