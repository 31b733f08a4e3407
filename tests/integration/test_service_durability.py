"""Acknowledged events survive a crash: `lmrec serve` is SIGKILLed in the middle of ingesting
batches over HTTP, restarted, and every event it acknowledged must be in the store and in the
restarted engine's state. Runs on SQLite and on PostgreSQL (skipped when unreachable)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from lmrec.serving.auth import create_api_key
from lmrec.stores.records import ItemRecord
from lmrec.stores.sql import open_store

pytestmark = pytest.mark.slow

PG_URL = os.environ.get("LMREC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
N_ITEMS = 40
N_VIEWED = 30           # events only touch i0..i29: a user who saw all of them has i30..i39 left


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/lmrec.db"
        return
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.OperationalError as e:
        pytest.skip(f"PostgreSQL unreachable at {PG_URL} (set LMREC_TEST_POSTGRES_URL): {str(e)[:200]}")
    schema = f"lmrec_svc_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def server(home: Path, store_url: str, port: int, log: Path) -> Iterator[subprocess.Popen]:
    """`lmrec serve` in a subprocess (fake encoder, flat index, no rate limit), ready when yielded."""
    env = {**os.environ, "LMREC_RATE_LIMIT_RPS": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "lmrec.cli.main", "serve", "--home", str(home), "--store-url", store_url,
           "--encoder", "fake", "--index", "flat", "--port", str(port), "--log-level", "warning"]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"server not ready after 180 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_acknowledged_events_survive_sigkill(tmp_path: Path, store_url: str) -> None:
    home, log, port = tmp_path / "home", tmp_path / "server.log", free_port()
    store = open_store(store_url)
    store.upsert_items([ItemRecord(f"i{n}", title=f"thing number {n}") for n in range(N_ITEMS)])
    key, _ = create_api_key(store, "durability", ["admin"])
    store.close()
    headers = {"Authorization": f"Bearer {key}"}
    base = f"http://127.0.0.1:{port}"

    acked: dict[int, tuple[str, str, float]] = {}        # seq -> (user, item, value) the server confirmed
    counter = iter(range(10**6))
    stop = threading.Event()

    def ingest() -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            while not stop.is_set():
                batch = []
                for _ in range(25):
                    n = next(counter)
                    batch.append({"user_id": f"u{n % 7}", "item_id": f"i{n % N_VIEWED}", "kind": "view",
                                  "value": float(n), "timestamp": 1_700_000_000.0 + n})
                try:
                    r = client.post("/events", json=batch)
                except httpx.TransportError:
                    return                                # the server is gone: nothing more is acknowledged
                if r.status_code == 200:
                    for ev, seq in zip(batch, r.json()["seqs"]):
                        acked[seq] = (ev["user_id"], ev["item_id"], ev["value"])

    with server(home, store_url, port, log) as proc:
        writer = threading.Thread(target=ingest)
        writer.start()
        deadline = time.monotonic() + 60
        while len(acked) < 500 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)                # mid-ingest: the writer is still posting
        proc.wait(30)
        writer.join(30)
        stop.set()
    assert len(acked) >= 500, f"only {len(acked)} events acknowledged before the kill"

    store = open_store(store_url)
    stored = {e.seq: (e.user_id, e.item_id, e.value) for e in store.events()}
    n_stored = store.count_events()
    store.close()
    missing = {s: v for s, v in acked.items() if stored.get(s) != v}
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {list(missing.items())[:3]}"

    with server(home, store_url, port, log):                # restart: the engine replays the log
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            stats = client.get("/admin/stats").json()
            assert stats["n_events"] == n_stored >= len(acked)
            # every item u0 was acknowledged to have viewed counts as consumed: not recommended again
            seen = {item for user, item, _ in acked.values() if user == "u0"}
            assert len(seen) == N_VIEWED
            recs = client.get("/recommend/u0", params={"k": N_ITEMS}).json()
            assert {i["item_id"] for i in recs["items"]} == {f"i{n}" for n in range(N_VIEWED, N_ITEMS)}
            ok = client.post("/events", json={"user_id": "after", "item_id": "i1"})
            assert ok.status_code == 200 and ok.json()["seqs"][0] > max(acked)
