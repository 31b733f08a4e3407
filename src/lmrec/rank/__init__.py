"""Ranking after recall: features with an online `update` half and a `values` half, rankers
(LightGBM LambdaRank, a torch CTR model, pass-through) and their offline training window.
Stages are built by name from `lmrec.component.FEATURES` and `RANKERS`."""

from lmrec.component import FEATURES, RANKERS
from lmrec.rank.base import RankData, Ranker
from lmrec.rank.features import Feature, FeatureSet, PairBatch
from lmrec.rank.history import UserHistory

__all__ = ["RANKERS", "FEATURES", "RankData", "Ranker", "Feature", "FeatureSet", "PairBatch", "UserHistory"]
