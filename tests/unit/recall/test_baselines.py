"""Correctness of the classic baselines (EASE, ItemKNN, ALS, BPR) and the model registry."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from pydantic import ValidationError

from lmrec.component import (DEFAULT_GRIDS, UnknownModelError, create, get_model, load_model,
                             model_names, register, register_model, unregister)
from lmrec.data.dataset import Dataset, IdMap, Interactions
from lmrec.recall import itemknn as itemknn_module
from lmrec.recall.ease import EASE, ease_weights, gram_matrix
from lmrec.recall.implicit_mf import ALS, BPR
from lmrec.recall.itemknn import ItemKNN, item_similarity
from lmrec.recall.popular import MostPopular

X6 = np.array([  # 6 users x 5 items; item 4 has no interactions
    [1, 1, 0, 0, 0],
    [1, 0, 1, 0, 0],
    [0, 1, 1, 1, 0],
    [1, 1, 1, 0, 0],
    [0, 0, 1, 1, 0],
    [0, 1, 0, 1, 0],
], dtype=np.float32)


def dataset_from_dense(x: np.ndarray) -> Dataset:
    users, items = np.nonzero(x)
    inter = Interactions(users, items, np.arange(len(users)))
    return Dataset("dense", IdMap(range(x.shape[0])), IdMap(range(x.shape[1])), inter)


def two_blocks(n_users: int = 40, n_items: int = 30, density: float = 0.5, seed: int = 0) -> np.ndarray:
    """Users in the first half only touch the first half of the items, the rest the rest."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n_users, n_items), dtype=np.float32)
    hu, hi = n_users // 2, n_items // 2
    x[:hu, :hi] = rng.random((hu, hi)) < density
    x[hu:, hi:] = rng.random((n_users - hu, n_items - hi)) < density
    return x


# --- EASE ------------------------------------------------------------------------------------
@pytest.mark.parametrize("lam", [0.5, 3.0, 100.0])
def test_ease_matches_brute_force_closed_form(lam: float) -> None:
    g = X6.T.astype(np.float64) @ X6 + lam * np.eye(5)
    p = np.linalg.inv(g)
    expected = -p / np.diag(p)[None, :]
    np.fill_diagonal(expected, 0.0)
    model = EASE(lam=lam).fit(*_fit_args(X6))
    np.testing.assert_allclose(model.weights, expected, rtol=1e-5, atol=1e-7)
    assert np.all(np.diag(model.weights) == 0)
    assert np.all(model.weights[:, 4] == 0)  # an item nobody saw gets no weight
    np.testing.assert_allclose(model.score(np.arange(6)), X6 @ expected, rtol=1e-5, atol=1e-6)


def test_ease_solves_the_constrained_least_squares() -> None:
    # Stationarity: off the diagonal, (X^T X + lam I) B - X^T X is zero (the diagonal carries
    # the Lagrange multipliers of diag(B) = 0): a check independent of the closed form.
    lam = 2.0
    b = EASE(lam=lam).fit(*_fit_args(X6)).weights.astype(np.float64)
    xtx = X6.T.astype(np.float64) @ X6
    grad = (xtx + lam * np.eye(5)) @ b - xtx
    np.testing.assert_allclose(grad - np.diag(np.diag(grad)), 0.0, atol=1e-5)


def test_ease_helpers() -> None:
    x = sp.random(30, 12, density=0.3, random_state=1, format="csr", dtype=np.float32)
    np.testing.assert_allclose(gram_matrix(x), (x.T @ x).toarray(), rtol=1e-6)
    with pytest.raises(ValueError):
        ease_weights(np.eye(3, dtype=np.float32))
    with pytest.raises(np.linalg.LinAlgError):
        ease_weights(-np.eye(3))


# --- ItemKNN ---------------------------------------------------------------------------------
def test_itemknn_identical_columns_have_similarity_one() -> None:
    x = X6.copy()
    x[:, 4] = x[:, 0]  # item 4 is a copy of item 0
    s = ItemKNN(k=10).fit(*_fit_args(x)).similarity.toarray()  # k above n_items keeps all
    assert s[0, 4] == pytest.approx(1.0) and s[4, 0] == pytest.approx(1.0)
    assert np.all(np.diag(s) == 0)


def test_itemknn_matches_brute_force_cosine_and_keeps_top_k() -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((50, 25)) < 0.3).astype(np.float32)
    shrink, k = 2.0, 4
    norms = np.sqrt(x.sum(axis=0))
    full = (x.T @ x) / (norms[:, None] * norms[None, :] + shrink)
    np.fill_diagonal(full, 0.0)
    s = item_similarity(sp.csr_matrix(x), k=k, shrink=shrink).toarray()
    assert np.all((s != 0).sum(axis=0) == k)
    for j in range(25):
        kept = np.flatnonzero(s[:, j])
        np.testing.assert_allclose(s[kept, j], full[kept, j], rtol=1e-5)
        # every dropped neighbour is at most as similar as the weakest kept one
        assert np.delete(full[:, j], kept).max() <= s[kept, j].min() + 1e-6


