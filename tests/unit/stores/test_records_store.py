"""Record stores: one conformance suite run against every backend (SQLite file, SQLite in
memory, PostgreSQL), plus URL handling and schema versioning.

PostgreSQL tests use LMREC_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test),
each in a schema of its own that is dropped afterwards, so parallel workers never collide;
they skip with a message when the server is unreachable.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from lmrec.stores import sql
from lmrec.stores.records import (EVENT_KINDS, ApiKeyRecord, EventRecord, ItemRecord, RankingRecord, RecordStore,
                                  UserRecord)
from lmrec.stores.sql import PostgresStore, SQLiteStore, open_store

PG_URL = os.environ.get("LMREC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@cache
def postgres_unreachable() -> str | None:
    """Why PostgreSQL cannot be used (None when it can)."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'lmrec[serve]')"
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.OperationalError as e:
        return f"PostgreSQL unreachable at {PG_URL} (set LMREC_TEST_POSTGRES_URL): {str(e).strip()[:200]}"
    return None


def drop_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql as pgsql

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pgsql.Identifier(schema)))


def with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


@dataclass
class Backend:
    """A place to open stores: `open()` gives a new connection to the same data."""

    name: str
    url: str
    persistent: bool

    def open(self) -> RecordStore:
        return open_store(self.url)


