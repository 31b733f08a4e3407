"""Served quality: what the HTTP service gives its users, measured through the front door.

For each data set this starts `lmrec serve` as a subprocess on a fresh home, feeds it as a shop
would (the catalog through POST /items with title, categories, text, attributes and release
time; every training event through POST /events with its timestamp, in time order), asks
GET /recommend/{user}?k=20 for every test user over HTTP and scores the lists with lmrec's
full-ranking evaluator (seen items are already excluded by the service; the test item is the
held-out one):

1. "served default": the service as it starts, before any training (the shipped
   `serve-default` pipeline: transitions + LM profile + decayed popularity, learned online
   from the events as they arrived) -- must not be worse than popularity;
2. "popular (offline)": `lmrec eval --model popular` on the same split, the bar of (1);
3. "served trained": after POST /admin/train with the data set's pipeline config (channels,
   LightGBM LambdaRank over the default features, re-rank) fitted on the stored events;
4. "offline lmrec eval": the same config fitted and evaluated offline (`lmrec eval --model
   pipeline --params '{"config": ...}'`); (3) must be within 0.005 NDCG@10 of it. The paired
   bootstrap CI of served - offline is in the row.

Data: ML-100k (temporal leave-one-out: every rating but each user's last is sent, the last is
the test item) with configs/ml-100k-seq.toml, and Amazon Scientific (its given split: train +
valid sent, test held out; events are positions in a sequence, sent as timestamps 1, 2, ...
with `has_timestamps = false`) with configs/amazon-scientific.toml. Both use the packaged
MiniLM encoder and the data sets' own item text templates (`LMREC_ENGINE__ITEM_TEMPLATE`).

    python benchmarks/served.py                                   # both data sets
    python benchmarks/served.py --dataset ml-100k --config configs/ml-100k.toml
    python benchmarks/served.py --tune-default                    # the serve-default weights, on validation

`--tune-default` is offline and fast: it evaluates a small grid of serve-default channel
weights on the validation splits of both data sets (fit on train, scored on valid), writes the
grid to benchmarks/results/served_default_grid.json and prints the best point, which
src/lmrec/configs/serve-default.toml records. Nothing is tuned on test.

Writes benchmarks/results/served.json and served.md (rows of other data sets are kept).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.progress import Progress

from lmrec.data.loaders import load_dataset
from lmrec.eval.evaluator import EvalResult, evaluate, evaluate_scores
from lmrec.eval.experiment import make_split
from lmrec.eval.report import rich_table, write_results
from lmrec.eval.significance import compare
from lmrec.pipeline import RecPipeline
from lmrec.recall.popular import MostPopular
from lmrec.text.templates import TEMPLATES

RESULTS = Path(__file__).parent / "results"
console = Console()

DATASETS: dict[str, dict[str, Any]] = {
    "ml-100k": {"split": "temporal-loo", "config": "configs/ml-100k-seq.toml", "template": TEMPLATES["ml-100k"],
                "clock": True, "kind": "rating"},
    "amazon-scientific": {"split": "given", "config": "configs/amazon-scientific.toml", "template": "{description}",
                          "clock": False, "kind": "purchase"},
}
K = 20
BATCH = 1000


# ---- the server ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`lmrec serve` in a subprocess on a fresh home (no auth, no rate limit)."""

    def __init__(self, home: Path, template: str, clock: bool, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "LMREC_ENGINE__ITEM_TEMPLATE": template, "LMREC_ENGINE__HAS_TIMESTAMPS": str(clock).lower(),
               "LMREC_RATE_LIMIT_RPS": "0", "LMREC_MAX_BODY_BYTES": "50000000", "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "lmrec.cli.main", "serve", "--home", str(home), "--encoder", "minilm",
               "--port", str(self.port), "--no-auth", "--log-level", "info"]
        self.log = log
        self.proc = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)
        self.client = httpx.Client(base_url=self.base, timeout=httpx.Timeout(7200.0, connect=10.0))
        t0 = time.perf_counter()
        with console.status("starting the server"):
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}; see {log}")
                try:
                    if self.client.get("/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.3)
        self.start_s = time.perf_counter() - t0

    def post(self, path: str, body: Any) -> dict[str, Any]:
        r = self.client.post(path, json=body)
        if r.status_code >= 300:
            raise RuntimeError(f"POST {path}: {r.status_code} {r.text[:500]}")
        return r.json()

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ---- feeding it -----------------------------------------------------------------------------------
def item_bodies(name: str, ds: Any) -> list[dict[str, Any]]:
    t = ds.item_table
    out = []
    for i, item_id in enumerate(ds.items.ids):
        attrs = {k: v[i] for k, v in t.attributes.items() if v[i] is not None and v[i] == v[i]}
        body = {"item_id": item_id, "title": t.title[i][:500], "categories": [c[:100] for c in t.categories[i]][:20],
                "attributes": attrs}
        if name == "amazon-scientific":
            body["text"] = t.text["full_text"][i]
        if t.created_at is not None and t.created_at[i] >= 0:
            body["created_at"] = float(t.created_at[i])
        out.append(body)
    return out


def event_bodies(name: str, ds: Any, train: Any) -> list[dict[str, Any]]:
    kind = DATASETS[name]["kind"]
    offset = 0 if DATASETS[name]["clock"] else 1  # positions 0, 1, ... (0 would mean "now" to the service)
    order = np.lexsort((train.item, train.timestamp))
    return [{"user_id": ds.users.ids[train.user[j]], "item_id": ds.items.ids[train.item[j]], "kind": kind,
             "value": float(train.value[j]), "timestamp": float(train.timestamp[j] + offset)} for j in order]


def feed(server: Server, name: str, ds: Any, train: Any) -> dict[str, float]:
    items, events = item_bodies(name, ds), event_bodies(name, ds, train)
    t0 = time.perf_counter()
    for s in range(0, len(items), BATCH):
        server.post("/items", {"items": items[s:s + BATCH]})
    t1 = time.perf_counter()
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"{name}: POST /events", total=len(events))
        for s in range(0, len(events), BATCH):
            got = server.post("/events", {"events": events[s:s + BATCH], "all_or_nothing": True})
            assert got["accepted"] == len(events[s:s + BATCH]), got
            bar.advance(task, BATCH)
    t2 = time.perf_counter()
    console.print(f"{name}: {len(items)} items in {t1 - t0:.1f} s, {len(events)} events in {t2 - t1:.1f} s "
                  f"({len(events) / (t2 - t1):.0f}/s)")
    return {"items_s": round(t1 - t0, 1), "events_s": round(t2 - t1, 1),
            "events_per_s": round(len(events) / (t2 - t1), 1)}


