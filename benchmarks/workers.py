"""Throughput of `lmrec serve --workers N`: GET /recommend at saturation with 1 and with 2 worker
processes over the same PostgreSQL-backed home, the ratio reported in the same run.

The home is a generated catalog (`service.make_items`: "<brand> <adjective> <material> <product>",
the hashing `fake-384` encoder, so building it takes seconds) with Zipf-like users
(`service.make_events`) in a PostgreSQL schema of its own (`--store-url`, default the local test
database, schema `lmrec_bench_workers`). The served pipeline is `--config` (default: the shipped
serve-default, which learns online and needs no fit). Each server is started, warmed up for
`--warmup` s, then driven by a closed-loop client: `--clients` concurrent requesters (asyncio +
httpx, one keep-alive connection each), each sending its next request as soon as the previous answered, for `--seconds` s.
Users are drawn uniformly from the stored users (10% unknown ones). The client runs on the same
machine and its CPU time is reported: on a small machine it competes with the server.

The workers share one listening socket and the kernel hands a new connection to whichever worker
accepts it first, which for a burst of new connections can be one worker for all of them (seen
here: 16 of 16). The client therefore spreads its connections evenly over the workers (it
reconnects until each worker holds at most clients / workers of them), as a round-robin proxy in
front of the workers would; `connections_per_worker` reports the split.

    python benchmarks/workers.py                         # 1 vs 2 workers, 16 clients, 20 s each
    python benchmarks/workers.py --workers 1,2,4 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from service import console, free_port, make_events, make_items  # noqa: E402

from lmrec.eval.report import rich_table, write_results  # noqa: E402

RESULTS = Path(__file__).parent / "results"
DEFAULT_STORE = "postgresql://postgres@127.0.0.1:5432/test?schema=lmrec_bench_workers"


def build_store(url: str, n_items: int, n_users: int, per_user: int) -> dict[str, int]:
    """The catalog and event log in the PostgreSQL schema (once: kept for later runs)."""
    from lmrec.stores.sql import open_store

    store = open_store(url)
    try:
        if store.count_items() == 0:
            items = make_items(n_items)
            for s in range(0, n_items, 5000):
                store.upsert_items(items[s:s + 5000])
            events = make_events(n_items, n_users, per_user)
            for s in range(0, len(events), 10_000):
                store.append_events(events[s:s + 10_000])
        return {"items": store.count_items(), "events": store.count_events()}
    finally:
        store.close()


def start(home: Path, url: str, workers: int, config: str, log: Path) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    env = {**os.environ, "LMREC_RATE_LIMIT_RPS": "0", "LMREC_ENGINE__PROGRESS": "false", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "lmrec.cli.main", "serve", "--home", str(home), "--store-url", url,
           "--encoder", "fake-384", "--index", "hnsw", "--port", str(port), "--log-level", "warning",
           "--config", config, "--no-auth", "--workers", str(workers)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    seen: set[str] = set()
    with console.status(f"starting {workers} worker(s)"):
        while len(seen) < workers:   # every worker ready (new connections land on any of them)
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}; see {log}")
            if time.perf_counter() - t0 > 600:
                raise RuntimeError(f"not all {workers} workers ready after 600 s; see {log}")
            try:
                with httpx.Client(base_url=base, timeout=5) as c:
                    r = c.get("/admin/stats")
                    if r.status_code == 200 and r.json().get("ready"):
                        seen.add(r.json()["worker"]["id"])
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    return proc, base, time.perf_counter() - t0


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def closed_loop(base: str, users: list[str], clients: int, seconds: float, k: int, seed: int,
                      n_workers: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    lat: list[float] = []
    errors: dict[str, int] = {}
    workers: dict[str, int] = {}

    go = asyncio.Event()
    ready: list[int] = []
    end = float("inf")

    async def client(i: int) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        share = -(-clients // n_workers)   # connections per worker at most, as a round-robin proxy spreads them
        for attempt in range(200):   # connect (and learn the worker) before the clock starts
            c = httpx.AsyncClient(base_url=base, timeout=30, limits=limits)
            wid = (await c.get("/admin/stats")).json()["worker"]["id"]
            if workers.get(wid, 0) < share or attempt == 199:
                workers[wid] = workers.get(wid, 0) + 1
                break
            await c.aclose()
        try:
            ready.append(i)
            if len(ready) == clients:   # the last one connected starts the clock
                nonlocal end, cpu0, start_t
                cpu0, start_t = time.process_time(), time.perf_counter()
                end = start_t + seconds
                go.set()
            await go.wait()
            while time.perf_counter() < end:
                user = rng.choice(users)
                t0 = time.perf_counter()
                try:
                    r = await c.get(f"/recommend/{user}", params={"k": k})
                    if r.status_code != 200:
                        errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
                        continue
                except httpx.HTTPError as e:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                    continue
                if time.perf_counter() <= end:
                    lat.append((time.perf_counter() - t0) * 1000)
        finally:
            await c.aclose()

    cpu0 = start_t = 0.0
    await asyncio.gather(*(client(i) for i in range(clients)))
    wall = time.perf_counter() - start_t
    arr = np.asarray(lat) if lat else np.zeros(1)
    return {"requests": len(lat), "req_per_s": round(len(lat) / seconds, 1), "p50_ms": round(float(np.percentile(arr, 50)), 1),
            "p99_ms": round(float(np.percentile(arr, 99)), 1), "errors": sum(errors.values()),
            "error_kinds": errors, "client_cpu_s": round(time.process_time() - cpu0, 1), "wall_s": round(wall, 1),
            "connections_per_worker": sorted(workers.values(), reverse=True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store-url", default=DEFAULT_STORE)
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--events-per-user", type=int, default=10)
    ap.add_argument("--config", default="serve-default.toml", help="the pipeline served (a file or a shipped name)")
    ap.add_argument("--workers", default="1,2", help="worker counts to compare (the first is the baseline)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--home", type=Path, default=None, help="default ~/.cache/lmrec/bench/workers-<items>-<users>")
    ap.add_argument("--name", default="workers")
    args = ap.parse_args()
    counts = [int(x) for x in args.workers.split(",")]
    load_before = os.getloadavg()[0]
    home = args.home or Path.home() / ".cache" / "lmrec" / "bench" / f"workers-{args.items}-{args.users}"
    home.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sizes = build_store(args.store_url, args.items, args.users, args.events_per_user)
    console.print(f"store: {sizes} ({time.perf_counter() - t0:.1f} s)")
    users = [f"user{u:06d}" for u in range(args.users)]
    users += [f"nobody{u}" for u in range(len(users) // 9)]   # ~10% unknown users
    rows = []
    log = home / "serve.log"
    for n in counts:
        proc, base, open_s = start(home, args.store_url, n, args.config, log)
        try:
            asyncio.run(closed_loop(base, users, args.clients, args.warmup, args.k, seed=n, n_workers=n))
            res = asyncio.run(closed_loop(base, users, args.clients, args.seconds, args.k, seed=100 + n, n_workers=n))
        finally:
            stop(proc)
        row = {"what": f"GET /recommend, {n} worker{'s' if n > 1 else ''}", "workers": n, "clients": args.clients, "seconds": args.seconds, **res, "open_s": round(open_s, 1),
               "config": args.config, "items": sizes["items"], "events": sizes["events"]}
        console.print(row)
        rows.append(row)
    base_rps = rows[0]["req_per_s"] or float("nan")
    for row in rows:
        row["ratio_vs_first"] = round(row["req_per_s"] / base_rps, 2)
    command = "python benchmarks/workers.py " + " ".join(sys.argv[1:])
    for row in rows:
        row["reproduce"] = command.strip()
    details = ["| workers | req/s | ratio vs first | p50 ms | p99 ms | errors | client CPU s | connections per worker "
               "| open s |", "|---|---|---|---|---|---|---|---|---|"]
    details += [f"| {r['workers']} | {r['req_per_s']} | {r['ratio_vs_first']} | {r['p50_ms']} | {r['p99_ms']} | "
                f"{r['errors']} | {r['client_cpu_s']} | {r['connections_per_worker']} | {r['open_s']} |" for r in rows]
    notes = "\n".join(details) + "\n\n" + (f"Machine: {os.cpu_count()} cores, load average before the run "
             f"{load_before:.1f} (other jobs share it); the client runs on the same machine "
             "(client_cpu_s). Closed loop: each client sends its next request when the previous one answered.")
    write_results(args.name, rows, command=command.strip(), out_dir=RESULTS, notes=notes)
    console.print(rich_table(rows, title="GET /recommend at saturation: 1 vs N workers"))
    console.print(f"wrote {RESULTS / (args.name + '.json')}")


if __name__ == "__main__":
    main()
