"""/search through the HTTP API with and without the cross-encoder re-ranker: what users get.

Two measurements, each against a real `lmrec serve` process (one uvicorn worker), queried as a
client would (httpx, one request at a time, then an open-loop phase at --rate req/s):

1. `quality`: a home whose catalog is the 54,667 Home Depot products (title as item text,
   embedded by --encoder); every test query of the 80/20 query split of benchmarks/search.py
   (`query_split(0.2, seed=0)`) is sent to GET /search?k=10, with and without the trained
   cross-encoder (`--cross-encoder`, `rerank_top` --top, int8). Metric: NDCG@10 of the returned
   top 10 (linear gain = grade 1-3, unjudged 0), paired bootstrap CI of the difference.
2. `latency`: the generated 100k-item catalog of benchmarks/service.py (fake-384 catalog
   vectors, the real minilm-int8 query encoder, HNSW), /search at one request at a time and at
   --rate req/s, with and without the re-ranker: p50 / p99 ms and the server's re-rank stage time.

    python benchmarks/search_service.py --cross-encoder ~/.cache/lmrec/finetuned/homedepot/ce-minilm
    python benchmarks/search_service.py --part latency --cross-encoder DIR --seconds 10 --name search_service_smoke
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from cross_encoder import bootstrap_delta  # noqa: E402
from service import (Server, admin_key, build_home, console, launch, make_query, open_loop,  # noqa: E402
                     sequential)

from lmrec.eval.report import write_results  # noqa: E402


def start(home: Path, log: Path, env_extra: dict[str, str], encoder: str) -> Server:
    return launch(["--home", str(home), "--encoder", encoder, "--index", "hnsw", "--config", "serve-default"],
                  log, env_extra, "starting the server")


def reranker_env(args: argparse.Namespace, on: bool) -> dict[str, str]:
    if not on:
        return {}
    return {"LMREC_ENGINE__CROSS_ENCODER": str(Path(args.cross_encoder).expanduser().resolve()),
            "LMREC_ENGINE__RERANK_TOP": str(args.top), "LMREC_ENGINE__RERANK_MIX": str(args.mix),
            "LMREC_ENGINE__CROSS_ENCODER_BACKEND": args.backend}


def quality(args: argparse.Namespace) -> list[dict[str, Any]]:
    from lmrec.data.loaders import load_relevance
    from lmrec.eval.metrics import gains_from_arrays, graded_ndcg
    from lmrec.settings import Settings
    from lmrec.stores.records import ItemRecord
    from lmrec.stores.sql import open_store

    hd = load_relevance("homedepot")
    _, test = hd.query_split(test_fraction=0.2, seed=0)
    if args.test_queries:
        test = test.subset_queries(np.arange(min(args.test_queries, test.n_queries)))
    home = Path(args.work).expanduser() / f"search-homedepot-{args.encoder}"
    home.mkdir(parents=True, exist_ok=True)
    store = open_store(f"sqlite:///{home}/lmrec.db")
    try:
        if store.count_items() == 0:
            records = [ItemRecord(str(i), title=t) for i, t in zip(hd.items.ids, hd.item_text)]
            for s in range(0, len(records), 5000):
                store.upsert_items(records[s:s + 5000])
    finally:
        store.close()
    key = admin_key(home)
    gains = gains_from_arrays(test.query_idx, test.item_idx, test.grade, (test.n_queries, hd.n_items))
    rows, per = [], {}
    for on in (False, True):
        t0 = time.perf_counter()
        # the catalog text is the product title, as in benchmarks/search.py, and the embedding cache is the
        # benchmarks' one: the 54,667 MiniLM title vectors are computed once for both
        env = {"LMREC_ENGINE__ITEM_TEMPLATE": "{title}",
               "LMREC_ENGINE__EMBEDDING_CACHE": str(Path(Settings().cache_dir).expanduser() / "embeddings")}
        server = start(home, home / "server.log", reranker_env(args, on) | env, args.encoder)
        console.print(f"quality server ({'re-ranked' if on else 'hybrid only'}) ready in {server.open_s:.0f} s")
        recs = np.full((test.n_queries, 10), -1, np.int64)
        lat = []
        try:
            with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
                for q, text in enumerate(test.queries):
                    t1 = time.perf_counter()
                    r = c.get("/search", params={"q": text, "k": 10})
                    lat.append((time.perf_counter() - t1) * 1000)
                    r.raise_for_status()
                    ids = [hd.items.get(i["item_id"]) for i in r.json()["items"]]
                    recs[q, :len(ids)] = ids
                    if q % 500 == 0:
                        console.print(f"  {q}/{test.n_queries} queries")
        finally:
            server.stop()
        nd = graded_ndcg(recs, gains, 10, gain="linear")
        name = "hybrid-rrf" + (f" > {Path(args.cross_encoder).name}-{args.backend}@{args.top}" if on else "")
        per[on] = nd
        row = {"dataset": "homedepot", "split": f"query-80/20-seed0 test ({test.n_queries} queries), via HTTP",
               "model": name, "params": {"encoder": args.encoder, **({"top": args.top, "mix": args.mix} if on else {})},
               "NDCG@10_catalog": float(nd.mean()), "NDCG@10_catalog_se": float(nd.std(ddof=1) / np.sqrt(len(nd))),
               "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
               "catalog": hd.n_items, "eval_s": round(time.perf_counter() - t0, 1)}
        if on:
            d, lo, hi = bootstrap_delta(per[True], per[False])
            row["delta_NDCG@10_catalog"] = f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}] vs hybrid-rrf"
        console.print(row)
        rows.append(row)
    return rows


def latency(args: argparse.Namespace) -> list[dict[str, Any]]:
    from lmrec.settings import Settings

    home = Path(Settings().cache_dir).expanduser() / "bench" / f"service-{args.items}-{args.users}"
    sizes = build_home(home, args.items, args.users, 10)
    key = admin_key(home)
    headers = {"Authorization": f"Bearer {key}"}
    rows = []
    for on in (False, True):
        env = reranker_env(args, on) | {"LMREC_ENGINE__QUERY_ENCODER": "minilm-int8",
                                        "LMREC_ENGINE__OVERRIDES": json.dumps({"encoder": "fake-384"})}
        server = start(home, home / "search-server.log", env, "fake-384")
        console.print(f"latency server ({'re-ranked' if on else 'hybrid only'}) ready in {server.open_s:.0f} s")
        import random

        rng = random.Random(0)
        make = lambda i: ("GET", "/search", {"q": make_query(rng), "k": 10})  # noqa: E731
        try:
            sequential(server.base, headers, 30, make, "warm-up")
            seq = sequential(server.base, headers, args.sequential, make, "/search")
            rated = asyncio.run(open_loop(server.base, headers, args.rate, args.seconds, make, "/search"))
        finally:
            server.stop()
        model = "hybrid-rrf" + (f" > {Path(args.cross_encoder).name}-{args.backend}@{args.top}" if on else "")
        common = {"dataset": f"generated-{sizes['items'] // 1000}k", "split": "live", "model": model,
                  "params": {"query_encoder": "minilm-int8", "item_vectors": "fake-384", "index": "hnsw",
                             **({"top": args.top} if on else {})}}
        for label, run in (("sequential", seq), (f"{args.rate:g} req/s", rated)):
            row = run.row(**common, phase=label)
            console.print({k: row[k] for k in ("model", "phase", "p50_ms", "p99_ms", "req_per_s", "errors")})
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["all", "quality", "latency"], default="all")
    ap.add_argument("--cross-encoder", required=True, help="trained cross-encoder folder")
    ap.add_argument("--backend", default="int8", choices=["int8", "onnx", "torch"])
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--mix", type=float, default=0.25)
    ap.add_argument("--encoder", default="minilm", help="catalog encoder of the quality home")
    ap.add_argument("--test-queries", type=int, default=0, help="first N test queries (0 = all)")
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--sequential", type=int, default=300)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--work", default="~/.cache/lmrec/bench")
    ap.add_argument("--name", default="search_service")
    args = ap.parse_args(argv)
    rows: list[dict[str, Any]] = []
    if args.part in ("all", "quality"):
        rows += quality(args)
    if args.part in ("all", "latency"):
        rows += latency(args)
    command = "python benchmarks/search_service.py " + " ".join(argv if argv is not None else sys.argv[1:])
    json_path, md_path = write_results(args.name, rows, command.strip())
    console.print(f"wrote {json_path} {md_path}")


if __name__ == "__main__":
    main()
