"""The search path's learned ranker over a hybrid first stage (fake encoder, tiny catalog)."""

from __future__ import annotations

import numpy as np

from lmrec.rank.search import SearchRanker, grade_labels
from lmrec.recall.bm25 import BM25Retriever
from lmrec.recall.hybrid import HybridRetriever
from lmrec.recall.search import BiEncoderScorer, DenseRetriever
from lmrec.text.base import FakeEncoder

COLORS = ["red", "blue", "green", "black", "white", "yellow"]
THINGS = ["drill", "hose", "hammer", "ladder", "paint", "saw"]


def _catalog() -> list[str]:
    # every (color, thing) product, plus a long accessory text mentioning the thing
    texts = [f"{c} {t}" for c in COLORS for t in THINGS]
    texts += [f"{t} accessory kit with case for any {t} and more parts" for t in THINGS]
    return texts


def test_grade_labels() -> None:
    assert grade_labels(np.array([np.nan, 1.0, 1.33, 2.0, 3.0])).tolist() == [0, 1, 2, 4, 7]


def test_learns_to_put_exact_products_first() -> None:
    texts = _catalog()
    hybrid = HybridRetriever(BM25Retriever(), DenseRetriever(FakeEncoder()), depth=20)
    sr = SearchRanker(hybrid, [BiEncoderScorer(FakeEncoder(32), name="bi")], depth=20).fit(texts)
    queries, judged = [], []
    for ci, c in enumerate(COLORS):  # the exact product is relevant, accessories are not
        for ti, t in enumerate(THINGS):
            queries.append(f"{c} {t}")
            judged.append({ci * len(THINGS) + ti: 3.0, 36 + ti: 1.0})
    data = sr.rank_data(queries, judged)
    assert data.columns[:2] == ["first:score", "first:rank"] and "bi:score" in data.columns
    assert data.labels["grade"].max() == 7 and len(data.groups) == len(queries)
    sr.train(queries[::2], judged[::2], n_estimators=30, min_child_samples=2, valid_fraction=0.0)
    hits = [int(sr(q, k=1).items[0]) == next(iter(j)) for q, j in zip(queries[1::2], judged[1::2])]
    assert np.mean(hits) >= 0.9
    items = np.array([0, 36, 5])
    s = sr.score_items("red drill", items)
    assert s.shape == (3,) and s[0] == s.max()
    c = sr("blue hose", k=3)
    assert sr.name in c.stage_scores and len(c) == 3


def test_untrained_keeps_the_first_stage_order() -> None:
    texts = _catalog()
    first = BM25Retriever()
    sr = SearchRanker(first, depth=10).fit(texts)
    a, b = sr("green saw", k=5), first("green saw", k=5)
    assert a.items.tolist() == b.items.tolist()
