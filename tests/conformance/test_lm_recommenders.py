"""The Recommender contract for the LM user-history channels and the CF + LM blend, with the
fast FakeEncoder (no model download, no disk cache)."""

from __future__ import annotations

from lmrec.recall.blend import BlendRecommender
from lmrec.recall.lm_user import LMMeanRecommender, LMMultiRecommender, LMRecencyRecommender
from lmrec.testing.conformance import RecommenderConformance


class TestLMMean(RecommenderConformance):
    model_factory = staticmethod(lambda: LMMeanRecommender(encoder="fake"))


class TestLMRecency(RecommenderConformance):
    model_factory = staticmethod(lambda: LMRecencyRecommender(encoder="fake", half_life=5.0, rating_weight=True))


class TestLMMulti(RecommenderConformance):
    model_factory = staticmethod(lambda: LMMultiRecommender(encoder="fake", n_interests=2, seed=1))


class TestLMMultiSoft(RecommenderConformance):
    model_factory = staticmethod(lambda: LMMultiRecommender(encoder="fake", n_interests=3, temperature=0.05))


class TestBlend(RecommenderConformance):
    model_factory = staticmethod(lambda: BlendRecommender(cf="ease", cf_params={"lam": 10.0}, lm="lm-recency",
                                                          lm_params={"encoder": "fake", "half_life": 5.0},
                                                          weight=0.5))


class TestBlendMinMax(RecommenderConformance):
    model_factory = staticmethod(lambda: BlendRecommender(cf="itemknn", cf_params={"k": 20}, lm="lm-mean",
                                                          lm_params={"encoder": "fake"}, weight=1.0,
                                                          norm="minmax"))
