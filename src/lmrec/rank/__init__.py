"""Ranking after recall: features with an online `update` half and a `values` half, rankers
(LightGBM LambdaRank, a torch CTR model, pass-through) and their offline training window.
Stages are built by name from `FEATURES` and `RANKERS`."""

from lmrec.rank.base import RANKERS, Event, Query, RankData, Ranker, Registry
from lmrec.rank.features import FEATURES, Feature, FeatureSet, PairBatch
from lmrec.rank.history import UserHistory

__all__ = ["RANKERS", "FEATURES", "Event", "Query", "RankData", "Ranker", "Registry", "Feature",
           "FeatureSet", "PairBatch", "UserHistory"]
