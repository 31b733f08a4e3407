"""HTTP service latency and throughput: `lmrec serve` (one uvicorn worker) serving a trained
multi-stage pipeline on a generated 100k-item catalog, driven by an open-loop client at a fixed
request rate.

The pipeline is `--config` (default: the shipped `large-catalog` config: LM-profile and ALS
channels retrieving through HNSW inner-product indexes, item-to-item transitions and decayed
popularity -> about 300 candidates -> LightGBM LambdaRank over the default features -> MMR),
fitted on the store's events when the server opens (the first run of a home; later runs load
the saved version). Every /recommend answer carries the server's time per pipeline stage; the
sequential phase reports their p50 / p99 (`stage_ms`).

What is measured (each a row of benchmarks/results/service.json / .md):
- `/recommend/{user}` at `--rate` req/s for `--seconds` s (known users, 10% unknown users);
- `/search?q=` at `--search-rate` req/s for `--seconds` s, query encoding included;
- event-to-effect over HTTP: POST one click on the top item of a user's list, then GET
  /recommend until the item has left it (it is consumed); `--trials` times, one at a time;
- with `--soak-seconds N`: 80% recommend / 20% search at `--rate` for N s, errors counted and
  the server's RSS sampled every 10 s (memory should stay flat).

Load client of the rate phases (`--client`):
- wrk (the default when `wrk` is on PATH; Debian/Ubuntu: `apt install wrk`): one client thread,
  40 connections, each pausing an exponentially distributed time between its requests, so the
  server sees a Poisson stream at about the target rate while no connection is ever busy for
  long; latency is from each send to its response (wrk's HdrHistogram). The achieved req/s is
  reported beside the target.
- python: an httpx open-loop client measuring from the time each request was *scheduled*
  (requests leave on a fixed timetable whether or not earlier ones returned: no coordinated
  omission). It costs ~1 ms of client CPU per request, which on 2 cores is taken from the
  server: at 200 req/s on a loaded machine it fell behind (client_kept_up False).
Phases sent one at a time (`sequential`) and event-to-effect always use httpx.

Encoders: the catalog is embedded with the hashing `fake-384` encoder (building 100k real
MiniLM embeddings takes hours on 2 cores), while /search encodes every query with the real
MiniLM (`--query-encoder`, default `minilm-int8`: the ONNX int8 export, same dimension): query latency is the real one, the dense
hits are not meaningful. The pipeline's LM channel and features use the same `fake-384` vectors.

    python benchmarks/service.py                          # the default run (a few minutes once built)
    python benchmarks/service.py --soak-seconds 600       # plus a 10-minute soak
    python benchmarks/service.py --items 20000 --seconds 10 --name service-smoke   # a quick check

The generated home (store, index, model) is kept in --home (default ~/.cache/lmrec/bench/)
and reused by later runs with the same --items / --users.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.progress import Progress

from lmrec.eval.report import rich_table, write_results

RESULTS = Path(__file__).parent / "results"
console = Console()

# ---- the generated catalog ------------------------------------------------------------------------
PRODUCTS = ["running shoe", "trail shoe", "hiking boot", "rain jacket", "down jacket", "fleece", "backpack",
            "duffel bag", "water bottle", "tent", "sleeping bag", "camping stove", "headlamp", "trekking pole",
            "chef knife", "frying pan", "saucepan", "kettle", "coffee grinder", "espresso machine", "teapot",
            "mug", "cutting board", "blender", "toaster", "headphones", "earbuds", "speaker", "phone case",
            "charger", "power bank", "keyboard", "mouse", "monitor", "desk lamp", "office chair", "notebook",
            "fountain pen", "novel", "cookbook", "board game", "puzzle", "building blocks", "plush toy",
            "face cream", "sunscreen", "shampoo", "yoga mat", "dumbbell", "bicycle helmet"]
ADJECTIVES = ["lightweight", "waterproof", "compact", "premium", "classic", "ergonomic", "wireless",
              "insulated", "breathable", "durable", "foldable", "rechargeable", "organic", "vintage",
              "minimalist", "heavy-duty", "portable", "quiet", "non-stick", "recycled"]
MATERIALS = ["leather", "canvas", "nylon", "steel", "aluminium", "bamboo", "ceramic", "cotton", "wool",
             "carbon", "glass", "oak", "silicone", "titanium", "cork"]
BRANDS = [f"{a}{b}" for a in ("North", "Blue", "Iron", "Swift", "Terra", "Luma", "Pixel", "Oak", "Nova", "Arc")
          for b in ("peak", "line", "works", "craft", "field")]
USES = ["for everyday use", "for long trips", "for small kitchens", "for the office", "for kids",
        "for cold mornings", "for trail running", "for travel", "as a gift", "for beginners"]
QUERY_TEMPLATES = ["{adj} {product}", "{product} {material}", "{brand} {product}", "{adj} {material} {product}",
                   "best {product} {use}", "{product}"]


def make_items(n: int, seed: int = 0) -> list[Any]:
    """`n` items: "<brand> <adjective> <material> <product>" titles, one category per product."""
    from lmrec.stores.records import ItemRecord

    rng = random.Random(seed)
    out = []
    for i in range(n):
        product = PRODUCTS[i % len(PRODUCTS)]
        adj, material, brand, use = (rng.choice(ADJECTIVES), rng.choice(MATERIALS), rng.choice(BRANDS),
                                     rng.choice(USES))
        out.append(ItemRecord(f"it{i:06d}", title=f"{brand} {adj} {material} {product}",
                              text=f"A {adj} {product} in {material}, {use}.", categories=(product,),
                              attributes={"brand": brand, "price": round(rng.uniform(5, 500), 2)}))
    return out


def make_events(n_items: int, n_users: int, per_user: int, seed: int = 0) -> list[Any]:
    """Users with two favourite products who mostly pick popular items of them (Zipf-like)."""
    from lmrec.stores.records import EventRecord

    rng = np.random.default_rng(seed)
    n_products = len(PRODUCTS)
    per_product = n_items // n_products
    weights = 1.0 / np.arange(1, per_product + 1) ** 0.9
    weights /= weights.sum()
    t0 = time.time() - 30 * 86400
    events = []
    for u in range(n_users):
        likes = rng.choice(n_products, size=2, replace=False)
        ranks = rng.choice(per_product, size=per_user, p=weights)
        prods = rng.choice(likes, size=per_user)
        kinds = rng.choice(["view", "view", "view", "click", "cart", "purchase"], size=per_user)
        for j in range(per_user):
            item = int(ranks[j]) * n_products + int(prods[j])
            events.append(EventRecord(f"user{u:06d}", f"it{item:06d}", str(kinds[j]), 1.0,
                                      t0 + u * 10.0 + j))
    events.sort(key=lambda e: e.timestamp)
    return events


def build_home(home: Path, n_items: int, n_users: int, per_user: int) -> dict[str, Any]:
    """Write the catalog and the event log into the home's SQLite store (once per home)."""
    from lmrec.stores.sql import open_store

    home.mkdir(parents=True, exist_ok=True)
    store = open_store(f"sqlite:///{home}/lmrec.db")
    try:
        if store.count_items() == 0:
            items = make_items(n_items)
            events = make_events(n_items, n_users, per_user)
            with Progress(console=console, transient=True) as bar:
                t = bar.add_task(f"writing {n_items} items", total=n_items)
                for s in range(0, n_items, 5000):
                    store.upsert_items(items[s:s + 5000])
                    bar.advance(t, min(5000, n_items - s))
                t = bar.add_task(f"writing {len(events)} events", total=len(events))
                for s in range(0, len(events), 10_000):
                    store.append_events(events[s:s + 10_000])
                    bar.advance(t, min(10_000, len(events) - s))
        return {"items": store.count_items(), "events": store.count_events()}
    finally:
        store.close()


