"""Several workers over one store (`lmrec.serving.follower`): what one writes, the others serve
within a second. Two engines in one process over the same PostgreSQL schema (and a SQLite file),
each following the store on its own thread; then `lmrec serve --workers 2` as real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmrec.serving.engine import Engine, EngineConfig
from lmrec.stores.records import EventRecord, ItemRecord

PG_URL = os.environ.get("LMREC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
FOLLOW_S = 0.1


def pg_schema_url() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'lmrec[serve]')")
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.OperationalError as e:
        pytest.skip(f"PostgreSQL unreachable at {PG_URL} (set LMREC_TEST_POSTGRES_URL): {str(e).strip()[:200]}")
    schema = f"lmrec_workers_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["postgresql", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/home/lmrec.db"
    else:
        yield from pg_schema_url()


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from pg_schema_url()


def catalog(n: int = 12) -> list[ItemRecord]:
    genres = ["jazz", "opera", "techno"]
    return [ItemRecord(str(i), title=f"{genres[i % 3]} record {i}", categories=(genres[i % 3],)) for i in range(n)]


def within(seconds: float, check: Callable[[], Any], what: str) -> float:
    """Seconds until `check()` is truthy; fails naming `what` after `seconds`."""
    t0 = time.monotonic()
    while True:
        if check():
            return time.monotonic() - t0
        assert time.monotonic() - t0 < seconds, f"{what}: not seen within {seconds} s"
        time.sleep(0.02)


@pytest.fixture
def pair(tmp_path: Path, store_url: str) -> Iterator[tuple[Engine, Engine]]:
    home = tmp_path / "home"
    cfg = EngineConfig(home=home, store_url=store_url, encoder="fake", index="flat", follow_interval_s=FOLLOW_S,
                       gc_freeze=False)
    a = Engine.open(cfg)
    a.upsert_items(catalog())
    b = Engine.open(cfg)
    try:
        yield a, b
    finally:
        b.close()
        a.close()


def rec_ids(eng: Engine, user: str, k: int = 12) -> list[str]:
    return [i.item_id for i in eng.recommend(user, k=k).items]


def history_len(eng: Engine, user: str) -> int:
    pipe = eng.pipeline
    u = pipe.dataset.users.get(user)
    return 0 if u < 0 else len(pipe.history.items(u))


def test_writes_through_one_engine_reach_the_other_within_a_second(pair: tuple[Engine, Engine]) -> None:
    a, b = pair
    assert a.worker_id != b.worker_id
    assert sorted(rec_ids(b, "u1")) == sorted(r.item_id for r in catalog())
    # events: B's list drops what u1 saw through A; its pipeline holds each event once
    a.ingest([EventRecord("u1", i, "view", 1.0, 1000.0 + n) for n, i in enumerate(["0", "3", "6"])])
    within(1.0, lambda: not {"0", "3", "6"} & set(rec_ids(b, "u1")), "events posted through A in B's list")
    assert history_len(a, "u1") == history_len(b, "u1") == 3
    assert a.stats()["applied_seq"] == b.stats()["applied_seq"] == a.store.last_seq()
    # B's own events interleave with A's: each engine applies every event exactly once
    b.ingest([EventRecord("u1", "9", "view", 1.0, 1004.0)])
    a.ingest([EventRecord("u1", "1", "view", 1.0, 1005.0)])
    within(1.0, lambda: history_len(a, "u1") == history_len(b, "u1") == 5, "interleaved events in both")
    time.sleep(3 * FOLLOW_S)
    assert history_len(a, "u1") == history_len(b, "u1") == 5
    assert a.stats()["n_events"] == b.stats()["n_events"] == 5
    # a new item: searchable and recommendable in B
    a.upsert_items([ItemRecord("new", title="zebra lantern", categories=("jazz",))])
    within(1.0, lambda: [i.item_id for i in b.search("zebra lantern", k=1).items] == ["new"], "new item in B's search")
    assert b.get_item("new") is not None and "new" in rec_ids(b, "u2", k=13)
    # an update through A (the new title) and a delete
    a.upsert_items([ItemRecord("new", title="walrus teapot", categories=("jazz",))])
    within(1.0, lambda: b.get_item("new").title == "walrus teapot", "updated item in B")
    assert [i.item_id for i in b.search("walrus teapot", k=1).items] == ["new"]
    assert a.delete_item("new")
    within(1.0, lambda: b.get_item("new") is None, "deleted item gone from B")
    assert "new" not in [i.item_id for i in b.search("walrus teapot", k=5).items] + rec_ids(b, "u2", k=13)
    # a user erased through A is forgotten by B
    assert a.delete_user("u1") is not None
    within(1.0, lambda: history_len(b, "u1") == 0, "erased user forgotten by B")
    info = b.stats()["worker"]["follower"]
    assert info["errors"] == 0 and info["applied"]["items"] >= 3 and info["applied"]["users"] == 1


def test_a_version_activated_through_one_engine_is_served_by_the_other(pair: tuple[Engine, Engine]) -> None:
    a, b = pair
    a.ingest([EventRecord(f"u{n}", str((n * 5 + j) % 12), "view", 1.0, 1000.0 + j) for n in range(6) for j in range(4)])
    first = a.model_version
    assert b.model_version == first
    v2 = a.train()   # the engine's own config, fitted on the store and swapped in
    assert a.model_version == v2 != first
    within(5.0, lambda: b.model_version == v2, "the version trained through A served by B")
    within(1.0, lambda: rec_ids(a, "u0") == rec_ids(b, "u0"), "the same lists from both")
    a.reload(first)
    within(5.0, lambda: b.model_version == first, "the version reloaded through A served by B")
    # B's training announces to A the same way; one training at a time across the two
    v3 = b.train()
    within(5.0, lambda: a.model_version == v3, "the version trained through B served by A")
    # an A/B experiment started through A is served by B (same hashed buckets), and stopped
    a.start_experiment("ab", first, v3, split=0.5)
    within(5.0, lambda: (b.stats()["experiment"] or {}).get("name") == "ab", "A's experiment running in B")
    users = [f"u{n}" for n in range(20)]
    assert [a.recommend(u, k=3).model_version for u in users] == [b.recommend(u, k=3).model_version for u in users]
    assert {b.recommend(u, k=3).model_version for u in users} == {first, v3}
    a.stop_experiment()
    within(5.0, lambda: b.stats()["experiment"] is None, "A's experiment stopped in B")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_workers(home: Path, store_url: str, port: int, log: Path, workers: int = 2) -> Iterator[str]:
    env = {**os.environ, "LMREC_RATE_LIMIT_RPS": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "lmrec.cli.main", "serve", "--home", str(home), "--store-url", store_url,
           "--encoder", "fake", "--index", "flat", "--port", str(port), "--no-auth", "--log-level", "warning",
           "--workers", str(workers)]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def worker_client(base: str, others: set[str], deadline_s: float = 120.0) -> tuple[httpx.Client, str]:
    """A keep-alive client pinned to a ready worker whose id is not in `others` (each new
    connection lands on whichever worker accepts it)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline_s:
        client = httpx.Client(base_url=base, timeout=30)
        try:
            r = client.get("/admin/stats")
            if r.status_code == 200 and r.json().get("ready") and r.json()["worker"]["id"] not in others:
                wid = r.json()["worker"]["id"]
                assert client.get("/admin/stats").json()["worker"]["id"] == wid   # the connection stays on it
                return client, wid
        except httpx.TransportError:
            pass
        client.close()
        time.sleep(0.1)
    raise AssertionError(f"no ready worker besides {others} within {deadline_s} s")