@pytest.fixture(params=["sqlite-file", "sqlite-memory", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite-file":
        yield Backend("sqlite-file", f"sqlite:///{tmp_path}/records.db", True)
    elif request.param == "sqlite-memory":
        yield Backend("sqlite-memory", "sqlite://", False)
    else:
        reason = postgres_unreachable()
        if reason:
            pytest.skip(reason)
        schema = f"lmrec_test_{uuid.uuid4().hex[:12]}"
        try:
            yield Backend("postgresql", with_schema(PG_URL, schema), True)
        finally:
            drop_schema(schema)


@pytest.fixture
def store(backend: Backend) -> Iterator[RecordStore]:
    s = backend.open()
    yield s
    s.close()


def ev(i: int, user: str | None = None, kind: str = "view") -> EventRecord:
    return EventRecord(user or f"u{i % 3}", f"i{i}", kind, float(i), 1000.0 + i, None)


def fields(e: EventRecord) -> tuple:
    return (e.user_id, e.item_id, e.kind, e.value, e.timestamp, e.ranking_id)


class TestRecordStoreConformance:
    """The contract every backend honours."""

    def test_is_a_record_store(self, store: RecordStore) -> None:
        assert isinstance(store, RecordStore)
        assert store.count_events() == 0 and store.last_seq() == 0 and store.count_items() == 0
        assert list(store.events()) == [] and list(store.items()) == []

    def test_append_returns_increasing_seqs_and_reads_back_in_order(self, store: RecordStore) -> None:
        first = [EventRecord("alice", "i1", "click", 1.0, 10.5, "r1"), EventRecord("bob", "i2", "rating", 4.5, 11.0)]
        second = [ev(i) for i in range(5)]
        s1, s2 = store.append_events(first), store.append_events(second)
        assert len(s1) == 2 and len(s2) == 5
        seqs = s1 + s2
        assert all(a < b for a, b in zip(seqs, seqs[1:]))
        assert store.last_seq() == seqs[-1] and store.count_events() == 7
        got = list(store.events())
        assert [e.seq for e in got] == seqs
        assert [fields(e) for e in got] == [fields(e) for e in first + second]
        assert got[0].ranking_id == "r1" and got[1].ranking_id is None
        assert store.append_events([]) == []
        assert store.count_events() == 7

    def test_every_kind_round_trips(self, store: RecordStore) -> None:
        store.append_events([EventRecord("u", f"i{k}", k) for k in EVENT_KINDS])
        assert [e.kind for e in store.events()] == list(EVENT_KINDS)

    def test_filter_by_user_after_seq_and_limit(self, store: RecordStore, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(sql, "PAGE_SIZE", 4)  # several pages per read
        seqs = store.append_events([ev(i) for i in range(30)])
        assert [e.seq for e in store.events(after_seq=seqs[9])] == seqs[10:]
        u1 = [s for i, s in enumerate(seqs) if i % 3 == 1]
        assert [e.seq for e in store.events(user_id="u1")] == u1
        assert all(e.user_id == "u1" for e in store.events(user_id="u1"))
        assert [e.seq for e in store.events(user_id="u1", after_seq=u1[2], limit=5)] == u1[3:8]
        assert [e.seq for e in store.events(limit=9)] == seqs[:9]
        assert list(store.events(limit=0)) == []
        assert list(store.events(after_seq=seqs[-1])) == []
        assert list(store.events(user_id="nobody")) == []
        with pytest.raises(ValueError, match="limit"):
            list(store.events(limit=-1))

    def test_bad_event_fails_the_whole_batch(self, store: RecordStore) -> None:
        store.append_events([ev(0)])
        bad = [ev(1), ev(2), EventRecord("u", "i", "like"), ev(3)]
        with pytest.raises(ValueError, match=r"events\[2\]\.kind.*'like'"):
            store.append_events(bad)
        for event, field in [(EventRecord("", "i"), "user_id"), (EventRecord("u", " "), "item_id"),
                             (EventRecord("u", "i", value=math.nan), "value"),
                             (EventRecord("u", "i", timestamp=math.inf), "timestamp"),
                             (EventRecord("u", "i", ranking_id=""), "ranking_id"),
                             (EventRecord("u", "i", value="3"), "value")]:  # type: ignore[arg-type]
            with pytest.raises(ValueError, match=rf"events\[1\]\.{field}"):
                store.append_events([ev(4), event])
        assert [e.item_id for e in store.events()] == ["i0"]

    def test_database_failure_mid_batch_rolls_back(self, store: RecordStore,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        """With the Python checks bypassed, the schema's own constraint rejects the third row:
        the two rows before it must not be committed either."""
        before = store.append_events([ev(0)])
        monkeypatch.setattr(sql, "check_event", lambda e, where="event": None)
        with pytest.raises(Exception) as info:
            store.append_events([ev(1), ev(2), EventRecord("", "i9"), ev(3)])
        assert "user_id" in str(info.value) or "check" in str(info.value).lower()
        assert store.count_events() == 1 and store.last_seq() == before[-1]
        after = store.append_events([ev(5), ev(6)])  # the store still works and seqs keep increasing
        assert after[0] > before[-1]
        assert [e.item_id for e in store.events()] == ["i0", "i5", "i6"]

    def test_item_upsert_update_delete_and_re_add(self, store: RecordStore) -> None:
        a = ItemRecord("a", "Alpha", "first item", ("books", "sci-fi"), {"price": 9.5, "tags": ["x"], "n": None},
                       True, 100.0, 100.0)
        store.upsert_items([a, ItemRecord("b", "Beta", created_at=101.0, updated_at=101.0)])
        assert store.get_item("a") == a and store.count_items() == 2
        assert store.get_item("missing") is None
        updated = ItemRecord("a", "Alpha 2", "", ("books",), {"price": 8.0}, False, 999.0, 200.0)
        store.upsert_items([updated])
        got = store.get_item("a")
        assert got is not None and got.title == "Alpha 2" and got.available is False
        assert got.categories == ("books",) and got.attributes == {"price": 8.0}
        assert got.created_at == 100.0 and got.updated_at == 200.0  # a live item keeps its creation time
        assert store.delete_item("a") is True
        assert store.get_item("a") is None and store.count_items() == 1
        assert [i.item_id for i in store.items()] == ["b"]
        assert store.delete_item("a") is False and store.delete_item("never") is False
        back = ItemRecord("a", "Alpha 3", created_at=300.0, updated_at=300.0)
        store.upsert_items([back])
        assert store.get_item("a") == back and store.count_items() == 2

    def test_items_listed_in_id_order_across_pages(self, store: RecordStore,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(sql, "PAGE_SIZE", 3)
        ids = ["b", "a", "Z", "é", "a1", "10", "9", "ä", "c"]
        store.upsert_items([ItemRecord(i, title=f"t{i}") for i in ids])
        store.delete_item("c")
        expected = sorted(set(ids) - {"c"}, key=lambda s: s.encode())
        assert [i.item_id for i in store.items()] == expected
        assert store.count_items() == len(expected)

    def test_item_validation_names_the_field(self, store: RecordStore) -> None:
        cases = [(ItemRecord(""), "item_id"), (ItemRecord("a", categories="books"), "categories"),  # type: ignore
                 (ItemRecord("a", attributes={"f": math.nan}), "attributes"),
                 (ItemRecord("a", attributes={"f": object()}), "attributes"),
                 (ItemRecord("a", available=1), "available"),  # type: ignore[arg-type]
                 (ItemRecord("a", title=None), "title")]  # type: ignore[arg-type]
        for item, field in cases:
            with pytest.raises(ValueError, match=rf"items\[1\]\.{field}"):
                store.upsert_items([ItemRecord("ok"), item])
        assert store.count_items() == 0

    def test_users(self, store: RecordStore) -> None:
        assert store.get_user("u1") is None
        store.upsert_user(UserRecord("u1", {"lang": "zh", "age": 30}, 5.0))
        assert store.get_user("u1") == UserRecord("u1", {"lang": "zh", "age": 30}, 5.0)
        store.upsert_user(UserRecord("u1", {"lang": "en"}, 6.0))  # attributes are replaced, not merged
        assert store.get_user("u1") == UserRecord("u1", {"lang": "en"}, 6.0)
        store.upsert_user(UserRecord("u2"))
        assert store.get_user("u2") == UserRecord("u2") and store.get_user("u1").attributes == {"lang": "en"}
        with pytest.raises(ValueError, match=r"user\.user_id"):
            store.upsert_user(UserRecord(""))

    def test_api_keys(self, store: RecordStore) -> None:
        k1 = ApiKeyRecord("lmk_aaa", "ingest", ("write",), "sha256$x", 1.0)
        k2 = ApiKeyRecord("lmk_bbb", "admin", ("read", "write", "admin"), "sha256$y", 2.0)
        store.add_api_key(k2)
        store.add_api_key(k1)
        assert store.get_api_key("lmk_aaa") == k1 and store.get_api_key("nope") is None
        assert store.api_keys() == [k1, k2]  # oldest first
        with pytest.raises(ValueError, match=r"api_key\.key_id.*already exists"):
            store.add_api_key(ApiKeyRecord("lmk_aaa", "again", ("read",), "h"))
        assert store.get_api_key("lmk_aaa") == k1
        assert store.revoke_api_key("lmk_aaa") is True
        assert store.get_api_key("lmk_aaa").revoked is True
        assert store.revoke_api_key("lmk_aaa") is False and store.revoke_api_key("nope") is False
        assert [k.revoked for k in store.api_keys()] == [True, False]
        with pytest.raises(ValueError, match=r"api_key\.scopes\[1\].*'root'"):
            store.add_api_key(ApiKeyRecord("lmk_c", "x", ("read", "root"), "h"))
        with pytest.raises(ValueError, match=r"api_key\.key_hash"):
            store.add_api_key(ApiKeyRecord("lmk_c", "x", ("read",), ""))
        assert len(store.api_keys()) == 2

    def test_rankings(self, store: RecordStore) -> None:
        r = RankingRecord("r1", "u1", "recommend", ("i3", "i1", "i2"), 50.0, {"model": "ease@3", "k": 3})
        anon = RankingRecord("r2", None, "search", (), 51.0, {"query_hash": "ab12"})
        store.log_ranking(r)
        store.log_ranking(anon)
        assert store.get_ranking("r1") == r and store.get_ranking("r2") == anon
        assert store.get_ranking("r3") is None
        with pytest.raises(ValueError, match=r"ranking\.ranking_id.*already exists"):
            store.log_ranking(RankingRecord("r1", "u2", "search", ("x",)))
        assert store.get_ranking("r1") == r
        with pytest.raises(ValueError, match=r"ranking\.item_ids\[1\]"):
            store.log_ranking(RankingRecord("r4", "u1", "search", ("a", "")))
        with pytest.raises(ValueError, match=r"ranking\.context"):
            store.log_ranking(RankingRecord("r4", "u1", "search", ("a",), context={"x": {1, 2}}))

    def test_reopen_finds_everything(self, backend: Backend) -> None:
        if not backend.persistent:
            pytest.skip("an in-memory store has nothing to reopen")
        with backend.open() as s:
            seqs = s.append_events([ev(i) for i in range(5)])
            s.upsert_items([ItemRecord("a", "A", categories=("c",)), ItemRecord("b", "B")])
            s.delete_item("b")
            s.upsert_user(UserRecord("u1", {"x": 1}))
            s.add_api_key(ApiKeyRecord("k", "n", ("read",), "h"))
            s.revoke_api_key("k")
            s.log_ranking(RankingRecord("r", "u1", "similar", ("a",)))
        with backend.open() as s:
            assert [e.seq for e in s.events()] == seqs and s.last_seq() == seqs[-1]
            assert [i.item_id for i in s.items()] == ["a"] and s.get_item("a").categories == ("c",)
            assert s.get_user("u1").attributes == {"x": 1}
            assert s.get_api_key("k").revoked is True
            assert s.get_ranking("r").item_ids == ("a",)
            assert s.append_events([ev(9)])[0] > seqs[-1]

    def test_concurrent_appends_lose_nothing(self, store: RecordStore) -> None:
        n_threads, n_batches, size = 4, 15, 4
        acked: dict[int, list[int]] = {}
        errors: list[BaseException] = []

        def writer(t: int) -> None:
            try:
                mine = []
                for b in range(n_batches):
                    batch = [EventRecord(f"t{t}", f"b{b}-{j}", "click", float(j), float(b)) for j in range(size)]
                    mine += store.append_events(batch)
                acked[t] = mine
            except BaseException as e:  # surfaced below: an exception in a thread would vanish
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        everything = list(store.events())
        total = n_threads * n_batches * size
        assert store.count_events() == total and len(everything) == total
        assert sorted(s for seqs in acked.values() for s in seqs) == [e.seq for e in everything]
        for t in range(n_threads):  # each thread's events are stored in its own order, batches unsplit
            mine = list(store.events(user_id=f"t{t}"))
            assert [e.seq for e in mine] == acked[t]
            assert [e.item_id for e in mine] == [f"b{b}-{j}" for b in range(n_batches) for j in range(size)]

    def test_tailing_reader_misses_nothing_with_two_writers(self, backend: Backend) -> None:
        """Two connections append concurrently while a reader tails `events(after_seq=...)`:
        seq order is commit order, so the tail never skips an event committed late."""
        if not backend.persistent:
            pytest.skip("needs two connections to one database")
        stores = [backend.open() for _ in range(3)]
        done = threading.Event()
        seen: list[int] = []

        def write(s: RecordStore, name: str) -> None:
            for b in range(20):
                s.append_events([EventRecord(name, f"{b}-{j}") for j in range(3)])

        def tail() -> None:
            last = 0
            while True:
                finished = done.is_set()
                for e in stores[2].events(after_seq=last):
                    seen.append(e.seq)
                    last = e.seq
                if finished:
                    return

        writers = [threading.Thread(target=write, args=(stores[i], f"w{i}")) for i in range(2)]
        reader = threading.Thread(target=tail)
        reader.start()
        for w in writers:
            w.start()
        for w in writers:
            w.join()
        done.set()
        reader.join()
        try:
            assert seen == [e.seq for e in stores[2].events()] and len(seen) == 120
        finally:
            for s in stores:
                s.close()

    def test_closed_store_refuses_calls(self, backend: Backend) -> None:
        s = backend.open()
        s.close()
        s.close()  # twice is fine
        with pytest.raises(RuntimeError, match="closed"):
            s.append_events([ev(0)])
        with pytest.raises(RuntimeError, match="closed"):
            s.count_events()


class TestOpenStore:
    def test_dispatch_by_scheme(self, tmp_path: Path) -> None:
        with open_store("sqlite://") as s:
            assert isinstance(s, SQLiteStore) and s.path is None
        with open_store(f"sqlite:///{tmp_path}/sub/dir/x.db") as s:  # parent folders are created
            assert isinstance(s, SQLiteStore) and s.path == tmp_path / "sub" / "dir" / "x.db"
            assert s.path.exists()

    @pytest.mark.parametrize("url", ["mysql://root@localhost/db", "/tmp/x.db", "file.db", "redis://localhost"])
    def test_unknown_scheme_names_url_and_supported(self, url: str) -> None:
        with pytest.raises(ValueError) as info:
            open_store(url)
        assert url in str(info.value) and "sqlite://" in str(info.value) and "postgresql://" in str(info.value)

    def test_bad_sqlite_url(self) -> None:
        with pytest.raises(ValueError, match="supported schemes"):
            open_store("sqlite:/x.db")
        with pytest.raises(ValueError, match="bad sqlite URL"):
            open_store("sqlite://host/x.db")

    def test_password_is_redacted(self) -> None:
        with pytest.raises(ValueError) as info:
            open_store("mysql://bob:s3cret@db/x")
        assert "s3cret" not in str(info.value) and "bob:***@db" in str(info.value)

    def test_sqlite_file_uses_wal_and_full_sync(self, tmp_path: Path) -> None:
        with open_store(f"sqlite:///{tmp_path}/w.db") as s:
            assert isinstance(s, SQLiteStore)
            assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL

    def test_newer_schema_version_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "v.db"
        open_store(f"sqlite:///{path}").close()
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT version FROM schema_version").fetchall() == [(sql.SCHEMA_VERSION,)]
            conn.execute("UPDATE schema_version SET version = ?", (sql.SCHEMA_VERSION + 1,))
        with pytest.raises(RuntimeError, match="newer lmrec"):
            open_store(f"sqlite:///{path}")

    def test_postgres_schema_parameter(self) -> None:
        reason = postgres_unreachable()
        if reason:
            pytest.skip(reason)
        schema = f"lmrec_test_{uuid.uuid4().hex[:12]}"
        try:
            with open_store(with_schema(PG_URL, schema)) as s:
                assert isinstance(s, PostgresStore) and s.schema == schema
                s.append_events([ev(0)])
            import psycopg

            with psycopg.connect(PG_URL) as conn:
                n = conn.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s",
                                 (schema,)).fetchone()[0]
            assert n == 8  # schema_version, events, event_ids, items, users, api_keys, rankings, changes
        finally:
            drop_schema(schema)
        with pytest.raises(ValueError, match="schema"):
            open_store(with_schema(PG_URL, ""))

    def test_postgres_reconnects_after_the_server_drops_the_connection(self) -> None:
        reason = postgres_unreachable()
        if reason:
            pytest.skip(reason)
        import psycopg

        schema = f"lmrec_test_{uuid.uuid4().hex[:12]}"

        def terminate(s: PostgresStore) -> None:
            with psycopg.connect(PG_URL, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (s._conn.info.backend_pid,))

        try:
            with open_store(with_schema(PG_URL, schema)) as s:
                assert isinstance(s, PostgresStore)
                first = s.append_events([ev(0)])
                terminate(s)
                assert s.count_events() == 1  # a read retries on a fresh connection
                terminate(s)
                second = s.append_events([ev(1), ev(2)])  # so does a write that had not begun
                assert second[0] > first[0] and [e.item_id for e in s.events()] == ["i0", "i1", "i2"]
        finally:
            drop_schema(schema)
