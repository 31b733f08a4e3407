"""Event ingest through a stream: NATS JetStream and Redis Streams into a serving engine.

For each broker, an engine (SQLite store in WAL mode with synchronous=FULL, the shipped
`serve-default` pipeline, the hashing `fake-64` encoder, a generated catalog of --items items)
consumes a fresh stream with `lmrec.streams.StreamConsumer` (the consumer `lmrec serve
--events URL` runs):

- throughput: --events events are published first (`publish_events_per_s`), then the consumer
  is started and timed until every event is committed to the store and folded into the served
  pipeline (`events_per_s`: committed, idempotently by event id, and applied; acked per batch);
- event -> effect: with the consumer idle, one event at a time is published and the time is
  taken from the publish call until the engine has applied it (the next /recommend sees it),
  --trials times (`p50_ms`, `p99_ms`).

The brokers are the local servers (--nats, --redis; LMREC_TEST_NATS_URL / LMREC_TEST_REDIS_URL);
the benchmark's streams are deleted afterwards.

    python benchmarks/stream_ingest.py                  # both brokers
    python benchmarks/stream_ingest.py --broker redis   # one row (keeps the other)
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
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from lmrec.eval.report import rich_table, write_results
from lmrec.serving.engine import Engine, EngineConfig
from lmrec.stores.records import ItemRecord
from lmrec.streams import StreamConsumer, open_broker
from lmrec.streams.publish import publish_events

RESULTS = Path(__file__).parent / "results"
BROKERS = ("nats", "redis")
KINDS = ("view", "view", "view", "click", "click", "cart", "purchase")


def stream_url(broker: str, nats: str, redis: str) -> str:
    name = f"lmrec-bench.{uuid.uuid4().hex[:8]}"
    return f"{nats.rstrip('/')}/{name}" if broker == "nats" else f"{redis}?stream={name}"


def delete_stream(url: str) -> None:
    b = open_broker(url)
    try:
        b.connect()
        if b.target.kind == "nats":
            for name in (b.stream, b.dlq_stream):
                try:
                    b._run(b._js.delete_stream(name))
                except Exception:  # noqa: BLE001 - already gone
                    pass
        else:
            b._client().delete(b.key, b.target.dead_letter)
    finally:
        b.close()


def generate(n: int, n_items: int, n_users: int, prefix: str, rng: np.random.Generator) -> list[dict[str, Any]]:
    items = rng.zipf(1.3, size=n) % n_items
    users = rng.integers(0, n_users, size=n)
    kinds = rng.integers(0, len(KINDS), size=n)
    t0 = time.time() - n
    return [{"event_id": f"{prefix}{i}", "user_id": f"u{users[i]}", "item_id": f"i{items[i]}",
             "kind": KINDS[kinds[i]], "timestamp": t0 + i} for i in range(n)]


def wait(cond: Any, timeout_s: float, what: str, poll_s: float = 0.0002) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(poll_s)


def run(broker: str, url: str, args: argparse.Namespace, workdir: Path, console: Console) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    home = workdir / broker
    engine = Engine.open(EngineConfig(home=home, store_url=f"sqlite:///{home}/lmrec.db", encoder="fake",
                                      index="flat"))
    try:
        engine.upsert_items([ItemRecord(f"i{i}", title=f"item {i}", categories=(f"c{i % 20}",))
                             for i in range(args.items)])
        producer = open_broker(url)
        producer.connect()
        try:
            evs = generate(args.events, args.items, args.users, "bulk-", rng)
            t = time.perf_counter()
            publish_events(producer, evs, batch=1000)
            publish_s = time.perf_counter() - t

            consumer = StreamConsumer(url, engine.ingest, batch=args.batch, fetch_timeout_s=0.5)
            base = engine.stats()["n_events"]
            t = time.perf_counter()
            consumer.start()
            wait(lambda: engine.stats()["n_events"] - base >= args.events, 600, "the bulk events", 0.005)
            ingest_s = time.perf_counter() - t
            console.print(f"{broker}: {args.events} events published in {publish_s:.2f} s, consumed in "
                          f"{ingest_s:.2f} s")

            lat = []
            for k, e in enumerate(generate(args.trials, args.items, args.users, "one-", rng)):
                before = engine.stats()["n_events"]
                t = time.perf_counter()
                producer.publish([(e["event_id"], json.dumps(e).encode())])
                wait(lambda: engine.stats()["n_events"] > before, 30, f"trial {k}")
                lat.append((time.perf_counter() - t) * 1000)
            consumer.stop()
            assert consumer.duplicates == 0 and consumer.dead_letters == 0
            assert engine.store.count_events() == args.events + args.trials
        finally:
            producer.close()
    finally:
        engine.close()
    a = np.asarray(lat)
    return {"events_per_s": round(args.events / ingest_s, 1), "publish_events_per_s": round(args.events / publish_s, 1),
            "p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "trials": args.trials}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", action="append", choices=BROKERS, help="repeatable; default: both")
    ap.add_argument("--events", type=int, default=20000, help="events of the throughput phase (default 20000)")
    ap.add_argument("--trials", type=int, default=300, help="single events of the latency phase (default 300)")
    ap.add_argument("--batch", type=int, default=256, help="consumer batch size (default 256)")
    ap.add_argument("--items", type=int, default=2000, help="catalog size (default 2000)")
    ap.add_argument("--users", type=int, default=500, help="users the events come from (default 500)")
    ap.add_argument("--nats", default=os.environ.get("LMREC_TEST_NATS_URL", "nats://127.0.0.1:4222"))
    ap.add_argument("--redis", default=os.environ.get("LMREC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--name", default="stream_ingest", help="result file name (default: stream_ingest)")
    args = ap.parse_args()
    console = Console()
    brokers = args.broker or list(BROKERS)
    defaults = (args.events, args.trials, args.batch, args.items, args.users) == (20000, 300, 256, 2000, 500)
    out_json = RESULTS / f"{args.name}.json"
    rows: list[dict[str, Any]] = []
    if out_json.exists() and args.broker and defaults:
        rows = [r for r in json.loads(out_json.read_text())["rows"] if r["model"] not in brokers]
    workdir = Path(tempfile.mkdtemp(prefix="lmrec-stream-bench-"))
    try:
        for broker in brokers:
            url = stream_url(broker, args.nats, args.redis)
            try:
                metrics = run(broker, url, args, workdir, console)
            finally:
                delete_stream(url)
            reproduce = f"python benchmarks/stream_ingest.py --broker {broker}"
            if not defaults:
                reproduce += (f" --events {args.events} --trials {args.trials} --batch {args.batch} "
                              f"--items {args.items} --users {args.users}")
            rows = [r for r in rows if r["model"] != broker]
            rows.append({"model": broker, "params": {"batch": args.batch, "events": args.events, "items": args.items,
                                                     "store": "sqlite", "pipeline": "serve-default",
                                                     "encoder": "fake-64"}, **metrics, "reproduce": reproduce})
            rows.sort(key=lambda r: BROKERS.index(r["model"]))
            complete = {r["model"] for r in rows} >= set(BROKERS)
            command = "python benchmarks/stream_ingest.py" if complete and defaults else "python " + " ".join(sys.argv)
            write_results(args.name, rows, command=command, out_dir=RESULTS, notes=NOTES)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    console.print(rich_table(rows, title="stream ingest"))
    console.print(f"wrote {out_json}")


NOTES = ("events_per_s: published events consumed, committed to SQLite (WAL, synchronous=FULL) once by event id, "
         "folded into the served serve-default pipeline and acknowledged, per second. p50_ms / p99_ms: one event "
         "from the publish call until the engine has applied it (the next /recommend sees it), with the consumer "
         "idle. The broker, the consumer and the engine share the machine's cores.")


if __name__ == "__main__":
    main()
