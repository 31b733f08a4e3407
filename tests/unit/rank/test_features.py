"""Ranker features against values worked out by hand on tiny data sets."""

from __future__ import annotations

import numpy as np
import pytest

from lmrec.data.dataset import Dataset, IdMap, Interactions, ItemTable
from lmrec.types import Event, Query
from lmrec.rank.content_features import CategoryAffinity, KeyCounts, LMSimilarity, categorical_attributes
from lmrec.component import FEATURES
from lmrec.rank.features import ChannelFeatures, FeatureSet, PairBatch, UserActivity
from lmrec.rank.item_features import ItemPopularity, ItemRecency, ItemTimeline, NumericAttributes
from lmrec.rank.sequence_features import ItemTransitions
from lmrec.text.base import FakeEncoder, normalize
from lmrec.types import Candidates, EventKind

DAY = 86_400


def _tiny() -> Dataset:
    """3 users, 5 items; user 0: items 0, 1, 2 on days 0, 1, 10; user 1: items 0, 3 on days
    2, 3 (ratings 5, 1); user 2: item 4 on day 20."""
    table = ItemTable(title=["space rocket", "alien space", "love story", "love wedding", "kitchen knife"],
                      categories=[["scifi"], ["scifi", "action"], ["romance"], ["romance"], []],
                      attributes={"brand": ["acme", "acme", "zeta", "zeta", ""],
                                  "year": [1990, 2000, None, 1980, 1970], "item_id": [1, 2, 3, 4, 5]},
                      created_at=np.array([0, -1, -1, -1, -1]))
    inter = Interactions(np.array([0, 0, 0, 1, 1, 2]), np.array([0, 1, 2, 0, 3, 4]),
                         np.array([0, 1, 10, 2, 3, 20]) * DAY, value=np.array([4, 4, 2, 5, 1, 3]))
    return Dataset("tiny", IdMap(["a", "b", "c"], sort=False), IdMap(list("vwxyz"), sort=False), inter,
                   item_table=table)


def _vals(f, user: int | None, items: list[int], time: int | None = None) -> np.ndarray:
    return f.values(Query(user=user, time=time), Candidates(np.array(items), np.zeros(len(items))))


def test_timeline_counts_as_of_time() -> None:
    tl = ItemTimeline()
    tl.extend(np.array([2, 2, 2, 5]), np.array([10, 30, 20, 5]))
    tl.add(2, 25)
    assert tl.count_le(np.array([2, 2, 2, 5, 7]), np.array([9, 20, 100, 5, 100])).tolist() == [0, 2, 4, 1, 0]
    np.testing.assert_array_equal(tl.last_le(np.array([2, 2, 7]), np.array([26, 9, 50])), [25, np.nan, np.nan])
    np.testing.assert_array_equal(tl.first(np.array([2, 5, 7])), [10, 5, np.nan])
    assert tl.total_in(np.array([5, 0]), np.array([25, 100])).tolist() == [3, 5]
    assert tl.latest() == 30
    with pytest.raises(ValueError, match="timestamp"):
        tl.add(1, 2 ** 40)


def test_popularity_counts_only_the_past() -> None:
    ds = _tiny()
    f = ItemPopularity(windows=[2.0]).fit(ds.interactions, ds)
    assert f.columns == ["pop:log_count", "pop:log_count_2d", "pop:log_share_2d"]
    v = _vals(f, 0, [0, 3], time=2 * DAY)  # item 0: events on days 0 and 2; item 3: day 3 (future)
    np.testing.assert_allclose(v[:, 0], np.log1p([2, 0]), rtol=1e-6)
    # window (day 0, day 2]: item 0 once (day 2); all items: item 1 (day 1), item 0 (day 2)
    np.testing.assert_allclose(v[:, 1], np.log1p([1, 0]), rtol=1e-6)
    np.testing.assert_allclose(v[:, 2], np.log1p([1, 0]) - np.log1p(2), rtol=1e-6)