def test_itemknn_blocks_and_normalize(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    x = sp.csr_matrix((rng.random((40, 30)) < 0.2).astype(np.float32))
    one_block = item_similarity(x, k=5, normalize=True)
    monkeypatch.setattr(itemknn_module, "_BLOCK_ELEMENTS", 30 * 7)  # blocks of 7 columns
    many_blocks = item_similarity(x, k=5, normalize=True)
    np.testing.assert_array_equal(one_block.toarray(), many_blocks.toarray())
    # normalize = cosine on rows scaled to unit length
    dense = x.toarray()
    rows = dense / np.maximum(np.linalg.norm(dense, axis=1, keepdims=True), 1e-12)
    norms = np.linalg.norm(rows, axis=0)
    full = (rows.T @ rows) / np.maximum(norms[:, None] * norms[None, :], 1e-12)
    kept = one_block.toarray()
    np.testing.assert_allclose(kept[kept != 0], full[kept != 0], rtol=1e-5)


# --- ALS / BPR -------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: ALS(factors=4, iterations=10, alpha=5.0),
                                  lambda: BPR(factors=4, iterations=100, learning_rate=0.05)],
                         ids=["als", "bpr"])
def test_factor_models_recover_two_blocks(make) -> None:
    x = two_blocks()
    model = make().fit(*_fit_args(x))
    scores = model.score(np.arange(40))
    unseen = x == 0
    own = np.zeros_like(unseen)
    own[:20, :15] = own[20:, 15:] = True
    # per user: mean score of unseen items of the user's own block vs the other block
    own_mean = np.array([scores[u, unseen[u] & own[u]].mean() for u in range(40)])
    other_mean = np.array([scores[u, ~own[u]].mean() for u in range(40)])
    assert np.all(own_mean > other_mean)


def test_bpr_factors_carry_item_bias() -> None:
    model = BPR(factors=6, iterations=5).fit(*_fit_args(two_blocks()))
    assert model.user_factors.shape == (40, 7) and model.item_factors.shape == (30, 7)
    assert np.all(model.user_factors[:, -1] == 1.0)  # the bias column of the user side
    np.testing.assert_allclose(model.score([3]), model.user_factors[[3]] @ model.item_factors.T)


def test_als_threads_do_not_change_the_result() -> None:
    args = _fit_args(two_blocks())
    one = ALS(factors=4, iterations=3, num_threads=1).fit(*args).score(np.arange(40))
    two = ALS(factors=4, iterations=3, num_threads=2).fit(*args).score(np.arange(40))
    np.testing.assert_array_equal(one, two)


# --- registry --------------------------------------------------------------------------------
def test_registry_builtins_and_errors() -> None:
    assert model_names()[:5] == ["popular", "itemknn", "ease", "als", "bpr"]
    assert get_model("ease") is EASE
    assert isinstance(create("itemknn", {"k": 7}), ItemKNN)
    with pytest.raises(UnknownModelError, match="known: popular, itemknn, ease, als, bpr"):
        create("nope")
    with pytest.raises(ValidationError, match="lambda_"):
        create("ease", {"lambda_": 3})
    with pytest.raises(ValidationError, match="factors"):
        create("als", {"factors": "many"})
    with pytest.raises(ValidationError, match="lam"):
        create("ease", {"lam": -1})


def test_default_grids_are_small_and_valid() -> None:
    for name in ["popular", "itemknn", "ease", "als", "bpr"]:
        grid = DEFAULT_GRIDS[name]
        assert 1 <= len(grid) <= 12
        assert len({tuple(sorted(p.items())) for p in grid}) == len(grid)
        for point in grid:
            create(name, point)


def test_register_custom_model_and_factory(tmp_path) -> None:
    @register("popular-test", grid=[{}])
    class PopularTest(MostPopular):
        name = "popular-test"

    try:
        with pytest.raises(ValueError, match="already registered"):
            register_model("popular-test", MostPopular)
        model = create("popular-test").fit(*_fit_args(X6))
        assert type(load_model(model.save(tmp_path / "m"))) is PopularTest
        register_model("popular-test", lambda **p: PopularTest(**p), replace=True)
        assert isinstance(create("popular-test"), PopularTest)
    finally:
        unregister("popular-test")
    assert "popular-test" not in model_names() and "popular-test" not in DEFAULT_GRIDS


def test_importing_the_registry_is_lazy() -> None:
    code = "import sys, lmrec.component; print(any(m.startswith('implicit') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _fit_args(x: np.ndarray) -> tuple[Interactions, Dataset]:
    ds = dataset_from_dense(x)
    return ds.interactions, ds