def served_lists(server: Server, ds: Any, users: np.ndarray, label: str) -> tuple[dict[int, list[int]], dict]:
    """GET /recommend for every user (4 requests in flight); lists as item indices, and the
    mean per-stage server times."""
    lists: dict[int, list[int]] = {}
    stages: dict[str, list[float]] = {}
    versions: set[str] = set()

    def one(u: int) -> tuple[int, dict[str, Any]]:
        r = server.client.get(f"/recommend/{ds.users.ids[u]}", params={"k": K})
        r.raise_for_status()
        return u, r.json()

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(4) as pool, Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"{label}: GET /recommend", total=len(users))
        for u, body in pool.map(one, users.tolist()):
            lists[u] = [ds.items.index(i["item_id"]) for i in body["items"]]
            versions.add(body["model_version"])
            for k, v in body["timings_ms"].items():
                stages.setdefault(k, []).append(v)
            bar.advance(task)
    took = time.perf_counter() - t0
    info = {"versions": sorted(versions), "requests_s": round(took, 1),
            "stage_ms": {k: round(float(np.mean(v)), 3) for k, v in stages.items()},
            "total_ms_p50": round(float(np.percentile(stages["total"], 50)), 2),
            "total_ms_p99": round(float(np.percentile(stages["total"], 99)), 2)}
    return lists, info


