"""Vector index kinds on synthetic clustered vectors: build time, size, latency, recall@10.

Data ("synthetic-clustered-384d"): 1,000 Gaussian centres N(0, I) in 384 dims; each vector is
a uniformly chosen centre plus N(0, 0.75^2 I) noise, L2-normalised (numpy default_rng, seed 0);
500 queries are held-out draws from the same centres (seed 1). Truth: exact top-10.

Per kind: build_s (HNSW built with --build-threads), index_mb (vectors + ids, plus graph links
for HNSW), rss_mb (process VmRSS growth over the build), p50_ms / p99_ms (one query at a time,
1 thread, k=10), req_per_s (queries/s for one batch of all queries, 1 thread), recall@10.
Results are written after every row, so an interrupted run keeps what it measured.

    python benchmarks/vector_index.py --quick                 # 100k only
    python benchmarks/vector_index.py --sizes 1000000         # keeps the rows of other sizes
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from lmrec.eval.report import format_params, write_results
from lmrec.stores import build_index
from lmrec.stores.base import BaseVectorIndex

DATASET = "synthetic-clustered-384d"
RESULTS = Path(__file__).parent / "results"
K = 10


def clustered_vectors(n: int, dim: int, n_centres: int, noise: float, seed: int) -> np.ndarray:
    """n normalised float32 vectors around `n_centres` fixed centres (centres from seed 0)."""
    centres = np.random.default_rng(0).standard_normal((n_centres, dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 100_000):  # in chunks: no float64 copy of the whole set
        m = min(100_000, n - s)
        x = centres[rng.integers(n_centres, size=m)] + noise * rng.standard_normal((m, dim), dtype=np.float32)
        out[s:s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def rss_mb() -> float:
    """Resident set size of this process, MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def index_bytes(index: BaseVectorIndex) -> int:
    """Bytes the index holds: vectors and ids, plus the graph for HNSW (no serialised copy)."""
    n, d = len(index), index.dim
    if index.kind == "hnsw":
        h = index._index.hnsw
        slots = index._index.ntotal
        return slots * d * 4 + slots * 8 + h.neighbors.size() * 4 + h.offsets.size() * 8 + h.levels.size() * 4
    return n * d * 4 + n * 8


def latency(index: BaseVectorIndex, queries: np.ndarray) -> tuple[float, float, float]:
    """p50 / p99 ms for single queries, and queries/s for one batch."""
    index.search(queries[:5], K)  # warm-up
    times = []
    for q in queries:
        t = time.perf_counter()
        index.search(q[None, :], K)
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    index.search(queries, K)
    batch = time.perf_counter() - t
    ms = np.asarray(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), len(queries) / batch


def recall_at_k(got: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(t)) / K for g, t in zip(got.tolist(), truth.tolist())]))


def measure(kind: str, params: dict[str, Any], data: np.ndarray, queries: np.ndarray, truth: np.ndarray | None,
            build_threads: int) -> tuple[BaseVectorIndex, dict[str, Any]]:
    gc.collect()
    before = rss_mb()
    index = build_index(kind, data.shape[1], threads=build_threads, **params)
    t = time.perf_counter()
    index.add(np.arange(len(data), dtype=np.int64), data)
    build_s = time.perf_counter() - t
    gc.collect()
    row = {"dataset": DATASET, "model": kind, "params": dict(params), "n": len(data), "build_s": round(build_s, 2),
           "index_mb": round(index_bytes(index) / 2**20, 1), "rss_mb": round(rss_mb() - before, 1)}
    index.threads = 1
    return index, row


def search_row(index: BaseVectorIndex, row: dict[str, Any], queries: np.ndarray, truth: np.ndarray) -> dict:
    p50, p99, qps = latency(index, queries)
    row.update({"p50_ms": round(p50, 3), "p99_ms": round(p99, 3), "req_per_s": round(qps, 1),
                "recall@10": round(recall_at_k(index.search(queries, K)[0], truth), 4)})
    return row


def extra_table(rows: list[dict[str, Any]]) -> str:
    cols = ["n", "model", "params", "build_s", "index_mb", "rss_mb", "p50_ms", "p99_ms", "req_per_s", "recall@10"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [format_params(r.get(c)) if c == "params" else str(r.get(c, "-")) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000", help="comma-separated index sizes")
    ap.add_argument("--quick", action="store_true", help="100k vectors only")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--centres", type=int, default=1000)
    ap.add_argument("--noise", type=float, default=0.75)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--ef-high", type=int, default=128, help="the second HNSW ef_search")
    ap.add_argument("--build-threads", type=int, default=1, help="1: faster than 2 on the loaded 2 cores")
    ap.add_argument("--kinds", default="exact,flat,hnsw")
    ap.add_argument("--ef-construction", type=int, default=200,
                    help="HNSW build breadth (lower builds faster at some recall cost)")
    ap.add_argument("--name", default="vector_index")
    args = ap.parse_args()
    sizes = [100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    kinds = args.kinds.split(",")
    command = "python benchmarks/vector_index.py " + " ".join(sys.argv[1:])
    out_json = RESULTS / f"{args.name}.json"
    rows: list[dict[str, Any]] = []
    if out_json.exists():  # re-running some sizes keeps the rows of the others
        rows = [r for r in json.loads(out_json.read_text())["rows"] if r.get("n") not in sizes]

    def emit(row: dict[str, Any]) -> None:
        rows.append(row)
        rows.sort(key=lambda r: (r["n"], r["model"], json.dumps(r["params"], sort_keys=True)))
        _, md = write_results(args.name, rows, command, RESULTS)
        generator = (f"Data: {args.centres} Gaussian centres in {args.dim} dims + N(0, {args.noise}^2) noise, "
                     f"normalised, seed 0; {args.queries} held-out queries (seed 1); k={K}; searches at 1 thread, "
                     f"HNSW built with {args.build_threads} threads. Timings on a shared, loaded 2-core machine "
                     "are noisy: compare rows of one run.")
        md.write_text(md.read_text() + f"\n## All columns\n\n{generator}\n\n{extra_table(rows)}\n")
        print(json.dumps(row), flush=True)

    queries = clustered_vectors(args.queries, args.dim, args.centres, args.noise, seed=1)
    for n in sizes:
        data = clustered_vectors(n, args.dim, args.centres, args.noise, seed=0)
        exact, row = measure("exact", {}, data, queries, None, args.build_threads)
        truth = exact.search(queries, K)[0]
        if "exact" in kinds:
            emit(search_row(exact, row, queries, truth))
        del exact
        if "flat" in kinds:
            flat, row = measure("flat", {}, data, queries, truth, args.build_threads)
            emit(search_row(flat, row, queries, truth))
            del flat
        if "hnsw" in kinds:
            params = {"M": 16, "ef_construction": args.ef_construction, "ef_search": 64}
            hnsw, row = measure("hnsw", params, data, queries, truth, args.build_threads)
            emit(search_row(hnsw, row, queries, truth))
            hnsw.ef_search = args.ef_high
            emit(search_row(hnsw, {**row, "params": {**params, "ef_search": args.ef_high}}, queries, truth))
            del hnsw
        del data
        gc.collect()


if __name__ == "__main__":
    main()
