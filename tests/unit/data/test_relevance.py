"""RelevanceSet helpers on a hand-made set."""

from __future__ import annotations

import numpy as np
import pytest

from lmrec.data.dataset import IdMap
from lmrec.data.relevance import RelevanceSet


def small() -> RelevanceSet:
    return RelevanceSet(
        "tiny", ["red shoes", "blue hat", "green bag", "unjudged"], IdMap(["10", "20", "30"]),
        ["shoe", "hat", "bag"],
        query_idx=[0, 1, 0, 2, 1, 0], item_idx=[0, 1, 2, 2, 0, 1], grade=[3, 2, 1, 3, 1, 2],
        part=["dev", "dev", "test", "test", "dev", "dev"],
    )


def test_judged_and_summary():
    rs = small()
    items, grades = rs.judged(0)
    assert items.tolist() == [0, 2, 1] and grades.tolist() == [3, 1, 2] and grades.dtype == np.float32
    assert rs.judged(3)[0].tolist() == []
    with pytest.raises(IndexError):
        rs.judged(4)
    s = rs.summary()
    assert (s["queries"], s["items"], s["judgments"]) == (4, 3, 6)
    assert s["grade_counts"] == {"1": 2, "2": 2, "3": 2} and s["parts"] == {"dev": 4, "test": 2}
    assert s["judgments_per_query"]["max"] == 3


def test_query_split_is_disjoint_and_seeded():
    rs = small()
    train, test = rs.query_split(0.34, seed=3)
    assert len(train) + len(test) == len(rs)
    assert not set(train.queries) & set(test.queries)
    assert len(test.queries) == 1 and len(train.queries) == 2  # only the 3 judged queries are split
    assert train.items is rs.items and train.part is not None
    again = rs.query_split(0.34, seed=3)[1]
    assert again.queries == test.queries
    for sub in (train, test):
        for q in range(sub.n_queries):
            orig = rs.queries.index(sub.queries[q])
            assert sorted(sub.judged(q)[0].tolist()) == sorted(rs.judged(orig)[0].tolist())
    with pytest.raises(ValueError, match="test_fraction"):
        rs.query_split(1.0)


def test_validation():
    with pytest.raises(ValueError, match="equal lengths"):
        RelevanceSet("x", ["q"], IdMap(["1"]), ["t"], [0], [0, 0], [1])
    with pytest.raises(ValueError, match="item_text"):
        RelevanceSet("x", ["q"], IdMap(["1"]), [], [0], [0], [1])
    with pytest.raises(ValueError, match="item index outside"):
        RelevanceSet("x", ["q"], IdMap(["1"]), ["t"], [0], [1], [1])
