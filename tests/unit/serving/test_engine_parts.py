"""The engine's building blocks on their own: keyword index rebuilds, popularity decay, profiles,
the readers-writer lock, rank fusion, item texts and model versions."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lmrec.serving.catalog import item_texts
from lmrec.serving.cf import events_dataset, list_versions, load_version, train_version
from lmrec.serving.keyword import LiveBM25, mixed_tokenize
from lmrec.serving.merge import rrf_merge
from lmrec.serving.profiles import Popularity, UserProfiles
from lmrec.serving.ranking import RankingLog
from lmrec.serving.rwlock import RWLock
from lmrec.stores.records import EventRecord, ItemRecord, RankingRecord


# --- keyword index -----------------------------------------------------------------------------
def _bm25(**kw: object) -> tuple[LiveBM25, RWLock]:
    lock = RWLock()
    kw.setdefault("rebuild_min", 4)
    kw.setdefault("rebuild_fraction", 0.01)
    return LiveBM25(lock.write, **kw), lock


def test_mixed_tokens_cover_english_and_chinese() -> None:
    toks = mixed_tokenize("The Running shoes 跑步鞋")
    assert "the" not in toks and {"run", "shoe", "跑步", "步鞋", "鞋"} <= set(toks)


def test_bm25_delta_items_are_found_before_any_rebuild() -> None:
    kw, _ = _bm25(rebuild_min=1000)
    kw.fit(np.arange(3), ["cordless drill", "garden hose", "drill bits"])
    kw.add(7, "expandable garden hose")
    assert kw.delta_size == 1
    assert kw.search("expandable hose", 2).items.tolist()[0] == 7
    kw.remove(1)
    assert 1 not in kw.search("hose", 5).items.tolist()


def test_bm25_rebuilds_in_the_background_and_keeps_changes_made_meanwhile() -> None:
    kw, lock = _bm25()
    kw.fit(np.arange(4), ["red apple", "green pear", "yellow banana", "orange"])
    gate = threading.Event()
    real_build = kw._build

    def slow_build(snapshot: dict[int, str]) -> object:
        gate.wait(5)  # hold the rebuild until the test has made more changes
        return real_build(snapshot)

    kw._build = slow_build  # type: ignore[method-assign]
    with lock.write():
        for i in range(10, 15):  # crosses rebuild_min: a rebuild starts
            kw.add(i, f"fruit basket {i}")
        assert kw._ops is not None
        kw.add(20, "purple plum")   # made while the rebuild runs
        kw.remove(0)
    with lock.read():
        assert kw.search("plum", 1).items.tolist() == [20]
    gate.set()
    kw.wait(5)
    assert kw.rebuilds == 1 and kw._ops is None
    assert kw.delta_size == 1  # the addition made during the rebuild was replayed into the new delta
    with lock.read():
        assert kw.search("plum", 1).items.tolist() == [20]
        assert 0 not in kw.search("apple", 5).items.tolist()
        assert set(kw.search("fruit basket", 10).items.tolist()) == set(range(10, 15))


def test_bm25_synchronous_rebuild() -> None:
    kw, lock = _bm25(background=False)
    kw.fit(np.arange(2), ["alpha", "beta"])
    with lock.write():
        for i in range(2, 9):
            kw.add(i, f"gamma {i}")
    assert kw.rebuilds >= 1 and len(kw) == 9
    assert kw.search("gamma", 10).items.size == 7


# --- popularity and profiles -------------------------------------------------------------------
def test_popularity_decays_with_time() -> None:
    pop = Popularity(half_life_s=10.0)
    for _ in range(4):
        pop.add(1, 1.0, t=0.0)       # four old events
    pop.add(2, 1.0, t=25.0)           # one event 2.5 half-lives later: 2^2.5 = 5.66 > 4
    assert pop.top(2)[0].tolist() == [2, 1]
    assert pop.score(2) / pop.score(1) == pytest.approx(2 ** 2.5 / 4)
    pop.add(3, 1.0, t=10_000.0)       # far in the future: the reference time moves, no overflow
    assert np.isfinite(pop.score(3)) and pop.top(1)[0].tolist() == [3]


def test_popularity_filters_and_pool() -> None:
    pop = Popularity(pool=2)
    for item, n in ((0, 5), (1, 4), (2, 3), (3, 2)):
        for _ in range(n):
            pop.add(item, 1.0, t=0.0)
    allowed = np.array([True, False, True, True])
    assert pop.top(3, exclude={2}, allowed=allowed)[0].tolist() == [0, 3]  # past the pool of 2
    pop.remove_item(0)
    assert pop.top(1)[0].tolist() == [1]


def test_profile_is_incremental_recency_mean() -> None:
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((6, 8)).astype(np.float32)
    p = UserProfiles(dim=8, half_life=2.0)
    weights = [1.0, 2.0, 1.0, 4.0, 0.0, 3.0]  # a zero-weight event is seen but adds nothing
    for i, w in enumerate(weights):
        p.apply("u", i, vecs[i], weight=w, consumed=True)
    used = [i for i, w in enumerate(weights) if w > 0]
    decay = 2.0 ** (-np.arange(len(used))[::-1] / 2.0)
    expected = (decay * np.array([weights[i] for i in used])) @ vecs[used]
    np.testing.assert_allclose(p.profile("u"), expected / np.linalg.norm(expected), rtol=1e-5)
    assert p.seen("u") == set(range(6)) and p.n_events("u") == 6
    assert p.profile("nobody") is None and p.seen("nobody") == set()


# --- lock and fusion ---------------------------------------------------------------------------
def test_rwlock_readers_share_writers_exclude() -> None:
    lock = RWLock()
    inside = []
    both_in = threading.Barrier(2, timeout=5)

    def reader() -> None:
        with lock.read():
            inside.append(1)
            both_in.wait()  # only passes when two readers are inside at once

    ts = [threading.Thread(target=reader) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(inside) == 2

    order = []

    def writer() -> None:
        with lock.write():
            order.append("w")

    with lock.read():
        w = threading.Thread(target=writer)
        w.start()
        time.sleep(0.05)
        order.append("r-done")  # the writer waits for the reader
    w.join(5)
    assert order == ["r-done", "w"]


def test_rrf_weights_and_duplicates() -> None:
    fused = rrf_merge({"a": (np.array([1, 2, 1]), np.array([3.0, 2.0, 1.0])), "b": (np.array([2]), np.array([9.0]))},
                      {"a": 1.0, "b": 3.0}, k_rrf=1.0)
    assert [f.slot for f in fused] == [2, 1]
    assert fused[0].score == pytest.approx(1 / 3 + 3 / 2) and fused[0].sources == ("a", "b")
    assert fused[1].channel_ranks == {"a": 1}  # the repeated slot keeps its best rank


# --- item texts and model versions -------------------------------------------------------------
def test_item_texts_follow_the_template() -> None:
    recs = [ItemRecord("1", title="Trail shoe", categories=("shoes", "outdoor"), text="Grippy sole.",
                       attributes={"brand": "Fox", "price": 99.0}),
            ItemRecord("2", title="Plain mug")]
    assert item_texts(recs) == ["Trail shoe. shoes, outdoor. Brand: Fox. Grippy sole.", "Plain mug."]
    assert item_texts(recs, "{title} ({price})") == ["Trail shoe (99.0)", "Plain mug ()"]


def test_model_versions_round_trip(tmp_path: Path) -> None:
    events = [EventRecord(f"u{u}", f"i{(u + j) % 6}", "view", 1.0, float(j)) for u in range(8) for j in range(3)]
    events.append(EventRecord("u0", "i5", "impression"))
    ds = events_dataset(events, kinds=("view",))
    assert len(ds.interactions) == 24 and ds.n_items == 6
    v1 = train_version(ds, tmp_path, "ease", {"lam": 1.0})
    v2 = train_version(ds, tmp_path, "popular")
    assert list_versions(tmp_path) == [v1, v2]
    m = load_version(tmp_path)
    assert m.version == v2 and m.name == "popular"
    ids, scores = m.candidates("u0", ["i0", "i1"], k=3)
    assert "i0" not in ids and "i1" not in ids and len(ids) == 3
    assert np.all(np.diff(scores) <= 0)
    ids, _ = load_version(tmp_path, v1).candidates("stranger", [], k=3)  # EASE: no history, no evidence
    assert ids == []
    ids, _ = load_version(tmp_path, v1).candidates("stranger", ["i2"], k=3)  # folded in from history
    assert len(ids) == 3 and "i2" not in ids
    with pytest.raises(FileNotFoundError):
        load_version(tmp_path / "empty")


# --- ranking log -------------------------------------------------------------------------------
class _BatchStore:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def log_rankings(self, recs: list[RankingRecord]) -> None:
        self.calls.append(len(recs))


class _OneByOneStore:
    def __init__(self) -> None:
        self.ids: list[str] = []

    def log_ranking(self, rec: RankingRecord) -> None:
        self.ids.append(rec.ranking_id)


def _rec(i: int) -> RankingRecord:
    return RankingRecord(f"r{i}", "u", "recommend", ("a", "b"))


def test_ranking_log_writes_in_batches() -> None:
    store = _BatchStore()
    rl = RankingLog(store, linger_s=0.2)  # type: ignore[arg-type]
    for i in range(50):
        rl.put(_rec(i))
    assert rl.flush(5)
    assert sum(store.calls) == 50 and len(store.calls) <= 2  # one transaction, not 50
    rl.close()

    plain = _OneByOneStore()
    rl = RankingLog(plain, linger_s=0.01)  # type: ignore[arg-type]
    for i in range(5):
        rl.put(_rec(i))
    rl.close()  # close writes what is still queued
    assert plain.ids == [f"r{i}" for i in range(5)]


def test_ranking_log_drops_instead_of_blocking() -> None:
    gate = threading.Event()

    class Slow(_BatchStore):
        def log_rankings(self, recs: list[RankingRecord]) -> None:
            gate.wait(5)
            super().log_rankings(recs)

    store = Slow()
    rl = RankingLog(store, maxsize=3, linger_s=0.0)  # type: ignore[arg-type]
    rl.put(_rec(0))
    time.sleep(0.1)  # the writer took r0 and is stuck in the store
    t = time.perf_counter()
    for i in range(1, 10):
        rl.put(_rec(i))
    assert time.perf_counter() - t < 1.0 and rl.dropped == 6
    gate.set()
    rl.close()
    assert sum(store.calls) == 4


def test_sqlite_store_logs_rankings_in_one_batch() -> None:
    from lmrec.stores.sql import open_store

    store = open_store("sqlite://")
    assert store.log_rankings([_rec(1), _rec(2)]) == 2
    assert store.log_rankings([_rec(2), _rec(3)]) == 1  # an id already stored is skipped
    assert store.get_ranking("r3").item_ids == ("a", "b")
    with pytest.raises(ValueError, match=r"rankings\[1\]\.ranking_id"):
        store.log_rankings([_rec(4), RankingRecord("", "u", "recommend", ())])
    assert store.get_ranking("r4") is None  # nothing of a bad batch is written
    store.close()


class _FactorScores:
    """A stand-in factor model: score(users) = U[users] @ V.T (no 'weights' / 'similarity')."""

    def __init__(self, u: np.ndarray, v: np.ndarray) -> None:
        self.u, self.v = u, v

    def score(self, users: list[int]) -> np.ndarray:
        return self.u[users] @ self.v.T


@pytest.mark.parametrize("k", [1, 5, 40, 400])
def test_cf_candidates_of_a_factor_model_equal_the_brute_force_top_k(k: int) -> None:
    """The selection-first shortcut returns exactly the full sort's top k (consumed items and
    scores <= 0 removed, ties by lower index)."""
    from lmrec.data.dataset import IdMap
    from lmrec.serving.cf import CFModel

    rng = np.random.default_rng(3)
    n_items = 300
    u, v = rng.normal(size=(4, 8)).astype(np.float32), rng.normal(size=(n_items, 8)).astype(np.float32)
    v[10] = v[11]  # a tie
    items = IdMap([f"i{j:03d}" for j in range(n_items)])
    cf = CFModel("v1", "fake", _FactorScores(u, v), IdMap(["a", "b", "c", "d"]), items, {})  # type: ignore[arg-type]
    for user in range(4):
        scores = (u[user] @ v.T).astype(np.float32)
        consumed = [f"i{j:03d}" for j in np.argsort(-scores)[:7:2]] + ["not-in-the-model"]
        drop = {items.index(c) for c in consumed[:-1]}
        order = [j for j in np.lexsort((np.arange(n_items), -scores)) if j not in drop and scores[j] > 0][:k]
        got_ids, got_scores = cf.candidates("abcd"[user], consumed, k)
        assert got_ids == [f"i{j:03d}" for j in order]
        np.testing.assert_allclose(got_scores, scores[order], rtol=1e-6)


class _FactorModel(_FactorScores):
    """A stand-in with the factor arrays exposed, as ALS / BPR have: served through faiss."""

    def __init__(self, u: np.ndarray, v: np.ndarray) -> None:
        super().__init__(u, v)
        self.user_factors, self.item_factors = u, v


@pytest.mark.parametrize("k", [1, 5, 40, 400])
def test_cf_candidates_through_the_factor_index_equal_numpy_scoring(k: int) -> None:
    pytest.importorskip("faiss")
    from lmrec.data.dataset import IdMap
    from lmrec.serving.cf import CFModel

    rng = np.random.default_rng(4)
    u, v = rng.normal(size=(3, 16)).astype(np.float32), rng.normal(size=(500, 16)).astype(np.float32)
    items, users = IdMap([f"i{j:03d}" for j in range(500)]), IdMap(["a", "b", "c"])
    fast = CFModel("v1", "fake", _FactorModel(u, v), users, items, {})  # type: ignore[arg-type]
    slow = CFModel("v1", "fake", _FactorScores(u, v), users, items, {})  # type: ignore[arg-type]
    assert fast.factor_index is not None and slow.factor_index is None
    for user in "abc":
        consumed = [f"i{j:03d}" for j in rng.choice(500, 20, replace=False)]
        got_ids, got_scores = fast.candidates(user, consumed, k)
        want_ids, want_scores = slow.candidates(user, consumed, k)
        assert got_ids == want_ids and len(got_ids) == min(k, int((want_scores > 0).sum()) or len(got_ids))
        np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5, atol=1e-6)
