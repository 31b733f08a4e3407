"""Durability at the store level: an acknowledged event survives the writer being SIGKILLed.

A child process (this file run as a script) appends numbered batches in a loop and prints
each acknowledged seq range to stdout, flushing after every line. The test kills it
mid-stream, twice per backend, reopens the store and checks that every acknowledged event is
there intact and that no batch was half-written (the one in flight is all there or absent).

This covers a crash of the process, not a power cut: the latter is what `synchronous=FULL`
(SQLite) and the server's fsync (PostgreSQL) are for, and cannot be simulated here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

BATCH = 20
ROUNDS = 2
ACKS_BEFORE_KILL = 25
PG_URL = os.environ.get("LMREC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def writer(url: str, first_batch: int) -> None:
    """The child: append batches `first_batch`, `first_batch + 1`, ... until killed."""
    from lmrec.stores.records import EventRecord
    from lmrec.stores.sql import open_store

    store = open_store(url)
    print("ready", flush=True)
    b = first_batch
    while True:
        seqs = store.append_events([EventRecord("writer", f"b{b}-e{j}", "click", float(j), float(b))
                                    for j in range(BATCH)])
        print(f"ack {b} {seqs[0]} {seqs[-1]}", flush=True)  # only after the commit returned
        b += 1


def run_and_kill(url: str, first_batch: int) -> dict[int, tuple[int, int]]:
    """Start a writer, SIGKILL it after a few acknowledgements; {batch: (first seq, last seq)}
    for every batch it acknowledged, including lines still in the pipe at the kill."""
    proc = subprocess.Popen([sys.executable, __file__, url, str(first_batch)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    acked: dict[int, tuple[int, int]] = {}
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + 30
        for line in proc.stdout:
            parts = line.split()
            if parts[0] == "ack":
                acked[int(parts[1])] = (int(parts[2]), int(parts[3]))
            if len(acked) >= ACKS_BEFORE_KILL or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGKILL)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for line in rest.splitlines():  # acknowledged before the kill landed
        parts = line.split()
        if len(parts) == 4 and parts[0] == "ack":
            acked[int(parts[1])] = (int(parts[2]), int(parts[3]))
    assert proc.returncode == -signal.SIGKILL, f"writer exited with {proc.returncode}: {err[-2000:]}"
    assert len(acked) >= ACKS_BEFORE_KILL, f"writer acknowledged only {len(acked)} batches: {err[-2000:]}"
    return acked


def check_everything_acknowledged_is_there(url: str) -> None:
    from lmrec.stores.sql import open_store

    acked: dict[int, tuple[int, int]] = {}
    in_flight: set[int] = set()  # committed when a kill landed, before the ack was printed
    next_batch = 0
    for _ in range(ROUNDS):
        acked.update(run_and_kill(url, next_batch))
        with open_store(url) as store:
            stored = list(store.events())
        by_batch: dict[int, list] = defaultdict(list)
        for e in stored:
            by_batch[int(e.timestamp)].append(e)
        for b, (first, last) in acked.items():
            events = by_batch.get(b, [])
            assert [e.seq for e in events] == list(range(first, last + 1)), \
                f"acknowledged batch {b} (seqs {first}..{last}) lost or changed: {[e.seq for e in events]}"
            assert [e.item_id for e in events] == [f"b{b}-e{j}" for j in range(BATCH)]
        for b, events in by_batch.items():  # the batch in flight at the kill: all or nothing
            assert len(events) == BATCH, f"batch {b} half-written: {len(events)} of {BATCH} events"
        unacked = set(by_batch) - set(acked) - in_flight
        assert len(unacked) <= 1 and all(b == max(by_batch) for b in unacked), f"unacknowledged: {unacked}"
        in_flight |= unacked
        assert [e.seq for e in stored] == sorted(e.seq for e in stored)
        next_batch = max(by_batch) + 1


def test_sqlite_survives_sigkill(tmp_path: Path) -> None:
    check_everything_acknowledged_is_there(f"sqlite:///{tmp_path}/durable.db")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'lmrec[serve]')")
    from psycopg import sql as pgsql

    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.OperationalError as e:
        pytest.skip(f"PostgreSQL unreachable at {PG_URL} (set LMREC_TEST_POSTGRES_URL): {str(e).strip()[:200]}")
    schema = f"lmrec_durability_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pgsql.Identifier(schema)))


def test_postgres_survives_sigkill(postgres_url: str) -> None:
    check_everything_acknowledged_is_there(postgres_url)


if __name__ == "__main__":
    writer(sys.argv[1], int(sys.argv[2]))
