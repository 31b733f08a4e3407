"""Vector indexes: one conformance suite for every kind, plus HNSW recall and compaction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lmrec.stores import BaseVectorIndex, ExactIndex, VectorIndex, build_index, load_index

pytest.importorskip("faiss")

KINDS = ["exact", "flat", "hnsw"]
DIM = 16


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def random_vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((n, dim)))


def clustered(n: int, dim: int, n_centres: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_centres, dim))
    return unit(centres[rng.integers(n_centres, size=n)] + noise * rng.standard_normal((n, dim)))


def brute_force(ids: np.ndarray, vecs: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    sims = unit(queries) @ vecs.T
    return ids[np.argsort(-sims, axis=1, kind="stable")[:, :k]]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def filled(kind: str) -> tuple[BaseVectorIndex, np.ndarray, np.ndarray]:
    """An index of 300 random vectors under sparse, shuffled ids."""
    ids = np.random.default_rng(1).permutation(np.arange(300) * 7 + 1000)
    vecs = random_vectors(300)
    index = build_index(kind, DIM)
    index.add(ids, vecs)
    return index, ids, vecs


class TestConformance:
    """The contract every kind honours."""

    def test_protocol_and_size(self, filled: tuple) -> None:
        index, ids, _ = filled
        assert isinstance(index, VectorIndex)
        assert len(index) == 300
        assert int(ids[0]) in index and 5 not in index and "x" not in index
        assert sorted(index.ids().tolist()) == sorted(ids.tolist())

    def test_true_nearest_neighbour(self, filled: tuple) -> None:
        index, ids, vecs = filled
        queries = random_vectors(50, seed=2)
        got, scores = index.search(queries, k=5)
        assert got.shape == scores.shape == (50, 5)
        assert got.dtype == np.int64 and scores.dtype == np.float32
        np.testing.assert_array_equal(got[:, 0], brute_force(ids, vecs, queries, 1)[:, 0])
        assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
        np.testing.assert_allclose(scores[:, 0], np.max(queries @ vecs.T, axis=1), atol=1e-5)

    def test_self_query_and_normalisation(self, kind: str) -> None:
        index = build_index(kind, DIM)
        raw = np.random.default_rng(3).standard_normal((20, DIM)).astype(np.float32) * 5
        index.add(np.arange(20), raw)
        np.testing.assert_allclose(np.linalg.norm(index.get([0, 19]), axis=1), 1.0, atol=1e-5)
        got, scores = index.search(raw, k=1)
        np.testing.assert_array_equal(got[:, 0], np.arange(20))
        np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)

    def test_upsert_replaces(self, filled: tuple) -> None:
        index, ids, vecs = filled
        target, query = int(ids[10]), random_vectors(1, seed=9)
        index.add([target], query)
        assert len(index) == 300
        got, scores = index.search(query, k=3)
        assert got[0, 0] == target and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
        assert target not in got[0, 1:]  # the old vector is gone, not a second hit
        np.testing.assert_allclose(index.get([target])[0], query[0], atol=1e-6)

    def test_duplicate_ids_in_one_add_keep_the_last(self, kind: str) -> None:
        index = build_index(kind, DIM)
        v = random_vectors(3, seed=4)
        index.add([5, 6, 5], v)
        assert len(index) == 2
        np.testing.assert_allclose(index.get([5])[0], v[2], atol=1e-6)

    def test_remove_then_readd(self, filled: tuple) -> None:
        index, ids, vecs = filled
        gone = [int(i) for i in ids[:5]]
        assert index.remove(gone + [999_999]) == 5  # unknown ids are ignored
        assert index.remove(gone) == 0
        assert len(index) == 295 and gone[0] not in index
        got, _ = index.search(vecs[:5], k=10)
        assert not np.isin(got, gone).any()
        with pytest.raises(KeyError):
            index.get(gone[:1])
        index.add(gone[:1], vecs[:1])
        assert len(index) == 296
        assert index.search(vecs[:1], k=1)[0][0, 0] == gone[0]

    def test_exclude_global_and_per_query(self, filled: tuple) -> None:
        index, ids, vecs = filled
        top = index.search(vecs[:2], k=3)[0]
        got = index.search(vecs[:2], k=3, exclude=[int(ids[0]), int(ids[1])])[0]
        assert not np.isin(got, ids[:2]).any()
        per = index.search(vecs[:2], k=3, exclude=[[int(ids[0])], []])[0]
        assert ids[0] not in per[0] and per[1, 0] == top[1, 0]
        with pytest.raises(ValueError, match="entries"):
            index.search(vecs[:2], k=3, exclude=[[1], [2], [3]])

    def test_save_load_round_trip(self, filled: tuple, tmp_path: Path) -> None:
        index, ids, _ = filled
        index.remove(ids[:3])  # tombstones / holes must survive too
        queries = random_vectors(20, seed=5)
        before = index.search(queries, k=10)
        index.save(tmp_path / "idx")
        cfg = json.loads((tmp_path / "idx" / "config.json").read_text())
        assert cfg["kind"] == index.kind and cfg["dim"] == DIM and len(cfg["config_hash"]) == 16
        for loaded in (load_index(tmp_path / "idx"), type(index).load(tmp_path / "idx")):
            assert type(loaded) is type(index) and len(loaded) == len(index)
            assert loaded.params() == index.params()
            after = loaded.search(queries, k=10)
            np.testing.assert_array_equal(after[0], before[0])
            np.testing.assert_array_equal(after[1], before[1])

    def test_tampered_config_is_rejected(self, filled: tuple, tmp_path: Path) -> None:
        index = filled[0]
        cfg_path = index.save(tmp_path / "idx") / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["dim"] = 8
        cfg_path.write_text(json.dumps(cfg))
        with pytest.raises(ValueError, match="hash"):
            load_index(tmp_path / "idx")

    def test_k_larger_than_size_pads(self, kind: str) -> None:
        index = build_index(kind, DIM)
        index.add([3, 1], random_vectors(2))
        got, scores = index.search(random_vectors(4, seed=1), k=5)
        assert got.shape == (4, 5)
        assert (np.sort(got[:, :2], axis=1) == [1, 3]).all()
        assert (got[:, 2:] == -1).all() and np.isneginf(scores[:, 2:]).all()

    def test_empty_index(self, kind: str, tmp_path: Path) -> None:
        index = build_index(kind, DIM, threads=None)
        got, scores = index.search(random_vectors(3), k=4)
        assert (got == -1).all() and np.isneginf(scores).all() and len(index) == 0
        loaded = load_index(index.save(tmp_path / "empty"))
        assert len(loaded) == 0 and loaded.threads is None
        index.add([1], random_vectors(1))
        index.remove([1])
        assert (index.search(random_vectors(2), k=2)[0] == -1).all()

    def test_validation(self, kind: str) -> None:
        index = build_index(kind, DIM)
        with pytest.raises(ValueError, match=f"dim 8.*dim {DIM}"):
            index.add([1], np.ones((1, 8), np.float32))
        with pytest.raises(ValueError, match=f"dim 8.*dim {DIM}"):
            index.search(np.ones((1, 8), np.float32), k=1)
        bad = random_vectors(2)
        bad[1, 3] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            index.add([1, 2], bad)
        with pytest.raises(ValueError, match="zero"):
            index.add([1], np.zeros((1, DIM)))
        with pytest.raises(ValueError, match="2 ids but 1"):
            index.add([1, 2], random_vectors(1))
        with pytest.raises(ValueError, match="non-negative"):
            index.add([-1], random_vectors(1))
        with pytest.raises(TypeError):
            index.add([1.5], random_vectors(1))
        with pytest.raises(ValueError, match="k must"):
            index.search(random_vectors(1), k=0)
        assert len(index) == 0  # failed adds change nothing


def test_exact_ties_break_by_lower_id() -> None:
    index = ExactIndex(dim=2)
    same = np.tile(np.array([[1.0, 0.0]], np.float32), (6, 1))
    index.add([50, 40, 30, 20, 10, 60], same)
    assert index.search(np.array([[1.0, 0.0]]), k=3)[0].tolist() == [[10, 20, 30]]


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown index kind"):
        build_index("annoy", 4)


def test_hnsw_recall_against_exact() -> None:
    data = clustered(5_200, 64, n_centres=50, noise=1.0, seed=0)
    vecs, queries = data[:5_000], data[5_000:]  # held-out queries from the same clusters
    ids = np.arange(5_000) * 3
    exact, hnsw = build_index("exact", 64), build_index("hnsw", 64, M=16, ef_construction=100, threads=2)
    exact.add(ids, vecs)
    hnsw.add(ids, vecs)
    truth, got = exact.search(queries, k=10)[0], hnsw.search(queries, k=10)[0]
    recall = np.mean([len(set(t) & set(g)) / 10 for t, g in zip(truth.tolist(), got.tolist())])
    assert recall >= 0.95, recall


def test_hnsw_tombstones_and_compaction() -> None:
    from lmrec.stores import HNSWIndex

    vecs = random_vectors(500, seed=7)
    index = HNSWIndex(DIM, compact_ratio=0.2)
    index.add(np.arange(500), vecs)
    index.remove(np.arange(50))  # 10%: kept as tombstones
    assert index.n_tombstones == 50 and len(index) == 450
    got = index.search(vecs[:60], k=5)[0]
    assert not np.isin(got, np.arange(50)).any() and (got >= 0).all()
    np.testing.assert_array_equal(got[50:, 0], np.arange(50, 60))
    index.add([50, 51], vecs[:2])  # upserts tombstone the old slots too
    assert index.n_tombstones == 52
    index.remove(np.arange(52, 120))  # passes 20% -> rebuilt
    assert index.n_tombstones == 0 and len(index) == 382
    got = index.search(vecs[120:140], k=1)[0]
    np.testing.assert_array_equal(got[:, 0], np.arange(120, 140))
    assert index.search(vecs[:1], k=1)[0][0, 0] == 50  # the upserted vector moved with compaction
    index.ef_search = 128
    assert index.params()["ef_search"] == 128


def test_hnsw_fetches_deeper_when_most_neighbours_are_dead() -> None:
    from lmrec.stores import HNSWIndex

    vecs = clustered(400, DIM, n_centres=2, noise=0.3, seed=3)
    index = HNSWIndex(DIM, compact_ratio=1.0)  # never compacts
    index.add(np.arange(400), vecs)
    query = vecs[:1]
    near = index.search(query, k=150)[0][0]
    index.remove(near[:140])
    got = index.search(query, k=20)[0][0]
    assert (got >= 0).all() and not np.isin(got, near[:140]).any()
    exact = ExactIndex(DIM)
    exact.add(index.ids(), index.get(index.ids()))
    assert len(set(got.tolist()) & set(exact.search(query, k=20)[0][0].tolist())) >= 18