def admin_key(home: Path) -> str:
    from lmrec.serving.auth import create_api_key
    from lmrec.stores.sql import open_store

    store = open_store(f"sqlite:///{home}/lmrec.db")
    try:
        return create_api_key(store, "benchmark", ["admin"])[0]
    finally:
        store.close()


# ---- the server -------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    base: str
    open_s: float

    def rss_mb(self) -> float:
        """Resident memory of the server process (Linux /proc)."""
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return float("nan")

    def cpu_s(self) -> float:
        """CPU seconds (user + system, all threads) the server has used so far (Linux /proc)."""
        with open(f"/proc/{self.proc.pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def launch(serve_args: list[str], log: Path, env_extra: dict[str, str], status: str) -> Server:
    """`lmrec serve SERVE_ARGS` on a free port with no rate limit, no progress bars, offline
    models and warning-level logs (the per-request access log is at INFO), ready when it
    returns (`open_s`: the time to /ready)."""
    port = free_port()
    env = {**os.environ, "LMREC_RATE_LIMIT_RPS": "0", "LMREC_ENGINE__PROGRESS": "false", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", **env_extra}
    cmd = [sys.executable, "-m", "lmrec.cli.main", "serve", *serve_args, "--port", str(port),
           "--log-level", "warning"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    with console.status(status):
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}; see {log}")
            try:
                if httpx.get(f"{base}/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
    return Server(proc, base, time.perf_counter() - t0)


def start_server(home: Path, query_encoder: str, log: Path, config: str, ranking_threads: int = 2) -> Server:
    """`lmrec serve --config` with the fake-384 catalog (and pipeline) encoder, the real query
    encoder and HNSW. When the home has no version of `config`, opening fits one
    (`server_open_s` includes it)."""
    return launch(["--home", str(home), "--encoder", "fake-384", "--index", "hnsw", "--config", config], log,
                  {"LMREC_ENGINE__QUERY_ENCODER": query_encoder,
                   "LMREC_ENGINE__OVERRIDES": json.dumps({"encoder": "fake-384"}),
                   "LMREC_RANKING_THREADS": str(ranking_threads)},
                  "starting the server (the first start embeds the catalog and fits the pipeline)")


# ---- the open-loop client ---------------------------------------------------------------------------
@dataclass
class Run:
    latencies_ms: list[float] = field(default_factory=list)   # from scheduled time to response
    lag_ms: list[float] = field(default_factory=list)          # how late the client sent (client saturation)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    stages: dict[str, list[float]] = field(default_factory=dict)  # server ms per pipeline stage

    @property
    def n_ok(self) -> int:
        return len(self.latencies_ms)

    def row(self, **ids: Any) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.asarray([np.nan])
        ok = len(self.latencies_ms)
        return {**ids, "p50_ms": float(np.percentile(lat, 50)), "p90_ms": float(np.percentile(lat, 90)),
                "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max()),
                "req_per_s": ok / self.seconds if self.seconds else 0.0, "ok": ok,
                "errors": sum(self.errors.values()), "error_kinds": dict(self.errors),
                "client_lag_p99_ms": float(np.percentile(self.lag_ms, 99)) if self.lag_ms else 0.0,
                # an open-loop figure is the server's only when the client sent on time
                "client_kept_up": bool(not self.lag_ms or np.percentile(self.lag_ms, 99) < 50.0),
                **({"stage_ms_p50": {k: round(float(np.percentile(v, 50)), 3) for k, v in self.stages.items()},
                    "stage_ms_p99": {k: round(float(np.percentile(v, 99)), 3) for k, v in self.stages.items()}}
                   if self.stages else {})}


#: requests in flight at once; a request scheduled while this many are outstanding is counted
#: as an error ("overloaded") instead of being queued in the client, so an overloaded server
#: shows up as errors rather than as an ever-growing client queue (httpcore's pool also slows
#: down quadratically with thousands of waiting requests)
MAX_IN_FLIGHT = 256


async def open_loop(base: str, headers: dict[str, str], rate: float, seconds: float,
                    make_request: Any, label: str, on_tick: Any = None) -> Run:
    """Send `make_request(i)` -> (method, path, params) at `rate` per second for `seconds`."""
    run = Run()
    n = int(rate * seconds)
    in_flight = 0
    limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30, limits=limits) as client:
        async def one(i: int, scheduled: float) -> None:
            nonlocal in_flight
            method, path, params = make_request(i)
            run.lag_ms.append((time.perf_counter() - scheduled) * 1000)
            try:
                r = await client.request(method, path, params=params)
                if r.status_code == 200:
                    run.latencies_ms.append((time.perf_counter() - scheduled) * 1000)
                else:
                    run.errors[str(r.status_code)] = run.errors.get(str(r.status_code), 0) + 1
            except httpx.HTTPError as e:
                run.errors[type(e).__name__] = run.errors.get(type(e).__name__, 0) + 1
            finally:
                in_flight -= 1

        tasks = []
        t0 = time.perf_counter()
        next_tick = t0 + 10.0
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"{label}: {rate:g} req/s for {seconds:g} s", total=n)
            for i in range(n):
                scheduled = t0 + i / rate
                # always yield to the event loop, so responses are read even when the client is late
                await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
                if time.perf_counter() - t0 > seconds + 1.0:
                    # the client could not send at the rate (CPU-starved): the phase still ends on time
                    run.errors["not_sent_client_behind"] = n - i
                    break
                if in_flight >= MAX_IN_FLIGHT:
                    run.errors["overloaded"] = run.errors.get("overloaded", 0) + 1
                else:
                    in_flight += 1
                    tasks.append(asyncio.create_task(one(i, scheduled)))
                if i % max(1, int(rate // 4)) == 0:
                    bar.update(task, completed=i)
                if on_tick is not None and time.perf_counter() >= next_tick:
                    on_tick(time.perf_counter() - t0)
                    next_tick += 10.0
            await asyncio.gather(*tasks)
        run.seconds = time.perf_counter() - t0
    r = run.row()
    console.print(f"{label}: {r['ok']} ok, {r['errors']} errors {r['error_kinds'] or ''}, p50 {r['p50_ms']:.1f} ms, "
                  f"p99 {r['p99_ms']:.1f} ms, {r['req_per_s']:.1f} req/s, client lag p99 {r['client_lag_p99_ms']:.1f} ms")
    return run


def sequential(base: str, headers: dict[str, str], n: int, make_request: Any, label: str) -> Run:
    """`n` requests one at a time (closed loop, one in flight): the latency of a request when
    nothing else queues in front of it, and the server's time per pipeline stage."""
    run = Run()
    t_start = time.perf_counter()
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for i in range(n):
            method, path, params = make_request(i)
            t0 = time.perf_counter()
            r = client.request(method, path, params=params)
            if r.status_code == 200:
                run.latencies_ms.append((time.perf_counter() - t0) * 1000)
                for stage, ms in r.json().get("timings_ms", {}).items():
                    run.stages.setdefault(stage, []).append(ms)
            else:
                run.errors[str(r.status_code)] = run.errors.get(str(r.status_code), 0) + 1
    run.seconds = time.perf_counter() - t_start
    r = run.row()
    console.print(f"{label} (one at a time): p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms")
    return run


# ---- the wrk client ----------------------------------------------------------------------------------
#: wrk script: replays a file of request paths; each connection pauses an exponentially distributed
#: time between its requests, so 40 mostly idle connections send a Poisson stream at the target rate
#: (a few connections sending back to back would hide the server's queueing: closed loop)
WRK_LUA = r"""
local paths = {}
for line in io.lines(os.getenv("LMREC_WRK_PATHS")) do paths[#paths + 1] = line end
local pause = tonumber(os.getenv("LMREC_WRK_PAUSE_MS"))
local i = 0
math.randomseed(tonumber(os.getenv("LMREC_WRK_SEED") or "1"))
wrk.headers["Authorization"] = "Bearer " .. os.getenv("LMREC_WRK_KEY")
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
delay = function() return -math.log(1 - math.random()) * pause end
done = function(summary, latency, requests)
  local f = io.open(os.getenv("LMREC_WRK_OUT"), "w")
  local e = summary.errors
  f:write(string.format('{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, "max_us": %d, ' ..
    '"mean_us": %.1f}', summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
  f:close()
end
"""


@dataclass
class WrkRun:
    """The summary wrk reports (percentiles from its HdrHistogram, latency from each send)."""

    stats: dict[str, Any]
    connections: int
    pause_ms: float

    def row(self, **ids: Any) -> dict[str, Any]:
        st = self.stats
        seconds = st["duration_us"] / 1e6
        errors = {k: st[k] for k in ("connect", "read", "write", "status", "timeout") if st[k]}
        ok = st["requests"] - st["status"]
        return {**ids, "p50_ms": st["p50_us"] / 1000, "p90_ms": st["p90_us"] / 1000, "p99_ms": st["p99_us"] / 1000,
                "p999_ms": st["p999_us"] / 1000, "max_ms": st["max_us"] / 1000, "req_per_s": ok / seconds,
                "ok": ok, "errors": sum(errors.values()), "error_kinds": errors, "client": "wrk",
                "connections": self.connections, "mean_pause_ms": round(self.pause_ms, 1)}

    @property
    def n_ok(self) -> int:
        return int(self.stats["requests"] - self.stats["status"])


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_phase(base: str, key: str, rate: float, seconds: float, make_request: Any, label: str,
              connections: int = 40, expected_ms: float = 3.0, on_tick: Any = None) -> WrkRun:
    """`wrk -t1` (one client thread: the other core is the server's) at about `rate` req/s
    for `seconds` s, replaying the paths `make_request(i)` gives."""
    from urllib.parse import urlencode

    n = int(rate * (seconds + 5)) + 100
    with tempfile.TemporaryDirectory() as tmp:
        paths, script, out = Path(tmp) / "paths.txt", Path(tmp) / "load.lua", Path(tmp) / "out.json"
        with paths.open("w", encoding="utf-8") as f:
            for i in range(n):
                method, path, params = make_request(i)
                assert method == "GET", method
                f.write(path + ("?" + urlencode(params) if params else "") + "\n")
        script.write_text(WRK_LUA, encoding="utf-8")
        # each connection's cycle is its pause plus one response time: subtract the expected one, and
        # aim 3% above the target (connection start-up and ramp-down cost a little of the rate);
        # the achieved rate is what the row reports
        pause = max(1.0, connections * 1000.0 / (1.03 * rate) - expected_ms)
        env = {**os.environ, "LMREC_WRK_PATHS": str(paths), "LMREC_WRK_PAUSE_MS": str(pause),
               "LMREC_WRK_KEY": key, "LMREC_WRK_OUT": str(out)}
        cmd = ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--timeout", "10s", "-s", str(script), base]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        t0 = time.perf_counter()
        next_tick = 10.0
        with console.status(f"{label}: wrk at ~{rate:g} req/s for {seconds:g} s, {connections} connections"):
            while proc.poll() is None:
                time.sleep(0.5)
                if on_tick is not None and time.perf_counter() - t0 >= next_tick:
                    on_tick(time.perf_counter() - t0)
                    next_tick += 10.0
        text = proc.stdout.read() if proc.stdout else ""
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"wrk failed ({proc.returncode}): {text}")
        run = WrkRun(json.loads(out.read_text()), connections, pause)
    r = run.row()
    console.print(f"{label} (wrk): {r['ok']} ok, {r['errors']} errors {r['error_kinds'] or ''}, p50 {r['p50_ms']:.1f} ms, "
                  f"p99 {r['p99_ms']:.1f} ms, {r['req_per_s']:.1f} req/s")
    return run


def event_to_effect(base: str, headers: dict[str, str], trials: int, item_ids: list[str]) -> Run:
    """POST a click on the first item of a fresh user's list, then GET /recommend until that
    item is gone (consumed items are never recommended): the time from the POST to the first
    GET that shows it."""
    run = Run()
    t_start = time.perf_counter()
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for n in range(trials):
            user = f"e2e-{os.getpid()}-{n}-{time.time_ns()}"
            before = client.get(f"/recommend/{user}", params={"k": 10}).json()
            target = before["items"][0]["item_id"] if before["items"] else item_ids[n % len(item_ids)]
            t0 = time.perf_counter()
            r = client.post("/events", json={"user_id": user, "item_id": target, "kind": "click"})
            if r.status_code != 200:
                run.errors[str(r.status_code)] = run.errors.get(str(r.status_code), 0) + 1
                continue
            while True:
                recs = client.get(f"/recommend/{user}", params={"k": 10}).json()
                if target not in {i["item_id"] for i in recs["items"]}:
                    run.latencies_ms.append((time.perf_counter() - t0) * 1000)
                    break
                if time.perf_counter() - t0 > 10.0:
                    run.errors["not_reflected_in_10s"] = run.errors.get("not_reflected_in_10s", 0) + 1
                    break
    run.seconds = time.perf_counter() - t_start
    return run


def make_query(rng: random.Random) -> str:
    return rng.choice(QUERY_TEMPLATES).format(adj=rng.choice(ADJECTIVES), product=rng.choice(PRODUCTS),
                                              material=rng.choice(MATERIALS), brand=rng.choice(BRANDS),
                                              use=rng.choice(USES))


# ---- main ---------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--events-per-user", type=int, default=10)
    ap.add_argument("--rate", type=float, default=150.0, help="/recommend (and soak) requests per second")
    ap.add_argument("--extra-rates", default="", help="more /recommend rates to measure, e.g. 100,120")
    ap.add_argument("--search-rate", type=float, default=50.0, help="/search requests per second")
    ap.add_argument("--seconds", type=float, default=30.0, help="duration of each load phase")
    ap.add_argument("--trials", type=int, default=100, help="event-to-effect trials")
    ap.add_argument("--sequential", type=int, default=300, help="requests per endpoint sent one at a time")
    ap.add_argument("--soak-seconds", type=float, default=0.0)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--config", default="large-catalog", help="the pipeline config served (a file or a shipped name)")
    ap.add_argument("--ranking-threads", type=int, default=2, help="ranking requests computed at once (the rest "
                                                                    "queue in the event loop)")
    ap.add_argument("--query-encoder", default="minilm-int8")
    ap.add_argument("--home", type=Path, default=None, help="default ~/.cache/lmrec/bench/service-<items>-<users>")
    ap.add_argument("--name", default="service", help="result file name")
    ap.add_argument("--client", choices=("auto", "wrk", "python"), default="auto",
                    help="load client of the rate phases: wrk (apt install wrk; auto when on PATH) or the Python "
                         "open-loop client (httpx: ~1 ms of client CPU per request, which a 2-core machine shares "
                         "with the server)")
    ap.add_argument("--connections", type=int, default=40, help="wrk connections")
    args = ap.parse_args()
    use_wrk = args.client == "wrk" or (args.client == "auto" and wrk_available())
    if args.client == "wrk" and not wrk_available():
        raise SystemExit("wrk is not on PATH: install it (Debian/Ubuntu: apt install wrk) or use --client python")

    from lmrec.settings import Settings

    home = args.home or Path(Settings().cache_dir).expanduser() / "bench" / f"service-{args.items}-{args.users}"
    t0 = time.perf_counter()
    sizes = build_home(home, args.items, args.users, args.events_per_user)
    console.print(f"home {home}: {sizes['items']} items, {sizes['events']} events ({time.perf_counter() - t0:.0f} s)")
    key = admin_key(home)
    headers = {"Authorization": f"Bearer {key}"}
    log = home / "server.log"
    server = start_server(home, args.query_encoder, log, args.config, args.ranking_threads)
    console.print(f"server ready in {server.open_s:.1f} s (pid {server.proc.pid}, RSS {server.rss_mb():.0f} MB)")
    rows: list[dict[str, Any]] = []
    try:
        stats = httpx.get(f"{server.base}/admin/stats", headers=headers).json()
        common = {"dataset": f"generated-{args.items // 1000}k", "split": "live"}
        cf_model = "pipeline"
        pipe = stats["pipeline"]
        console.print(f"serving {stats['model_version']}: channels {pipe['channels']}, ranker {pipe['ranker']}, "
                      f"fitted on {pipe['fitted_events']} events in {pipe['fit_s']} s")
        base_params = {"config": args.config, "n_items": stats["n_items"], "n_users": stats["n_users"],
                       "n_events": stats["n_events"], "k": args.k, "index": "hnsw", "item_encoder": "fake-384",
                       "query_encoder": args.query_encoder, "workers": 1, "fit_s": pipe["fit_s"],
                       "ranking_threads": args.ranking_threads}
        rng = random.Random(0)
        users = [f"user{u:06d}" for u in range(args.users)]

        def recommend_request(i: int) -> tuple[str, str, dict[str, Any]]:
            user = users[rng.randrange(len(users))] if rng.random() > 0.1 else f"unknown{i}"
            return "GET", f"/recommend/{user}", {"k": args.k}

        def search_request(i: int) -> tuple[str, str, dict[str, Any]]:
            return "GET", "/search", {"q": make_query(rng), "k": args.k}

        def measured(phase: Any) -> tuple[Run, float]:
            """Run a phase; also the server's CPU milliseconds per successful request (how much
            of a core one request costs, whatever the other load on the machine)."""
            cpu0 = server.cpu_s()
            run = phase()
            return run, (server.cpu_s() - cpu0) * 1000 / max(1, run.n_ok)

        def load(rate: float, seconds: float, make: Any, label: str, on_tick: Any = None) -> Any:
            if use_wrk:
                return wrk_phase(server.base, key, rate, seconds, make, label, args.connections,
                                 expected_ms=seq_p50.get(label, 3.0), on_tick=on_tick)
            return asyncio.run(open_loop(server.base, headers, rate, seconds, make, label, on_tick=on_tick))

        seq_p50: dict[str, float] = {}

        # warm-up: first requests load lazy state (BM25 caches, the query encoder's graph)
        sequential(server.base, headers, 40, lambda i: search_request(i) if i % 2 else recommend_request(i),
                   "warm-up")

        channels_desc = "+".join(pipe["channels"]) + f" -> {pipe['ranker']}"
        for endpoint, make, model, channels in (("/recommend", recommend_request, cf_model, channels_desc),
                                                ("/search", search_request, "hybrid", "bm25+dense")):
            seq, cpu = measured(lambda make=make, endpoint=endpoint: sequential(server.base, headers, args.sequential,
                                                                                 make, endpoint))
            seq_p50[endpoint] = float(np.percentile(seq.latencies_ms, 50)) if seq.latencies_ms else 3.0
            rows.append(seq.row(**common, server_cpu_ms_per_req=cpu, model=model, endpoint=f"{endpoint} sequential",
                                params={**base_params, "requests": args.sequential, "in_flight": 1,
                                        "channels": channels}))
        rec, rec_cpu = measured(lambda: load(args.rate, args.seconds, recommend_request, "/recommend"))
        rows.append(rec.row(**common, server_cpu_ms_per_req=rec_cpu, model=cf_model, endpoint="/recommend",
                            params={**base_params, "rate": args.rate, "seconds": args.seconds,
                                    "channels": channels_desc}))
        for extra in [float(x) for x in args.extra_rates.split(",") if x.strip()]:
            more, more_cpu = measured(lambda extra=extra: load(extra, args.seconds, recommend_request, "/recommend"))
            rows.append(more.row(**common, server_cpu_ms_per_req=more_cpu, model=cf_model, endpoint="/recommend",
                                 params={**base_params, "rate": extra, "seconds": args.seconds,
                                         "channels": channels_desc}))
        srch, srch_cpu = measured(lambda: load(args.search_rate, args.seconds, search_request, "/search"))
        rows.append(srch.row(**common, server_cpu_ms_per_req=srch_cpu, model="hybrid", endpoint="/search",
                             params={**base_params, "rate": args.search_rate, "seconds": args.seconds,
                                     "channels": "bm25+dense"}))
        e2e = event_to_effect(server.base, headers, args.trials, [f"it{i:06d}" for i in range(100)])
        rows.append(e2e.row(**common, model=cf_model, endpoint="event->recommend",
                            params={**base_params, "trials": args.trials}))
        if args.soak_seconds > 0:
            samples: list[tuple[float, float]] = [(0.0, server.rss_mb())]

            def soak_request(i: int) -> tuple[str, str, dict[str, Any]]:
                return search_request(i) if i % 5 == 0 else recommend_request(i)

            def sample(elapsed: float) -> None:
                samples.append((elapsed, server.rss_mb()))

            seq_p50["soak"] = 0.8 * seq_p50.get("/recommend", 3.0) + 0.2 * seq_p50.get("/search", 5.0)
            t_soak = time.perf_counter()
            soak, soak_cpu = measured(lambda: load(args.rate, args.soak_seconds, soak_request, "soak", on_tick=sample))
            samples.append((time.perf_counter() - t_soak, server.rss_mb()))
            t_s, rss = np.array(samples).T
            slope = float(np.polyfit(t_s / 60.0, rss, 1)[0]) if len(samples) > 2 else float("nan")
            # growth after the first minute (caches, allocator arenas warming up) is what a leak looks like
            late = [(t, m) for t, m in samples if t >= 60.0]
            late_slope = (float(np.polyfit(np.array([t for t, _ in late]) / 60.0, [m for _, m in late], 1)[0])
                          if len(late) > 2 else float("nan"))
            rows.append(soak.row(**common, server_cpu_ms_per_req=soak_cpu, model=cf_model,
                                 endpoint="soak",
                                 params={**base_params, "rate": args.rate, "seconds": args.soak_seconds,
                                         "mix": "80% recommend, 20% search"},
                                 rss_start_mb=float(rss[0]), rss_end_mb=float(rss[-1]), rss_max_mb=float(rss.max()),
                                 rss_slope_mb_per_min=slope, rss_slope_after_1min_mb_per_min=late_slope,
                                 rss_samples=[[round(t, 1), round(m, 1)] for t, m in samples]))
        for row in rows:
            row["server_open_s"] = round(server.open_s, 1)
            row["load_average_1min"] = round(os.getloadavg()[0], 2)
    finally:
        server.stop()
    command = " ".join(["python benchmarks/service.py", *sys.argv[1:]])
    for row in rows:
        row["reproduce"] = command
    write_results(args.name, rows, command=command, out_dir=RESULTS)
    extra = _details_table(rows) + "\n\n" + _stages_table(rows)
    md = RESULTS / f"{args.name}.md"
    md.write_text(md.read_text(encoding="utf-8") + "\n" + extra + "\n", encoding="utf-8")
    console.print(rich_table(rows, title="service latency"))
    console.print(extra)
    console.print(f"wrote {RESULTS / (args.name + '.json')}")


def _stages_table(rows: list[dict[str, Any]]) -> str:
    """The server's time per pipeline stage of the requests sent one at a time."""
    out = []
    for r in rows:
        if "stage_ms_p50" not in r:
            continue
        out += [f"Server time per stage, {r['endpoint']} ({r['params'].get('requests')} requests):", "",
                "| stage | p50 ms | p99 ms |", "|---|---|---|"]
        out += [f"| {k} | {v:.3f} | {r['stage_ms_p99'][k]:.3f} |" for k, v in r["stage_ms_p50"].items()]
        out.append("")
    return "\n".join(out)


def _details_table(rows: list[dict[str, Any]]) -> str:
    """Per-endpoint details the generic table does not show."""
    cols = ["endpoint", "client", "connections", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "req_per_s", "ok",
            "errors", "client_lag_p99_ms",
            "client_kept_up", "server_cpu_ms_per_req",
            "rss_start_mb", "rss_end_mb", "rss_max_mb", "rss_slope_after_1min_mb_per_min", "load_average_1min"]
    cols = [c for c in cols if any(c in r for r in rows)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "-")
            cells.append(f"{v:.2f}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