def test_popularity_without_a_clock_counts_everything() -> None:
    ds = _tiny()
    ds.has_timestamps = False
    f = ItemPopularity(windows=[2.0]).fit(ds.interactions, ds)
    assert f.columns == ["pop:log_count"]
    np.testing.assert_allclose(_vals(f, 0, [0, 3], time=0)[:, 0], np.log1p([2, 1]), rtol=1e-6)


def test_recency_days() -> None:
    ds = _tiny()
    f = ItemRecency().fit(ds.interactions, ds)
    v = _vals(f, 0, [0, 3, 4], time=5 * DAY)
    np.testing.assert_allclose(v[0], [5, 3, 5])  # first event day 0, last day 2, released day 0
    np.testing.assert_allclose(v[1], [2, 2, np.nan])
    assert np.isnan(v[2]).all()  # item 4's only event is in the future
    ds.has_timestamps = False
    assert ItemRecency().fit(ds.interactions, ds).columns == []


def test_user_activity() -> None:
    ds = _tiny()
    f = UserActivity().fit(ds.interactions, ds)
    v = _vals(f, 1, [0], time=10 * DAY)[0]
    np.testing.assert_allclose(v, [np.log1p(2), 8, 3])  # 2 events, first on day 2, mean rating 3
    assert np.isnan(_vals(f, None, [0])[0, 1:]).all()


def test_numeric_attributes_skip_ids_and_compare_with_the_user_mean() -> None:
    ds = _tiny()
    f = NumericAttributes().fit(ds.interactions, ds)
    assert f.columns == ["num:year", "num:year:diff"]  # item_id is an identifier
    v = _vals(f, 0, [3, 2])  # user 0's years: 1990, 2000 (item 2 has none) -> mean 1995
    np.testing.assert_allclose(v[0], [1980, -15])
    assert np.isnan(v[1]).all()
    with pytest.raises(ValueError, match="not an item attribute"):
        NumericAttributes(attributes=["price"]).fit(ds.interactions, ds)


def test_category_affinity_by_hand() -> None:
    ds = _tiny()
    assert categorical_attributes(ds) == ["brand"]
    f = CategoryAffinity().fit(ds.interactions, ds)
    assert f.columns == ["cat:max_share", "cat:mean_share", "attr:brand:share"]
    v = _vals(f, 0, [1, 3, 4])  # user 0: scifi x2, action x1, romance x1 of 3 events; brands acme x2, zeta x1
    np.testing.assert_allclose(v[0], [2 / 3, (2 / 3 + 1 / 3) / 2, 2 / 3], rtol=1e-6)
    np.testing.assert_allclose(v[1], [1 / 3, 1 / 3, 1 / 3], rtol=1e-6)
    assert np.isnan(v[2]).all()  # item 4 has no category and no brand
    # user 2's only item has neither a category nor a brand: shares of item 0's are 0, not unknown
    assert _vals(f, 2, [0])[0].tolist() == [0, 0, 0]
    assert np.isnan(_vals(f, None, [0])).all()


def test_lm_similarity_by_hand() -> None:
    ds = _tiny()
    f = LMSimilarity(encoder="fake", half_life=1.0, recent=2).fit(ds.interactions, ds)
    from lmrec.recall.item2item import dataset_item_texts

    vec = normalize(FakeEncoder().encode_items(dataset_item_texts(ds)))
    profile = normalize(0.25 * vec[0] + 0.5 * vec[1] + 1.0 * vec[2])  # half-life one event
    v = _vals(f, 0, [3, 4])
    np.testing.assert_allclose(v[:, 0], vec[[3, 4]] @ profile, atol=1e-5)
    np.testing.assert_allclose(v[:, 1], np.max(vec[[3, 4]] @ vec[[1, 2]].T, axis=1), atol=1e-5)
    np.testing.assert_allclose(v[:, 2], vec[[3, 4]] @ vec[2], atol=1e-5)
    assert np.isnan(_vals(f, None, [3])).all()
    emb = f.embeddings(PairBatch.build([Query(user=0)], [Candidates(np.array([3]), np.zeros(1))]))
    np.testing.assert_allclose(emb["user"][0][emb["user"][1]][0], profile, atol=1e-5)
    q = LMSimilarity(encoder="fake", query=True).fit(ds.interactions, ds)
    got = q.values(Query(user=None, text="love wedding"), Candidates(np.array([3, 4]), np.zeros(2)))[:, 3]
    qv = normalize(FakeEncoder().encode_queries(["love wedding"]))[0]
    np.testing.assert_allclose(got, vec[[3, 4]] @ qv, atol=1e-5)


