"""Channel scores without full scoring (`lmrec.recall.scores`) against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from lmrec.recall.scores import (ConstantScores, DenseScores, ItemStats, SparseRowScores, VectorCache,
                                 VectorScores)
from lmrec.types import Candidates


def _brute(scores: np.ndarray, k: int, exclude: np.ndarray, allowed: np.ndarray | None = None) -> list[int]:
    s = scores.astype(np.float32).copy()
    if allowed is not None:
        s[~allowed] = -np.inf
    return Candidates.from_scores(s, k, exclude=exclude).items.tolist()


@pytest.mark.parametrize("k", [1, 7, 60])
def test_vector_scores_exact_top_at_and_moments(k: int) -> None:
    rng = np.random.default_rng(0)
    users, items = rng.normal(size=(3, 8)).astype(np.float32), rng.normal(size=(50, 8)).astype(np.float32)
    bias = rng.normal(size=50).astype(np.float32)
    items[11] = items[10]
    bias[11] = bias[10]  # a tie: the lower index first
    n_items = 55  # five items added after the fit score 0
    vs = VectorScores(users, items, ItemStats.of(items, bias, n_items), bias, None, n_items)
    allowed = np.ones(n_items, bool)
    allowed[::4] = False
    for r in range(3):
        full = np.r_[items @ users[r] + bias, np.zeros(5)]
        ex = np.array([3, 10, 52])
        assert vs.top(r, k, ex)[0].tolist() == _brute(full, k, ex)
        assert vs.top(r, k, ex, allowed)[0].tolist() == _brute(full, k, ex, allowed)
        np.testing.assert_allclose(vs.at(r, np.arange(n_items)), full, rtol=1e-5, atol=1e-5)
        mean, std = vs.moments(r)
        assert mean == pytest.approx(full.mean(), abs=1e-5) and std == pytest.approx(full.std(), rel=1e-5)
        # the sufficient statistics give the same moments without any full product
        m2, s2 = ItemStats.of(items, bias, n_items).moments(users[r:r + 1])
        assert m2[0] == pytest.approx(full.mean(), abs=1e-5) and s2[0] == pytest.approx(full.std(), rel=1e-4)


def test_hnsw_vector_scores_find_the_exact_top_k() -> None:
    pytest.importorskip("faiss")
    rng = np.random.default_rng(1)
    users, items = rng.normal(size=(5, 16)).astype(np.float32), rng.normal(size=(2000, 16)).astype(np.float32)
    cache = VectorCache()
    stats, ann = cache.get(items, None, len(items), ("hnsw", {"M": 16, "ef_construction": 100, "ef_search": 200}))
    assert ann is not None and len(ann) == 2000
    vs = VectorScores(users, items, stats, None, ann, len(items))
    recall = []
    for r in range(5):
        full = items @ users[r]
        ex = rng.choice(2000, 30, replace=False)
        got, got_scores = vs.top(r, 20, ex)
        want = _brute(full, 20, ex)
        recall.append(len(set(got.tolist()) & set(want)) / 20)
        assert not set(got.tolist()) & set(ex.tolist())
        np.testing.assert_allclose(got_scores, full[got], rtol=1e-5)  # exact scores of what it found
        mean, std = vs.moments(r)
        assert mean == pytest.approx(full.mean(), abs=1e-4) and std == pytest.approx(full.std(), rel=1e-4)
    assert np.mean(recall) >= 0.95


def test_vector_cache_follows_new_and_changed_rows() -> None:
    pytest.importorskip("faiss")
    rng = np.random.default_rng(2)
    items = rng.normal(size=(100, 8)).astype(np.float32)
    cache = VectorCache()
    cache.get(items, None, 100, ("hnsw", {}))
    old = items[[5]].copy()
    grown = np.r_[items, rng.normal(size=(3, 8)).astype(np.float32)]
    grown[5] = rng.normal(size=8)
    cache.rows_changed(grown, np.array([5, 100, 101, 102]), old, 100)
    fresh = ItemStats.of(grown, None, 103)
    np.testing.assert_allclose(cache.stats.s2, fresh.s2, rtol=1e-9, atol=1e-9)
    stats, ann = cache.get(grown, None, 103, ("hnsw", {}))
    assert len(ann) == 103  # rebuilt: a vector inside the graph changed


def test_sparse_row_scores_equal_the_dense_sort() -> None:
    n = 30
    cols = [np.array([2, 5, 9, 20]), np.array([], np.int64), np.array([1, 4])]
    vals = [np.array([0.5, 2.0, 0.0, -1.0], np.float32), np.array([], np.float32), np.array([3.0, 3.0], np.float32)]
    sp = SparseRowScores(cols, vals, n)
    allowed = np.ones(n, bool)
    allowed[[0, 3]] = False
    for r in range(3):
        dense = np.zeros(n, np.float32)
        dense[cols[r]] = vals[r]
        for k in (1, 3, 10, 29, 40):
            for ex in (np.array([], np.int64), np.array([5, 0, 1])):
                assert sp.top(r, k, ex)[0].tolist() == _brute(dense, k, ex)
                assert sp.top(r, k, ex, allowed)[0].tolist() == _brute(dense, k, ex, allowed)
        np.testing.assert_allclose(sp.at(r, np.arange(n)), dense)
        assert sp.moments(r) == pytest.approx((dense.mean(), dense.std()), abs=1e-6)


def test_constant_and_dense_scores() -> None:
    pop = np.array([3.0, 9.0, 9.0, 0.0, 5.0], np.float32)
    c = ConstantScores(pop)
    assert c.top(0, 3, np.array([1]))[0].tolist() == [2, 4, 0]
    assert c.top(7, 10, np.array([], np.int64), np.array([True, False, True, True, False]))[0].tolist() == [2, 0, 3]
    assert c.moments(0) == pytest.approx((pop.mean(), pop.std()))
    d = DenseScores(np.stack([pop, -pop]))
    assert d.top(1, 2, np.array([3]))[0].tolist() == [0, 4]
    np.testing.assert_array_equal(d.at(0, np.array([4, 1])), [5.0, 9.0])


def test_not_in_equals_isin_for_small_and_large_arrays() -> None:
    from lmrec.types import not_in

    rng = np.random.default_rng(5)
    for n_a, n_b in ((0, 3), (5, 0), (50, 20), (3000, 400)):
        a, b = rng.integers(0, 500, n_a), rng.integers(0, 500, n_b)
        np.testing.assert_array_equal(not_in(a, b), ~np.isin(a, b))
