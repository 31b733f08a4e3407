"""The merge's catalog moments without the unavailable items (`UserScores.moments_without`):
every score kind gives the moments of the catalog the dead items were never part of, so a
pipeline that holds deleted items (the running service) and one that does not, or holds them
at other indices (the same home restarted), z-score alike."""

from __future__ import annotations

import numpy as np
import pytest

from lmrec.recall.scores import (ConstantScores, DenseScores, ItemStats, SparseRowScores, VectorCache,
                                 VectorScores)

DEAD = np.array([0, 3, 4, 17, 29, 41])
N = 45  # five items beyond the 40-row tables score 0


def _live(full: np.ndarray) -> tuple[float, float]:
    keep = np.ones(len(full), bool)
    keep[DEAD] = False
    return float(full[keep].mean()), float(full[keep].std())


def _check(got: tuple[float, float], full: np.ndarray) -> None:
    mean, std = _live(full)
    assert got[0] == pytest.approx(mean, abs=1e-6) and got[1] == pytest.approx(std, rel=1e-5)


@pytest.mark.parametrize("index", ["exact", "hnsw"])
def test_vector_scores(index: str) -> None:
    if index == "hnsw":
        pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    users, items = rng.normal(size=(3, 8)).astype(np.float32), rng.normal(size=(40, 8)).astype(np.float32)
    stats, ann = VectorCache().get(items, None, N, (index, {}))
    vs = VectorScores(users, items, stats, None, ann, N)
    for r in range(3):
        full = np.r_[items @ users[r], np.zeros(N - 40)].astype(np.float64)
        _check(vs.moments_without(r, DEAD), full)
        assert vs.moments_without(r, np.zeros(0, np.int64)) == vs.moments(r)


def test_dense_sparse_and_constant_scores() -> None:
    rng = np.random.default_rng(1)
    dense = rng.normal(size=(2, N)).astype(np.float32)
    ds = DenseScores(dense)
    cols = [np.array([1, 3, 17, 30]), np.array([0, 44])]
    vals = [np.array([0.5, 2.0, 1.0, 0.25], np.float32), np.array([3.0, 1.5], np.float32)]
    sp = SparseRowScores(cols, vals, N)
    for r in range(2):
        _check(ds.moments_without(r, DEAD), dense[r].astype(np.float64))
        full = np.zeros(N)
        full[cols[r]] = vals[r]
        _check(sp.moments_without(r, DEAD), full)
    pop = rng.random(N).astype(np.float32)
    cs = ConstantScores(pop)
    _check(cs.moments_without(0, DEAD), pop.astype(np.float64))
    assert cs.moments_without(1, DEAD) == cs.moments_without(0, DEAD)


def test_the_moments_do_not_depend_on_where_or_whether_dead_items_are_held() -> None:
    """The running catalog holds dead items among the live ones; the restarted one holds them
    at the end with other (blank) vectors, or not at all: the same live moments."""
    rng = np.random.default_rng(2)
    live = rng.normal(size=(30, 8)).astype(np.float32)
    user = rng.normal(size=(1, 8)).astype(np.float32)
    dead_at = np.array([2, 9, 10, 25])
    running = np.insert(live, dead_at - np.arange(len(dead_at)), rng.normal(size=(4, 8)).astype(np.float32), axis=0)
    assert np.array_equal(np.delete(running, dead_at, axis=0), live)
    restarted = np.r_[live, np.full((4, 8), 0.1, np.float32)]
    alone = live
    got = []
    for table, dead in ((running, dead_at), (restarted, np.arange(30, 34)), (alone, np.zeros(0, np.int64))):
        for index in ("exact", "hnsw") if _has_faiss() else ("exact",):
            stats, ann = VectorCache().get(table, None, len(table), (index, {}))
            got.append(VectorScores(user, table, stats, None, ann, len(table)).moments_without(0, dead))
    for m, s in got[1:]:
        assert m == pytest.approx(got[0][0], abs=1e-6) and s == pytest.approx(got[0][1], rel=1e-6)


def test_a_dead_items_new_vector_leaves_the_graph_alone() -> None:
    """A deleted item's content is cleared (its vector changes): the statistics follow, the
    HNSW graph is kept (the item is never retrieved); when it comes back, the graph is rebuilt."""
    pytest.importorskip("faiss")
    rng = np.random.default_rng(3)
    items = rng.normal(size=(50, 8)).astype(np.float32)
    cache = VectorCache()
    cache.get(items, None, 50, ("hnsw", {}))
    graph = cache.ann
    old = items[[7]].copy()
    items[7] = 0.1
    cache.rows_changed(items, np.array([7]), old, 50, dead=np.array([7]))
    np.testing.assert_allclose(cache.stats.s2, ItemStats.of(items, None, 50).s2, rtol=1e-9, atol=1e-9)
    assert cache.get(items, None, 50, ("hnsw", {}))[1] is graph
    cache.rows_changed(items, np.array([3]), items[[3]].copy(), 50)  # unchanged vector, live: kept
    assert cache.get(items, None, 50, ("hnsw", {}))[1] is graph
    cache.rows_changed(items, np.array([7]), items[[7]].copy(), 50)  # back, same vector: the graph is stale
    assert cache.get(items, None, 50, ("hnsw", {}))[1] is not graph


def _has_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("symmetric", [False, True])
def test_forgetting_a_user_leaves_the_transitions_of_the_others(symmetric: bool) -> None:
    """Erased events un-counted, whether they were fitted or folded in online: the channel
    scores as one that never saw them (what a restart after the erasure catches up to)."""
    from lmrec.data.dataset import Dataset, IdMap, Interactions
    from lmrec.recall.transitions import ItemTransitionsChannel
    from lmrec.types import Event, HistoryBatch

    rng = np.random.default_rng(4)
    n_users, n_items = 6, 12
    users = np.repeat(np.arange(n_users), 8)
    items = rng.integers(0, n_items, len(users))
    times = np.tile(np.arange(8), n_users) + 100
    inter = Interactions(users, items, times)
    ds = Dataset("d", IdMap([f"u{u}" for u in range(n_users)]), IdMap([f"i{i}" for i in range(n_items)]), inter)
    first = times < 104
    fitted = ItemTransitionsChannel(window=3, symmetric=symmetric).fit(inter.select(first), ds)
    fitted.update([Event(int(u), int(i), int(t)) for u, i, t in zip(users[~first], items[~first], times[~first])])
    gone = 2
    mine = users == gone
    fitted.forget([Event(gone, int(i), int(t)) for i, t in zip(items[mine], times[mine])])
    others = ItemTransitionsChannel(window=3, symmetric=symmetric).fit(inter.select(~mine), ds)
    hist = [np.array([i]) for i in range(n_items)]
    batch = HistoryBatch(np.zeros(n_items, np.int64) - 1, hist, [np.array([0])] * n_items,
                         [np.array([1.0])] * n_items)
    a, b = fitted.user_scores(batch), others.user_scores(batch)
    for r in range(n_items):
        np.testing.assert_allclose(a.at(r, np.arange(n_items)), b.at(r, np.arange(n_items)), atol=1e-7)
        assert a.moments(r) == pytest.approx(b.moments(r), abs=1e-9)
