"""The Recommender contract applied to every built-in model, with small parameters."""

from __future__ import annotations

from lmrec.recall.ease import EASE
from lmrec.recall.implicit_mf import ALS, BPR
from lmrec.recall.itemknn import ItemKNN
from lmrec.recall.kg import EASEKG, KGChannel, KGEmbeddingChannel
from lmrec.recall.popular import MostPopular
from lmrec.recall.transitions import ItemTransitionsChannel
from lmrec.testing.conformance import RecommenderConformance


class TestMostPopular(RecommenderConformance):
    model_factory = MostPopular
    personalized = False  # the same list for everyone: beats random only through popularity


class TestItemKNN(RecommenderConformance):
    model_factory = staticmethod(lambda: ItemKNN(k=20, shrink=1.0))


class TestItemKNNNormalized(RecommenderConformance):
    model_factory = staticmethod(lambda: ItemKNN(k=10, normalize=True))


class TestEASE(RecommenderConformance):
    model_factory = staticmethod(lambda: EASE(lam=10.0))


class TestALS(RecommenderConformance):
    model_factory = staticmethod(lambda: ALS(factors=8, iterations=10, seed=3))


class TestBPR(RecommenderConformance):
    model_factory = staticmethod(lambda: BPR(factors=8, iterations=50, learning_rate=0.05, seed=3))


class TestTransitions(RecommenderConformance):
    model_factory = staticmethod(lambda: ItemTransitionsChannel(window=3, recent=5))
    # the toy users' events are in random order within their genres: a model of what comes next
    # learns the genres from few, short transitions only (ItemKNN sees every co-occurrence)
    min_genre_lift = 1.5


class TestTransitionsSymmetric(RecommenderConformance):
    model_factory = staticmethod(lambda: ItemTransitionsChannel(window=5, recent=10, symmetric=True,
                                                                normalize=False))
    min_genre_lift = 1.5


class TestPopularDecayed(RecommenderConformance):
    model_factory = staticmethod(lambda: MostPopular(half_life_days=7.0))
    personalized = False


class TestKG(RecommenderConformance):
    # the toy graph is one genre entity per item (a sixth of the catalog each)
    model_factory = staticmethod(lambda: KGChannel(max_df=0.5))


class TestKGUniform(RecommenderConformance):
    model_factory = staticmethod(lambda: KGChannel(max_df=0.5, relation_weights="uniform", recent=5))


class TestKGEmbedding(RecommenderConformance):
    model_factory = staticmethod(lambda: KGEmbeddingChannel(max_df=0.5, method="distmult", dim=8, epochs=200,
                                                            lr=0.05, negatives=4))


class TestEASEKG(RecommenderConformance):
    model_factory = staticmethod(lambda: EASEKG(lam=10.0, alpha=2.0, max_df=0.5))
