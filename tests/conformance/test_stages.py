"""The stage contracts (`lmrec.testing.stage_conformance`) for every registered feature,
ranker and re-ranker, and for the pipeline as a Recommender; fast toy data, fake encoder."""

from __future__ import annotations

import pytest

from lmrec.pipeline import RecPipeline
from lmrec.component import RANKERS
from lmrec.rank.content_features import CategoryAffinity, LMSimilarity
from lmrec.rank.ctr import CTRRanker
from lmrec.component import FEATURES
from lmrec.rank.features import ChannelFeatures, UserActivity
from lmrec.rank.item_features import ItemPopularity, ItemRecency, NumericAttributes
from lmrec.rank.ltr import LambdaRankRanker
from lmrec.rank.sequence_features import ItemTransitions
from lmrec.rank.user_features import DemographicLift
from lmrec.component import RERANKERS
from lmrec.rerank.diversity import MMR, CategoryRunLimit, SimilarityThreshold
from lmrec.rerank.exploration import UCB, GumbelTopK, ThompsonSampling
from lmrec.rerank.filters import AvailabilityFilter, BlockFilter, SeenFilter
from lmrec.rerank.longtail import LongTailReranker
from lmrec.rank.kg_features import KGFeatures
from lmrec.testing.stage_conformance import (FeatureConformance, PipelineConformance, RankerConformance,
                                             RerankerConformance, StageData)

# --- features ---------------------------------------------------------------------------


class TestChannelFeatures(FeatureConformance):
    feature_factory = staticmethod(lambda: ChannelFeatures(channels=["a", "b"]))


class TestUserActivity(FeatureConformance):
    feature_factory = staticmethod(UserActivity)


class TestPopularity(FeatureConformance):
    feature_factory = staticmethod(lambda: ItemPopularity(windows=[0.01, 7.0]))


class TestRecency(FeatureConformance):
    feature_factory = staticmethod(ItemRecency)


class TestNumeric(FeatureConformance):
    feature_factory = staticmethod(NumericAttributes)


class TestLMSimilarity(FeatureConformance):
    feature_factory = staticmethod(lambda: LMSimilarity(encoder="fake", half_life=2.0, recent=3))


class TestCategoryAffinity(FeatureConformance):
    feature_factory = staticmethod(CategoryAffinity)


class TestItemTransitions(FeatureConformance):
    feature_factory = staticmethod(lambda: ItemTransitions(window=2, recent=3))


class TestKGFeatures(FeatureConformance):
    feature_factory = staticmethod(lambda: KGFeatures(max_df=0.5, recent=4))


class TestKGFeaturesEntityText(FeatureConformance):
    feature_factory = staticmethod(lambda: KGFeatures(max_df=0.5, entity_text=True, encoder="fake"))


class TestKGFeaturesEmbedding(FeatureConformance):
    feature_factory = staticmethod(lambda: KGFeatures(max_df=0.5, embedding="distmult", embedding_dim=8,
                                                      embedding_epochs=20))


class TestDemographicLift(FeatureConformance):
    feature_factory = staticmethod(DemographicLift)

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> StageData:
        d = StageData()
        n = d.dataset.n_users
        d.dataset.user_attributes = {"gender": ["F" if u % 3 else "M" for u in range(n)],
                                     "age": [None if u == 1 else 18 + 7 * (u % 4) for u in range(n)],
                                     "zip": [f"{u:05d}" for u in range(n)]}
        return d


# --- rankers ------------------------------------------------------------------------------


class TestLambdaRank(RankerConformance):
    ranker_factory = staticmethod(lambda: LambdaRankRanker(n_estimators=40, min_child_samples=10,
                                                           valid_fraction=0.0))


class TestLambdaRankEarlyStopping(RankerConformance):
    ranker_factory = staticmethod(lambda: LambdaRankRanker(n_estimators=60, min_child_samples=10,
                                                           valid_fraction=0.2, early_stopping=10))


class TestCTR(RankerConformance):
    ranker_factory = staticmethod(lambda: CTRRanker(epochs=20, lr=5e-3, hidden=32, neg_per_pos=0, batch_size=256))


class TestCTRMultiTask(RankerConformance):
    ranker_factory = staticmethod(lambda: CTRRanker(epochs=20, lr=5e-3, hidden=32, tasks={"click": 1.0, "high": 0.5},
                                                    use_features=False, batch_size=256))


