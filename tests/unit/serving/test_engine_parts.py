"""The engine's building blocks on their own: keyword index rebuilds, the readers-writer lock,
item texts, the store as a data set and pipeline versions."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lmrec.serving.catalog import item_texts
from lmrec.serving.keyword import LiveBM25, mixed_tokenize
from lmrec.serving.ranking import RankingLog
from lmrec.serving.versions import list_versions, load_version, store_dataset, train_version
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


# --- lock ------------------------------------------------------------------------------------------
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


# --- item texts and model versions -------------------------------------------------------------
def test_item_texts_follow_the_template() -> None:
    recs = [ItemRecord("1", title="Trail shoe", categories=("shoes", "outdoor"), text="Grippy sole.",
                       attributes={"brand": "Fox", "price": 99.0}),
            ItemRecord("2", title="Plain mug")]
    assert item_texts(recs) == ["Trail shoe. shoes, outdoor. Brand: Fox. Grippy sole.", "Plain mug."]
    assert item_texts(recs, "{title} ({price})") == ["Trail shoe (99.0)", "Plain mug ()"]


def _store_with_events(tmp_path: Path) -> object:
    from lmrec.stores.sql import open_store

    store = open_store(f"sqlite:///{tmp_path / 'v.db'}")
    store.upsert_items([ItemRecord(f"{i}", title=f"item {i}", categories=("c",)) for i in (10, 2, 7, 1, 3, 5)])
    store.append_events([EventRecord(f"u{u}", f"{[10, 2, 7, 1, 3, 5][(u + j) % 6]}", "view", 1.0, float(j))
                         for u in range(8) for j in range(3)])
    store.append_events([EventRecord("u0", "5", "impression"), EventRecord("u1", "gone", "view", 1.0, 9.0)])
    return store


def test_store_dataset_orders_ids_like_the_loaders(tmp_path: Path) -> None:
    store = _store_with_events(tmp_path)
    ds, last = store_dataset(store, kinds=("view",), template="{title}")
    assert last == 26 and len(ds.interactions) == 25  # the impression is stored, not learned from
    assert ds.items.ids == ["1", "10", "2", "3", "5", "7", "gone"]  # as IdMap sorts: not all ids are numbers
    gone = ds.items.index("gone")
    assert not ds.item_table.available[gone] and ds.item_table.available[ds.items.index("7")]
    assert ds.users.ids == [f"u{u}" for u in range(8)] and ds.template == "{title}"
    store.close()


def test_pipeline_versions_round_trip(tmp_path: Path) -> None:
    store = _store_with_events(tmp_path)
    ds, last = store_dataset(store, kinds=("view",), template="{title}")
    store.close()
    spec_over = {"encoder": "fake"}
    v1 = train_version(tmp_path / "models", ds, config="serve-default", overrides=spec_over, last_seq=last)
    v2 = train_version(tmp_path / "models", ds, config="serve-default", overrides=spec_over, last_seq=last)
    assert list_versions(tmp_path / "models") == [v1.name, v2.name]
    assert v1.meta["last_seq"] == last and v1.meta["n_events"] == 25
    loaded = load_version(tmp_path / "models")
    assert loaded.name == v2.name
    u = ds.users.index("u0")
    assert loaded.pipeline.recommend(u, 3).items.tolist() == v2.pipeline.recommend(u, 3).items.tolist()
    with pytest.raises(FileNotFoundError, match="not found"):
        load_version(tmp_path / "models", "no-such-version")
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