def score_lists(lists: dict[int, list[int]], split: Any) -> EvalResult:
    n_items = split.dataset.n_items

    def score(users: np.ndarray) -> np.ndarray:
        out = np.full((len(users), n_items), -np.inf, np.float32)
        for r, u in enumerate(users.tolist()):
            got = lists.get(u, [])
            out[r, got] = np.arange(len(got), 0, -1, dtype=np.float32)
        return out

    return evaluate_scores(score, split, stage="test")


def row(res: EvalResult, name: str, split: Any, what: str, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    m = res.metrics
    out = {"dataset": name, "split": split.name, "model": "pipeline" if "config" in params else "popular",
           "what": what, "params": params}
    for key in ("NDCG@10", "HR@10", "MRR@10", "Recall@20", "NDCG@10_se", "HR@10_se", "coverage@10"):
        if key in m:
            out[key] = round(float(m[key]), 4)
    out["users"] = int(len(res.users))
    out.update(extra)
    return out


def vs(r: dict[str, Any], res: EvalResult, ref: EvalResult, ref_name: str) -> None:
    b = compare(res, ref, "NDCG@10")
    r.update({"delta_NDCG@10": round(b.mean_diff, 4), "ci_low": round(b.ci_low, 4), "ci_high": round(b.ci_high, 4),
              "vs": ref_name})


# ---- one data set -------------------------------------------------------------------------------------
def run_dataset(name: str, config: str, home: Path, skip_offline: bool) -> list[dict[str, Any]]:
    spec = DATASETS[name]
    ds = load_dataset(name)
    split = make_split(ds, spec["split"])
    train = split.train_valid
    users = np.unique(split.test.user)
    console.rule(f"{name}: {ds.n_items} items, {len(train)} training events, {len(users)} test users")
    rows: list[dict[str, Any]] = []

    t0 = time.perf_counter()
    pop = evaluate(MostPopular().fit(train, ds), split, stage="test")
    r_pop = row(pop, name, split, "popular (offline lmrec eval)", {}, fit_s=round(time.perf_counter() - t0, 2))

    home.parent.mkdir(parents=True, exist_ok=True)
    server = Server(home, spec["template"], spec["clock"], home.parent / f"{name}-server.log")
    try:
        fed = feed(server, name, ds, train)
        lists, info = served_lists(server, ds, users, "served default")
        default = score_lists(lists, split)
        r_def = row(default, name, split, "served default (untrained)", {"config": "serve-default"},
                    start_s=round(server.start_s, 1), **fed, **info)
        vs(r_def, default, pop, "popular (offline)")
        rows += [r_def, r_pop]
        console.print(f"served default NDCG@10 {r_def['NDCG@10']:.4f} vs popular {r_pop['NDCG@10']:.4f}")

        t1 = time.perf_counter()
        got = server.post("/admin/train", {"config": str(Path(config).resolve())})
        train_s = time.perf_counter() - t1
        stats = server.client.get("/admin/stats").json()
        console.print(f"trained {got['model_version']} in {train_s:.0f} s")
        lists, info = served_lists(server, ds, users, "served trained")
        served = score_lists(lists, split)
        r_srv = row(served, name, split, "served trained (POST /admin/train)", {"config": config},
                    train_s=round(train_s, 1), fit_s=stats["pipeline"]["fit_s"], **info)
        rows.append(r_srv)
    finally:
        server.close()

    if not skip_offline:
        t2 = time.perf_counter()
        pipe = RecPipeline(config).fit(train, ds)
        fit_s = time.perf_counter() - t2
        offline = evaluate(pipe, split, stage="test")
        r_off = row(offline, name, split, "offline lmrec eval", {"config": config}, fit_s=round(fit_s, 1))
        vs(r_srv, served, offline, "offline lmrec eval")
        rows.append(r_off)
        console.print(f"served trained NDCG@10 {r_srv['NDCG@10']:.4f} vs offline {r_off['NDCG@10']:.4f} "
                      f"(delta {r_srv['delta_NDCG@10']:+.4f} [{r_srv['ci_low']:+.4f}, {r_srv['ci_high']:+.4f}])")
    return rows


# ---- tuning the untrained default on validation -------------------------------------------------
def tune_default() -> None:
    grid = [{"transitions": 1.0, "lm": lw, "popular": pw, "half_life_days": 30.0}
            for lw in (0.5, 1.0, 1.5, 2.0) for pw in (0.0, 0.3)]
    out = []
    for name, spec in DATASETS.items():
        ds = load_dataset(name)
        split = make_split(ds, spec["split"])
        ds.template = spec["template"] if name == "ml-100k" else "{full_text}"
        for point in grid:
            over = {"encoder": "minilm", "channels": [
                {"name": "transitions", "weight": point["transitions"]}, {"name": "lm", "weight": point["lm"]},
                {"name": "popular", "weight": point["popular"], "params": {"half_life_days": point["half_life_days"]}}]}
            pipe = RecPipeline("serve-default", overrides=over).fit(split.train, ds)
            res = evaluate(pipe, split, stage="valid")
            out.append({"dataset": name, **point, "valid_NDCG@10": round(float(res.metrics["NDCG@10"]), 4)})
            console.print(out[-1])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "served_default_grid.json").write_text(json.dumps(
        {"command": "python benchmarks/served.py --tune-default", "rows": out}, indent=1) + "\n")
    # the best point by mean rank over the data sets
    keys = [tuple(p.values()) for p in grid]
    ranks = np.zeros(len(grid))
    for name in DATASETS:
        vals = np.array([r["valid_NDCG@10"] for r in out if r["dataset"] == name])
        ranks += np.argsort(np.argsort(-vals))
    best = grid[int(np.argmin(ranks))]
    console.print(f"best by mean validation rank: {best} ({keys[int(np.argmin(ranks))]})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", action="append", choices=list(DATASETS), help="repeatable; default: both")
    ap.add_argument("--config", help="pipeline config for --dataset (default: the data set's)")
    ap.add_argument("--skip-offline", action="store_true", help="no offline fit (served rows only)")
    ap.add_argument("--tune-default", action="store_true", help="tune serve-default's weights on validation")
    args = ap.parse_args()
    if args.tune_default:
        tune_default()
        return
    names = args.dataset or list(DATASETS)
    if args.config and len(names) != 1:
        ap.error("--config needs exactly one --dataset")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lmrec-served-") as tmp:
        for name in names:
            config = args.config or DATASETS[name]["config"]
            rows += run_dataset(name, config, Path(tmp) / name / "home", args.skip_offline)
    path = RESULTS / "served.json"
    if path.exists():  # keep the other data sets' rows
        old = json.loads(path.read_text())["rows"]
        rows = [r for r in old if r["dataset"] not in names] + rows
    command = "python benchmarks/served.py" + "".join(f" --dataset {n}" for n in (args.dataset or [])) + \
        (f" --config {args.config}" if args.config else "") + (" --skip-offline" if args.skip_offline else "")
    write_results("served", rows, command, RESULTS, notes=NOTES)
    console.print(rich_table(rows, title="served"))


NOTES = ("Quality of what the HTTP service serves, fed and queried as a client would (see the docstring of "
         "benchmarks/served.py). `what`: served default = the service before any training; served trained = "
         "after POST /admin/train with the row's config; offline lmrec eval = the same config fitted and "
         "evaluated offline. delta = paired bootstrap of NDCG@10 against `vs`. stage_ms: mean server time per "
         "pipeline stage of the served requests.")


if __name__ == "__main__":
    main()