# --- re-rankers -----------------------------------------------------------------------------


class TestSeen(RerankerConformance):
    reranker_factory = staticmethod(SeenFilter)
    keeps_all = False


class TestAvailable(RerankerConformance):
    reranker_factory = staticmethod(AvailabilityFilter)
    keeps_all = False


class TestBlocked(RerankerConformance):
    reranker_factory = staticmethod(lambda: BlockFilter(items=["3", "7"]))
    keeps_all = False


class TestMMR(RerankerConformance):
    reranker_factory = staticmethod(lambda: MMR(**{"lambda": 0.5}))


class TestCategoryRun(RerankerConformance):
    reranker_factory = staticmethod(lambda: CategoryRunLimit(max_run=1))


class TestSimilarityThreshold(RerankerConformance):
    reranker_factory = staticmethod(lambda: SimilarityThreshold(max_sim=0.5))


class TestSimilarityThresholdDrop(RerankerConformance):
    reranker_factory = staticmethod(lambda: SimilarityThreshold(max_sim=0.5, drop=True))
    keeps_all = False


class TestThompson(RerankerConformance):
    reranker_factory = staticmethod(lambda: ThompsonSampling(weight=0.5, seed=3))


class TestThompsonSlots(RerankerConformance):
    reranker_factory = staticmethod(lambda: ThompsonSampling(slots=[2, 5], seed=3))


class TestUCB(RerankerConformance):
    reranker_factory = staticmethod(lambda: UCB(weight=0.5, c=0.5))


class TestGumbel(RerankerConformance):
    reranker_factory = staticmethod(lambda: GumbelTopK(temperature=0.7, seed=5))


class TestLongTailXQuAD(RerankerConformance):
    reranker_factory = staticmethod(lambda: LongTailReranker(strength=0.5, target="user"))


class TestLongTailPenalty(RerankerConformance):
    reranker_factory = staticmethod(lambda: LongTailReranker(strength=0.5, method="penalty"))


# --- the pipeline as a Recommender -----------------------------------------------------------

_CHANNELS = [{"name": "ease", "model": "ease", "params": {"lam": 10.0}, "quota": 30},
             {"name": "lm", "model": "lm-recency", "params": {"encoder": "fake", "half_life": 3.0}, "quota": 30},
             {"name": "popular", "model": "popular", "quota": 15, "min_history": 0, "weight": 0.0}]


class TestPipelinePassthrough(PipelineConformance):
    pipeline_factory = staticmethod(lambda: RecPipeline(spec={
        "encoder": "fake", "channels": _CHANNELS, "fallback": {"chain": ["popular"]},
        "rank": {"ranker": "none"},
        "rerank": {"stages": [{"name": "seen"}, {"name": "mmr", "params": {"lambda": 0.8}}]}}))


class TestPipelineLambdaRank(PipelineConformance):
    pipeline_factory = staticmethod(lambda: RecPipeline(spec={
        "encoder": "fake", "channels": _CHANNELS,
        "rank": {"ranker": "lambdarank", "window": {"size": 2, "min_history": 3},
                 "params": {"lambdarank": {"n_estimators": 30, "min_child_samples": 10}}},
        "rerank": {"stages": [{"name": "seen"}, {"name": "category-run", "params": {"max_run": 2}}]}}))


def test_every_registered_stage_has_a_conformance_class() -> None:
    covered = {c.feature_factory().name for c in globals().values()
               if isinstance(c, type) and issubclass(c, FeatureConformance) and c is not FeatureConformance}
    assert covered == set(FEATURES.names())
    rankers = {c.ranker_factory().name for c in globals().values()
               if isinstance(c, type) and issubclass(c, RankerConformance) and c is not RankerConformance}
    assert rankers == set(RANKERS.names()) - {"none"}  # "none" only reads a column: covered by the pipeline
    rerankers = {c.reranker_factory().name for c in globals().values()
                 if isinstance(c, type) and issubclass(c, RerankerConformance) and c is not RerankerConformance}
    assert rerankers == set(RERANKERS.names())


@pytest.mark.parametrize("name", ["none"])
def test_passthrough_is_registered(name: str) -> None:
    assert RANKERS.create(name).name == name