def test_serve_with_two_worker_processes(tmp_path: Path, pg_url: str) -> None:
    """`lmrec serve --workers 2` over PostgreSQL: a write through one worker process is served by
    the other within a second; a version activated through one is served by the other."""
    home, log = tmp_path / "home", tmp_path / "serve.log"
    with serve_workers(home, pg_url, free_port(), log) as base:
        try:
            a, wa = worker_client(base, set())
            b, wb = worker_client(base, {wa})
        except AssertionError:
            raise AssertionError(log.read_text()[-3000:]) from None
        assert wa.split(":")[1] != wb.split(":")[1]   # two processes
        items = [{"item_id": r.item_id, "title": r.title, "categories": list(r.categories)} for r in catalog()]
        assert a.post("/items", json={"items": items}).status_code == 200
        within(1.0, lambda: b.get("/items/5").status_code == 200, "items posted to A served by B")
        r = a.post("/events", json=[{"user_id": "p1", "item_id": i, "kind": "view"} for i in ("0", "3", "6")])
        assert r.status_code == 200, r.text

        def b_sees_events() -> bool:
            got = {i["item_id"] for i in b.get("/recommend/p1", params={"k": 12}).json()["items"]}
            return not got & {"0", "3", "6"} and len(got) == 9

        within(1.0, b_sees_events, "events posted to A in B's /recommend")
        assert b.get("/users/p1/history").json()["total"] == 3
        assert a.post("/items", json={"items": [{"item_id": "z", "title": "zebra lantern"}]}).status_code == 200
        within(1.0, lambda: [h["item_id"] for h in b.get("/search", params={"q": "zebra lantern", "k": 1})
                             .json()["items"]] == ["z"], "item posted to A in B's /search")
        assert a.delete("/items/z").status_code in (200, 204)
        within(1.0, lambda: b.get("/items/z").status_code == 404, "item deleted through A gone from B")
        r = a.post("/admin/train", json={})
        assert r.status_code == 200, r.text
        version = a.get("/admin/stats").json()["model_version"]
        within(5.0, lambda: b.get("/admin/stats").json()["model_version"] == version, "A's new version in B")
        assert b.get("/admin/stats").json()["worker"]["follower"]["errors"] == 0
        a.close()
        b.close()