def test_transitions_by_hand() -> None:
    ds = _tiny()
    f = ItemTransitions(window=1, recent=2, decay=0.5).fit(ds.interactions, ds)
    # transitions with window 1: 0->1, 1->2 (user 0), 0->3 (user 1); out(0) = 2, out(1) = 1
    v = _vals(f, 1, [1, 3, 2])  # user 1's latest items: 0 then 3 (3 has no outgoing transitions)
    np.testing.assert_allclose(v[:, 0], [0, 0, 0])  # from item 3
    np.testing.assert_allclose(v[:, 1], [0.5, 0.5, 0])
    np.testing.assert_allclose(v[:, 2], [0.25, 0.25, 0])  # item 0 is one step older: weight 0.5
    f.update([Event(1, 2, 30 * DAY, EventKind.CLICK)])  # adds 3 -> 2
    np.testing.assert_allclose(_vals(f, 1, [2])[0, 0], 0.0)  # now the latest item is 2 itself
    assert np.isnan(_vals(f, None, [2])).all()


def test_channel_features_read_stage_scores() -> None:
    f = ChannelFeatures(channels=["a", "b"])
    c = Candidates(np.array([4, 5]), np.array([1.0, 0.5]), [("a",), ("a", "b")],
                   {"a": np.array([3.0, 2.0]), "z:a": np.array([1.0, 0.0]), "rank:a": np.array([1.0, 2.0]),
                    "b": np.array([0.1, 0.9]), "rank:b": np.array([np.nan, 1.0]), "merge": np.array([1.0, 0.5])})
    v = f.values(Query(user=0), c)
    cols = f.columns
    np.testing.assert_array_equal(v[:, cols.index("a:score")], [3, 2])
    np.testing.assert_array_equal(v[:, cols.index("b:rank")], [np.nan, 1])
    assert np.isnan(v[:, cols.index("b:z")]).all()  # not given
    np.testing.assert_array_equal(v[:, cols.index("n_channels")], [1, 2])
    np.testing.assert_array_equal(v[:, cols.index("merge:score")], [1.0, 0.5])


def test_feature_set_and_registry_errors() -> None:
    ds = _tiny()
    fs = FeatureSet([UserActivity(), ItemPopularity(windows=[])]).fit(ds.interactions, ds)
    X, emb = fs.compute(PairBatch.build([Query(user=0, time=DAY)], [Candidates(np.array([0, 1]), np.zeros(2))]))
    assert X.shape == (2, len(fs.columns)) and emb == {}
    with pytest.raises(ValueError, match="listed twice"):
        FeatureSet([UserActivity(), UserActivity()])
    with pytest.raises(ValueError, match="unknown feature 'nope'"):
        FEATURES.create("nope")
    with pytest.raises(ValueError, match="windows"):
        FEATURES.create("popularity", {"windows": "weekly"})


def test_key_counts_merge_extra() -> None:
    kc = KeyCounts()
    kc.fit(np.array([5, 5, 9]))
    for k in range(5000):  # forces a merge of the increments into the sorted array
        kc.add(k % 7)
    got = kc.get(np.array([5, 9, 0, 6, 100]))
    np.testing.assert_array_equal(got, [2 + 714, 1, 715, 714, 0])
