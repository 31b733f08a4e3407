"""Sustained event ingest into the record stores, durability on: events/s and commit latency.

For each backend (SQLite file in WAL mode with synchronous=FULL; PostgreSQL with the
server's fsync / synchronous_commit) and each batch size, one writer appends generated
events with `append_events` as fast as it can; every call commits (and is durable) before
the next starts. A fresh database (SQLite file, PostgreSQL schema) per configuration; 5
warm-up batches are not timed.

Each configuration ingests max(--events, batch_size x --min-batches) events, so that even
batch size 100 gives enough commits for a p99. Metrics: events_per_s (events / total time
of the timed calls), p50_ms / p99_ms (latency of one append_events call = one commit).
Results are written after every row.

    python benchmarks/ingest.py                                   # both backends, batch 1, 10, 100
    python benchmarks/ingest.py --backend sqlite --batch-size 10  # one row (keeps the others)

The PostgreSQL URL is --postgres-url, else LMREC_TEST_POSTGRES_URL, else
postgresql://postgres@127.0.0.1:5432/test; the benchmark's schema is dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from lmrec.eval.report import rich_table, write_results
from lmrec.stores.records import EventRecord, RecordStore
from lmrec.stores.sql import PostgresStore, open_store

RESULTS = Path(__file__).parent / "results"
BACKENDS = ("sqlite", "postgresql")
BATCH_SIZES = (1, 10, 100)
WARMUP_BATCHES = 5
KINDS = ("view", "view", "view", "click", "click", "cart", "purchase", "impression")


def generate_events(n: int, seed: int = 0, n_users: int = 10_000, n_items: int = 5_000) -> list[EventRecord]:
    """n events: Zipf-like users and items, a view-heavy kind mix, increasing timestamps."""
    rng = np.random.default_rng(seed)
    users = np.minimum(rng.zipf(1.3, size=n), n_users) - 1
    items = np.minimum(rng.zipf(1.2, size=n), n_items) - 1
    kinds = rng.integers(len(KINDS), size=n)
    ts = 1.7e9 + np.cumsum(rng.exponential(0.01, size=n))
    return [EventRecord(f"user{u}", f"item{i}", KINDS[k], 1.0, float(t), None)
            for u, i, k, t in zip(users.tolist(), items.tolist(), kinds.tolist(), ts.tolist())]


@contextmanager
def fresh_store(backend: str, postgres_url: str, workdir: Path) -> Iterator[RecordStore]:
    """An empty store of `backend`, removed afterwards."""
    if backend == "sqlite":
        path = workdir / f"ingest-{uuid.uuid4().hex[:8]}.db"
        store = open_store(f"sqlite:///{path}")
        try:
            yield store
        finally:
            store.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    import psycopg
    from psycopg import sql as pgsql

    schema = f"lmrec_bench_{uuid.uuid4().hex[:12]}"
    store = open_store(f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema={schema}")
    try:
        yield store
    finally:
        store.close()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pgsql.Identifier(schema)))


def durability(store: RecordStore) -> str:
    """What 'committed' means for this store, for the result row."""
    if isinstance(store, PostgresStore):
        rows = store._fetch("SELECT name, setting FROM pg_settings WHERE name IN "
                            "('fsync', 'synchronous_commit', 'wal_sync_method', 'server_version') ORDER BY name")
        return "PostgreSQL " + ", ".join(f"{k}={v}" for k, v in rows)
    return "SQLite WAL, synchronous=FULL"


def measure(store: RecordStore, events: list[EventRecord], batch_size: int, progress: Progress,
            label: str) -> dict[str, Any]:
    """Append `events` in batches; throughput and per-commit latency percentiles."""
    warm = generate_events(WARMUP_BATCHES * batch_size, seed=99)
    for i in range(0, len(warm), batch_size):
        store.append_events(warm[i:i + batch_size])
    n_batches = len(events) // batch_size
    latencies = np.empty(n_batches)
    task = progress.add_task(label, total=n_batches)
    for b in range(n_batches):
        batch = events[b * batch_size:(b + 1) * batch_size]
        t0 = time.perf_counter()
        store.append_events(batch)
        latencies[b] = time.perf_counter() - t0
        progress.advance(task)
    progress.remove_task(task)
    expected = len(warm) + n_batches * batch_size
    if store.count_events() != expected:  # a benchmark of a store that loses events is worthless
        raise RuntimeError(f"{label}: store holds {store.count_events()} events, expected {expected}")
    return {"events_per_s": round(n_batches * batch_size / latencies.sum(), 1),
            "p50_ms": round(float(np.percentile(latencies, 50)) * 1e3, 3),
            "p99_ms": round(float(np.percentile(latencies, 99)) * 1e3, 3),
            "mean_ms": round(float(latencies.mean()) * 1e3, 3), "batches": n_batches}


def disk_fsync_ms(folder: Path, n: int = 300) -> float:
    """Mean time of write + fsync of 100 bytes in `folder`: what one durable commit costs the
    disk at least. It differs a lot between machines (0.2 ms to 10 ms seen on this project's
    virtual machines), so every row records it beside the events/s it bounds."""
    path = folder / "fsync-probe.bin"
    with open(path, "wb") as f:
        t0 = time.perf_counter()
        for _ in range(n):
            f.write(b"x" * 100)
            f.flush()
            os.fsync(f.fileno())
        ms = (time.perf_counter() - t0) / n * 1000
    path.unlink()
    return ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", action="append", choices=BACKENDS, help="repeatable; default: both")
    ap.add_argument("--batch-size", action="append", type=int, help="repeatable; default: 1, 10, 100")
    ap.add_argument("--events", type=int, default=4000, help="events per configuration (default 4000)")
    ap.add_argument("--min-batches", type=int, default=200,
                    help="at least this many commits per configuration (default 200)")
    ap.add_argument("--postgres-url", default=os.environ.get("LMREC_TEST_POSTGRES_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--workdir", type=Path, default=None,
                    help="folder for the SQLite files (default: a temporary folder)")
    ap.add_argument("--name", default="ingest", help="result file name (default: ingest)")
    args = ap.parse_args()
    if args.events < 1 or args.min_batches < 1 or any(b < 1 for b in args.batch_size or []):
        ap.error("--events, --min-batches and --batch-size must be positive")
    console = Console()
    backends = args.backend or list(BACKENDS)
    sizes = args.batch_size or list(BATCH_SIZES)
    defaults = args.events == 4000 and args.min_batches == 200
    out_json = RESULTS / f"{args.name}.json"
    rows: list[dict[str, Any]] = []
    if out_json.exists() and (args.backend or args.batch_size) and defaults:
        # re-running part of the table keeps the other rows
        keep = json.loads(out_json.read_text())["rows"]
        rows = [r for r in keep if not (r["model"] in backends and r["params"]["batch_size"] in sizes)]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="lmrec-ingest-"))
    workdir.mkdir(parents=True, exist_ok=True)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=console, transient=True)
    fsync_ms = disk_fsync_ms(workdir)
    console.print(f"fsync of a small write on {workdir}'s disk: {fsync_ms:.3f} ms (one-event commits cannot beat it)")
    with progress:
        for backend in backends:
            for size in sizes:
                n = max(args.events, size * args.min_batches)
                events = generate_events(n)
                with fresh_store(backend, args.postgres_url, workdir) as store:
                    metrics = measure(store, events, size, progress, f"{backend} batch={size}")
                    how = durability(store)
                reproduce = f"python benchmarks/ingest.py --backend {backend} --batch-size {size}"
                if not defaults:
                    reproduce += f" --events {args.events} --min-batches {args.min_batches}"
                rows = [r for r in rows if not (r["model"] == backend and r["params"]["batch_size"] == size)]
                rows.append({"model": backend, "params": {"batch_size": size, "events": n}, **metrics,
                             "durability": how, "disk_fsync_ms": round(fsync_ms, 3), "reproduce": reproduce})
                rows.sort(key=lambda r: (BACKENDS.index(r["model"]), r["params"]["batch_size"]))
                complete = {(r["model"], r["params"]["batch_size"]) for r in rows} >= \
                    {(b, s) for b in BACKENDS for s in BATCH_SIZES}
                command = "python benchmarks/ingest.py" if complete and defaults else "python " + " ".join(sys.argv)
                write_results(args.name, rows, command=command, out_dir=RESULTS)
                progress.console.print(f"{backend} batch={size}: {metrics['events_per_s']:.0f} events/s, "
                                       f"p50 {metrics['p50_ms']:.2f} ms, p99 {metrics['p99_ms']:.2f} ms")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    console.print(rich_table(rows, title="ingest (durable commits)"))
    console.print(f"wrote {out_json}")


if __name__ == "__main__":
    main()
