"""Real-time behaviour of the in-process serving engine (`lmrec.serving.Engine`).

On a generated catalog (default 100,000 items; titles and descriptions composed from the demo
shop's vocabularies, each with a unique model code) and generated shoppers, measured in
process, one request at a time:

- recommend p50 / p99 (LM profile channel over the HNSW index + popularity fallback; with
  `--cf itemknn` also a trained CF version);
- search p50 / p99: hybrid BM25 + dense (RRF), the query encoded by the REAL `--query-encoder`
  (default minilm, uncached: every query is new) so the encoding cost is included;
- event-to-effect p50 / p99 over `--events` events: a user buys the item at the top of their
  list; the time from the `ingest()` call (durable SQLite commit included) until a
  `recommend()` no longer shows it, and the share of events reflected by the very first
  recommend after ingest (it must be 1.0);
- new-item-to-searchable p50 / p99: from the `upsert_items()` call (store commit, embedding,
  index insert) until `search()` of the item's title returns it in the top 10 (and which
  channels found it).

By default the CATALOG is embedded with the hashing fake encoder `fake-384` (fast to build a
100k catalog; NOT a language model) while queries use minilm (same dimension), so search
latency is realistic but dense relevance is meaningless in that configuration: a new item is
then found through BM25's delta. `--encoder minilm` embeds the catalog with minilm too (use a
smaller `--items`), which measures new-item-to-searchable through dense retrieval as well.

    python benchmarks/realtime.py                                    # 100k items, fake-384 catalog
    python benchmarks/realtime.py --encoder minilm --items 5000 --name realtime  # adds minilm rows

Rows from other configurations already in the results file are kept (keyed by catalog size
and encoders), so both runs above end up in one table. `--home DIR` keeps the engine home, so
a re-run reuses the saved index instead of rebuilding it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from lmrec.eval.report import format_params, write_results
from lmrec.serving.demo import CATEGORIES
from lmrec.serving.engine import Engine, EngineConfig
from lmrec.stores.records import EventRecord, ItemRecord
from lmrec.stores.sql import open_store

RESULTS = Path(__file__).parent / "results"
console = Console()


def catalog(n: int, seed: int = 0) -> list[ItemRecord]:
    """n items across the demo categories (English vocabulary), each title ending in a unique
    model code so no two texts are equal."""
    rng = random.Random(seed)
    cats = list(CATEGORIES.items())
    out = []
    for i in range(n):
        cat, c = cats[i % len(cats)]
        kind, features, uses = rng.choice(c["types"])
        title = " ".join(w for w in (rng.choice(c["brands"]), rng.choice(c["lines"]), kind, f"model {i:x}k") if w)
        out.append(ItemRecord(f"it{i}", title=title, text=f"{rng.choice(features)}, {rng.choice(uses)}.",
                              categories=(cat,), attributes={"brand": title.split()[0],
                                                             "price": round(rng.uniform(10, 999), 2)}))
    return out


def shoppers(items: list[ItemRecord], n_users: int, seed: int = 1) -> list[EventRecord]:
    """Each user browses 5-30 items of one or two categories (popular items more often)."""
    rng = np.random.default_rng(seed)
    by_cat: dict[str, list[str]] = {}
    for it in items:
        by_cat.setdefault(it.categories[0], []).append(it.item_id)
    cats = sorted(by_cat)
    events, t = [], 1_700_000_000.0
    for u in range(n_users):
        likes = rng.choice(cats, size=rng.integers(1, 3), replace=False)
        for _ in range(int(rng.integers(5, 31))):
            pool = by_cat[str(rng.choice(likes))]
            j = min(int(rng.zipf(1.3)) - 1, len(pool) - 1)
            t += 1.0
            events.append(EventRecord(f"user{u}", pool[j], "view" if rng.random() < 0.7 else "click", 1.0, t))
    return events


def pct(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3), "n": len(a)}


def stage_p50(rankings: list[Any]) -> dict[str, float]:
    keys = sorted({k for r in rankings for k in r.timings_ms})
    return {k: round(float(np.median([r.timings_ms.get(k, 0.0) for r in rankings])), 3) for k in keys}


def timed(fn: Any, *args: Any, **kw: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, (time.perf_counter() - t) * 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=5_000)
    ap.add_argument("--encoder", default="fake-384", help="catalog encoder (fake-384, or minilm with fewer items)")
    ap.add_argument("--query-encoder", default="minilm")
    ap.add_argument("--index", default="hnsw", choices=["hnsw", "flat"])
    ap.add_argument("--requests", type=int, default=2000, help="recommend requests measured")
    ap.add_argument("--queries", type=int, default=500, help="search requests measured")
    ap.add_argument("--events", type=int, default=2000, help="event-to-effect samples")
    ap.add_argument("--new-items", type=int, default=300, help="new-item-to-searchable samples")
    ap.add_argument("--cf", default="", help="also train this CF model (e.g. itemknn) and measure recommend with it")
    ap.add_argument("--home", type=Path, default=None, help="engine home (kept; re-runs reuse its index)")
    ap.add_argument("--name", default="realtime")
    ap.add_argument("--render-only", action="store_true", help="rewrite the markdown from the JSON, measure nothing")
    args = ap.parse_args()
    if args.render_only:
        render_only(args.name)
        return
    command = "python benchmarks/realtime.py " + " ".join(sys.argv[1:])
    home = args.home or Path(tempfile.mkdtemp(prefix="lmrec-realtime-"))
    same_space = args.query_encoder == args.encoder or args.encoder.startswith("minilm")
    base = {"dataset": f"generated-{args.items // 1000}k", "catalog_encoder": args.encoder,
            "query_encoder": args.query_encoder, "index": args.index, "n_items": args.items, "n_users": args.users}
    note = ("catalog embedded by the hashing fake encoder (not a language model); queries by "
            f"{args.query_encoder}: latency is real, dense relevance is not" if not same_space else
            f"catalog and queries embedded by {args.encoder}")
    rows: list[dict[str, Any]] = []

    def row(model: str, operation: str, params: dict[str, Any], metrics: dict[str, Any]) -> None:
        r = {"dataset": base["dataset"], "model": model, "operation": operation,
             "params": {**{k: base[k] for k in ("catalog_encoder", "query_encoder", "index")}, **params},
             **metrics, "load_avg_1_5_15": load, "note": note, "reproduce": command}
        rows.append(r)
        console.print(f"[bold]{operation}[/] {model}: " + json.dumps({k: v for k, v in metrics.items()
                                                                      if not isinstance(v, dict)}))

    cfg = EngineConfig(home=home, encoder=args.encoder, query_encoder=args.query_encoder, index=args.index,
                       progress=True, log_rankings=True, save_index_on_close=False)
    items = catalog(args.items)
    events = shoppers(items, args.users)
    load = [round(x, 1) for x in os.getloadavg()]
    try:
        # a fresh store every run; index/ and embeddings/ are kept, so with --home a re-run loads
        # the saved index (the catalog is the same) instead of building it again
        shutil.rmtree(home / "models", ignore_errors=True)
        for stale in home.glob("lmrec.db*"):
            stale.unlink()
        home.mkdir(parents=True, exist_ok=True)
        store = open_store(cfg.resolved_store_url())
        with console.status(f"writing {len(items)} items and {len(events)} events to the store"):
            store.upsert_items(items)
            for s in range(0, len(events), 10_000):
                store.append_events(events[s:s + 10_000])
        store.close()
        t0 = time.perf_counter()
        eng = Engine.open(cfg.model_copy(update={"save_index_on_close": True}))
        first_open_s = time.perf_counter() - t0
        first_source = eng.index_source
        eng.close()
        t0 = time.perf_counter()
        eng = Engine.open(cfg)  # the restart a deploy does: saved index + event replay
        restart_s = time.perf_counter() - t0
        stats = eng.stats()
        console.print(f"first open {first_open_s:.1f}s (index {first_source}), restart {restart_s:.1f}s "
                      f"(index {stats['index_source']}), {stats}")
        rng = random.Random(7)
        users = [f"user{rng.randrange(args.users)}" for _ in range(args.requests)]

        # --- recommend ------------------------------------------------------------------------
        for u in users[:100]:
            eng.recommend(u, k=10)
        ms, out = [], []
        for u in users:
            r, t = timed(eng.recommend, u, k=10)
            ms.append(t)
            out.append(r)
        row("lm-recency", "recommend", {"half_life": cfg.half_life, "k": 10, "channels": "lm+popular"},
            {**pct(ms), "req_per_s": round(1000.0 / float(np.mean(ms)), 1), "stage_p50_ms": stage_p50(out),
             "first_open_s": round(first_open_s, 1), "first_open_index": first_source,
             "restart_s": round(restart_s, 1), "n_events": stats["n_events"]})
        if args.cf:
            version = eng.train_model(args.cf, activate=True)
            ms, out = [], []
            for u in users:
                r, t = timed(eng.recommend, u, k=10)
                ms.append(t)
                out.append(r)
            share = float(np.mean([any("cf" in i.sources for i in r.items) for r in out]))
            row(args.cf, "recommend", {"k": 10, "channels": "lm+cf+popular", "version": version},
                {**pct(ms), "req_per_s": round(1000.0 / float(np.mean(ms)), 1), "stage_p50_ms": stage_p50(out),
                 "share_with_cf": round(share, 3)})

        # --- search (new queries only: nothing comes from the query cache) -----------------------
        words = ["waterproof", "running", "shoe", "tea", "green", "knife", "chef", "headphones", "noise",
                 "cancelling", "tent", "camping", "coffee", "beans", "grinder", "puzzle", "robot", "serum",
                 "sunscreen", "case", "leather", "novel", "history", "python", "lantern", "sleeping", "bag"]
        queries = [" ".join(rng.sample(words, rng.randint(1, 4))) + f" {i}" for i in range(args.queries + 50)]
        for q in queries[:50]:
            eng.search(q, k=10)
        ms, out = [], []
        for q in queries[50:]:
            r, t = timed(eng.search, q, k=10)
            ms.append(t)
            out.append(r)
        row("hybrid", "search", {"k": 10, "fusion": "rrf", "depth": cfg.search_depth},
            {**pct(ms), "req_per_s": round(1000.0 / float(np.mean(ms)), 1), "stage_p50_ms": stage_p50(out)})

        # --- event-to-effect ---------------------------------------------------------------------
        ms, ingest_ms, first = [], [], 0
        for n in range(args.events):
            u = users[n % len(users)]
            top = eng.recommend(u, k=10).items[0].item_id
            t = time.perf_counter()
            eng.ingest([EventRecord(u, top, "purchase", 1.0, 1_800_000_000.0 + n)])
            ingest_ms.append((time.perf_counter() - t) * 1000.0)
            tries = 0
            while True:
                tries += 1
                if top not in {i.item_id for i in eng.recommend(u, k=10).items} or tries >= 1000:
                    break
            ms.append((time.perf_counter() - t) * 1000.0)
            first += tries == 1
        row("lm-recency", "event-to-effect", {"event": "purchase of the user's top item", "store": "sqlite"},
            {**pct(ms), "reflected_first_try": round(first / args.events, 4),
             "ingest_p50_ms": pct(ingest_ms)["p50_ms"], "ingest_p99_ms": pct(ingest_ms)["p99_ms"]})

        # --- new-item-to-searchable --------------------------------------------------------------
        ms, found, ranks, via = [], 0, [], {"dense": 0, "bm25": 0}
        for n in range(args.new_items):
            title = f"Quokka Voyager {n} hiking boot zx{n}q"
            t = time.perf_counter()
            eng.upsert_items([ItemRecord(f"new{n}", title=title, text="Grippy sole for alpine trails.",
                                         categories=("running-shoes",))])
            tries, hit = 0, None
            while hit is None and tries < 100:
                tries += 1
                r = eng.search(title, k=10)
                hit = next((j for j, i in enumerate(r.items) if i.item_id == f"new{n}"), None)
            ms.append((time.perf_counter() - t) * 1000.0)
            found += tries == 1 and hit is not None
            if hit is not None:
                ranks.append(hit + 1)
                for ch in via:
                    via[ch] += ch in r.items[hit].sources
        row("hybrid", "new-item-to-searchable", {"k": 10},
            {**pct(ms), "found_first_try": round(found / args.new_items, 4),
             "mean_rank": round(float(np.mean(ranks)), 2) if ranks else None,
             "found_by_dense": round(via["dense"] / args.new_items, 4),
             "found_by_bm25": round(via["bm25"] / args.new_items, 4),
             "bm25_rebuilds": eng.catalog.keyword.rebuilds})
        eng.close()
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)

    out_json = RESULTS / f"{args.name}.json"
    keep = []
    if out_json.exists():  # rows of other configurations stay
        mine = (base["dataset"], args.encoder, args.query_encoder)
        keep = [r for r in json.loads(out_json.read_text())["rows"]
                if (r["dataset"], r["params"].get("catalog_encoder"), r["params"].get("query_encoder")) != mine]
    write(args.name, keep + rows, command)


#: the checks each operation carries besides its latency
CHECKS = {"recommend": ("restart_s", "first_open_s", "share_with_cf"), "search": (),
          "event-to-effect": ("reflected_first_try", "ingest_p50_ms"),
          "new-item-to-searchable": ("found_first_try", "found_by_dense", "found_by_bm25", "mean_rank")}


def write(name: str, rows: list[dict[str, Any]], command: str) -> None:
    """JSON through `write_results`; the markdown gets an operation column, the checks, and
    every column below."""
    _, md = write_results(name, rows, command, RESULTS)
    head = md.read_text().split("\n\n")[:3]  # title, command, commit / date / machine
    cols = ["dataset", "operation", "model", "catalog / query encoder", "p50_ms", "p99_ms", "req_per_s", "checks"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        enc = f"{r['params']['catalog_encoder']} / {r['params']['query_encoder']}"
        checks = ", ".join(f"{k}={r[k]}" for k in CHECKS.get(r["operation"], ()) if r.get(k) is not None)
        lines.append("| " + " | ".join([r["dataset"], r["operation"], r["model"], enc, str(r["p50_ms"]),
                                        str(r["p99_ms"]), str(r.get("req_per_s", "-")), checks]) + " |")
    notes = ("One request at a time, in process; every row carries the command that reproduces it "
             "(`reproduce`). `fake-384` is the hashing test encoder, not a language model: with it the "
             "catalog builds fast and latencies are real, but dense relevance is not (new items are then "
             "found by BM25). The machine was shared and loaded (1/5/15-min load averages in the rows): "
             "tails (p99) mostly measure waiting for a CPU.")
    md.write_text("\n\n".join(head) + "\n\n" + notes + "\n\n" + "\n".join(lines) +
                  "\n\n## All columns\n\n" + details(rows) + "\n")


def render_only(name: str) -> None:
    """Rewrite the markdown from the JSON already measured (no measurement)."""
    doc = json.loads((RESULTS / f"{name}.json").read_text())
    write(name, doc["rows"], doc["command"])


def details(rows: list[dict[str, Any]]) -> str:
    cols = ["dataset", "operation", "model", "params", "p50_ms", "p99_ms", "req_per_s", "other", "note"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        other = {k: v for k, v in r.items() if k not in cols and k not in ("reproduce", "mean_ms")}
        cells = [format_params(r.get(c)) if c == "params" else
                 format_params(other) if c == "other" else str(r.get(c, "-")) for c in cols]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
