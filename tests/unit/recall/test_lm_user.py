"""LM user-history channels: recency weights, incremental updates, cold items, k-means,
multi-interest, item-to-item similarity and the blend's normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from lmrec.component import DEFAULT_GRIDS, create
from lmrec.data.dataset import Dataset, IdMap, Interactions, ItemTable
from lmrec.recall.blend import BlendRecommender, normalise_scores
from lmrec.recall.item2item import TextItemSimilarity
from lmrec.recall.lm_user import (LMMeanRecommender, LMMultiRecommender, LMRecencyRecommender,
                                  LMUserRecommender, recency_weights, spherical_kmeans)
from lmrec.testing.toy import toy_dataset
from lmrec.text.base import FakeEncoder, normalize


def _small() -> Dataset:
    titles = ["space alien rocket", "alien invasion space", "rocket launch space", "romantic love wedding",
              "love story wedding", "romantic comedy love", "kitchen knife cooking", "cooking recipe kitchen"]
    table = ItemTable(title=titles, categories=[[] for _ in titles])
    inter = Interactions(np.array([0, 0, 0, 0, 1, 1, 1, 2]), np.array([0, 1, 3, 4, 6, 7, 2, 5]),
                         np.array([10, 20, 30, 40, 5, 6, 7, 1]), value=np.array([5, 4, 3, 1, 2, 2, 5, 4]))
    return Dataset("small", IdMap(["a", "b", "c"], sort=False), IdMap([str(i) for i in range(8)]), inter,
                   item_table=table)


def test_recency_weights_by_hand() -> None:
    np.testing.assert_allclose(recency_weights(4, 2.0), [2 ** -1.5, 2 ** -1.0, 2 ** -0.5, 1.0])
    np.testing.assert_allclose(recency_weights(1, 5.0), [1.0])


def test_recency_user_vector_by_hand() -> None:
    ds = _small()
    model = LMRecencyRecommender(encoder="fake", half_life=1.0, rating_weight=True).fit(ds.interactions, ds)
    v = normalize(FakeEncoder().encode_items([ds.item_table.item_text(i, fields=[]) for i in range(8)]))
    # user 0 in time order: items 0, 1, 3, 4 with ratings 5, 4, 3, 1 and weights 1/8, 1/4, 1/2, 1
    expected = normalize((5 / 8) * v[0] + (4 / 4) * v[1] + (3 / 2) * v[3] + 1.0 * v[4])
    np.testing.assert_allclose(model.user_vectors(np.array([0]))[0], expected, atol=1e-6)
    np.testing.assert_allclose(model.score([0])[0], v @ expected, atol=1e-5)


@pytest.mark.parametrize("cls,params", [(LMMeanRecommender, {}), (LMMeanRecommender, {"rating_weight": True}),
                                        (LMRecencyRecommender, {"half_life": 3.0}),
                                        (LMRecencyRecommender, {"half_life": 2.0, "rating_weight": True})])
def test_update_equals_refit(cls: type[LMUserRecommender], params: dict) -> None:
    ds = toy_dataset()
    inter = ds.interactions
    events = [(3, 7, 5_000_000, 4.0), (3, 9, 5_000_100, 2.0), (70, 2, 6_000_000, 1.0), (5, 11, 0, 3.0)]
    model = cls(encoder="fake", **params).fit(inter, ds)
    for u, i, t, val in events:  # (5, 11, 0): older than user 5's history: rebuilt, same result
        model.update_one(u, i, t, value=val)
    ids = IdMap(ds.users.ids + [f"new{k}" for k in range(ds.n_users, 71)], sort=False)
    extended = Interactions.concat([inter, Interactions(*map(np.array, zip(*[e[:3] for e in events])),
                                                        value=np.array([e[3] for e in events]))])
    big = Dataset("toy", ids, ds.items, extended, item_table=ds.item_table)
    refit = cls(encoder="fake", **params).fit(extended, big)
    users = np.r_[np.arange(60), 70]  # users 60..69 have no history: the fit-time fallback differs
    assert model.n_users == 71
    np.testing.assert_allclose(model.score(users), refit.score(users), atol=1e-5)
    seen = model.recommend([3], k=60, exclude_seen=True)[0].items
    assert 7 not in seen and 9 not in seen


def test_add_item_cold_start() -> None:
    ds = _small()
    model = LMMeanRecommender(encoder="fake").fit(ds.interactions, ds)
    model.add_item(8, "space alien rocket saga")  # a new item beyond the catalog
    assert model.n_items == 9
    top = model.recommend([0, 1], k=1)
    assert top[0].items[0] == 8  # user 0 likes space / alien items
    assert top[1].items[0] != 8
    model.update_one(0, 8)
    assert 8 not in model.recommend([0], k=4)[0].items.tolist()


def test_kmeans_deterministic_and_separates() -> None:
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal([5, 0, 0], 0.3, (10, 3)), rng.normal([0, 5, 0], 0.3, (10, 3))]
    s1, l1 = spherical_kmeans(x, 2, seed=4)
    s2, l2 = spherical_kmeans(x, 2, seed=4)
    np.testing.assert_array_equal(l1, l2)
    np.testing.assert_array_equal(s1, s2)
    assert len(set(l1[:10])) == 1 and len(set(l1[10:])) == 1 and l1[0] != l1[10]
    assert spherical_kmeans(x[:1], 3)[0].shape == (1, 3)


def test_multi_interest_covers_both_genres() -> None:
    ds = toy_dataset(n_users=12, n_items=60)
    genre = np.array([c[0] for c in ds.item_table.categories])
    action, romance = np.flatnonzero(genre == "action"), np.flatnonzero(genre == "romance")
    # user 11 has only 3 action and 3 romance items in history
    hist = np.r_[action[:3], romance[:3]]
    model = LMMultiRecommender(encoder="fake", n_interests=2).fit(Interactions(np.full(6, 11), hist, np.arange(6)), ds)
    top = genre[model.recommend([11], k=10)[0].items].tolist()
    assert top.count("action") >= 3 and top.count("romance") >= 3
    model.update_one(11, int(action[4]))
    assert model.weights[11].sum() == 7


def test_save_load_after_updates(tmp_path) -> None:
    ds = _small()
    model = LMMultiRecommender(encoder="fake", n_interests=2).fit(ds.interactions, ds)
    model.update_one(4, 2, 100)
    model.add_item(9, "kitchen knife")
    loaded = LMMultiRecommender.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.score(np.arange(5)), model.score(np.arange(5)))
    assert loaded.recommend([4], k=3)[0].items.tolist() == model.recommend([4], k=3)[0].items.tolist()


def test_registry_and_grids() -> None:
    assert isinstance(create("lm-recency", {"encoder": "fake"}), LMRecencyRecommender)
    assert create("blend", {"weight": 0.25}).params["weight"] == 0.25
    assert {p["half_life"] for p in DEFAULT_GRIDS["lm-recency"]} == {2.0, 5.0, 10.0, 20.0}
    assert [p["weight"] for p in DEFAULT_GRIDS["blend"]] == [0, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5]
    with pytest.raises(Exception, match="mode"):
        LMRecencyRecommender(mode="mean")


def test_text_item_similarity() -> None:
    ds = _small()
    sim = TextItemSimilarity.from_dataset(ds, encoder="fake")
    out = sim.similar([0, 3], k=2)
    assert set(out[0].items.tolist()) <= {1, 2} and 0 not in out[0].items
    assert set(out[1].items.tolist()) <= {4, 5}
    assert sim.similar(0, k=3, candidates=np.array([5, 6]))[0].items.tolist() in ([5, 6], [6, 5])


def test_blend_normalisation_and_weight_zero() -> None:
    z = normalise_scores(np.array([[1.0, 2.0, 3.0, 6.0]]))
    assert abs(z.mean()) < 1e-6 and abs(z.std() - 1) < 1e-5
    ds = toy_dataset()
    cf_only = BlendRecommender(cf="ease", cf_params={"lam": 10.0}, lm_params={"encoder": "fake"}, weight=0.0)
    cf_only.fit(ds.interactions, ds)
    ease = create("ease", {"lam": 10.0}).fit(ds.interactions, ds)
    np.testing.assert_allclose(cf_only.score([0, 1]), normalise_scores(ease.score([0, 1])), atol=1e-6)


def test_batched_kmeans_equals_one_user_version() -> None:
    from lmrec.recall.item2item import batched_spherical_kmeans

    rng = np.random.default_rng(3)
    lengths = rng.integers(0, 40, size=25)  # includes empty users
    indptr = np.r_[0, np.cumsum(lengths)]
    x = rng.normal(size=(indptr[-1], 8)).astype(np.float32)
    sums, labels = batched_spherical_kmeans(x, indptr, 3, seeds=np.arange(25) + 11, max_floats=64 * 8)
    for u in range(25):
        a, b = indptr[u], indptr[u + 1]
        if a == b:
            assert not sums[u].any()
            continue
        s1, l1 = spherical_kmeans(x[a:b], 3, seed=11 + u)
        np.testing.assert_array_equal(labels[a:b], l1)
        np.testing.assert_allclose(sums[u, :len(s1)], s1, atol=1e-5)


@pytest.mark.parametrize("cls,params", [(LMMeanRecommender, {"rating_weight": True}),
                                        (LMRecencyRecommender, {"half_life": 3.0, "rating_weight": True}),
                                        (LMMultiRecommender, {"n_interests": 3})])
def test_vectorised_fit_equals_per_user_rebuild(cls: type[LMUserRecommender], params: dict) -> None:
    ds = toy_dataset()
    model = cls(encoder="fake", **params).fit(ds.interactions, ds)
    sums, weights = model.sums.copy(), model.weights.copy()
    for u in range(model.n_users):
        model._rebuild_user(u)
    np.testing.assert_allclose(model.sums, sums, atol=1e-5)
    np.testing.assert_allclose(model.weights, weights, atol=1e-9)


def test_encoder_names() -> None:
    for name in ("minilm", "minilm-int8", "e5-small", "fake", "fake-32"):
        assert LMRecencyRecommender(encoder=name).params["encoder"] == name  # validated, nothing loaded
    with pytest.raises(Exception, match="unknown encoder"):
        LMRecencyRecommender(encoder="minilm-int4")
