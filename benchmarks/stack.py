"""Stacking the trained sequential model into the multi-stage pipeline (ML-100k, temporal
leave-one-out, full ranking, test split).

Rows:
- pipeline: configs/ml-100k.toml (EASE + LM-recency + ALS + popularity -> LambdaRank);
- pipeline + seq + sasrec: configs/ml-100k-seq2.toml, also SASRec+ (ID only) as a channel / feature;
- pipeline + seq: configs/ml-100k-seq.toml, the same plus the text-aware sequential model
  (benchmarks/sequential.py's "text+id L=50") as a channel whose candidates join the pool and
  whose score and rank are LambdaRank features. The sequential model is fitted once per ranker
  training window plus once on all training events (4 fits), one thread each.
Paired bootstrap of NDCG@10: pipeline + seq vs pipeline. Nothing is tuned on test (the
sequential model's settings are benchmarks/sequential.py's; the ranker's are default.toml's).

    OMP_NUM_THREADS=1 python benchmarks/stack.py
    OMP_NUM_THREADS=1 python benchmarks/stack.py --only "pipeline + seq + sasrec"   # one row (+ the base); others kept

The choice between the stacked rows is made on validation by benchmarks/stack_valid.py (fit on
train, score the validation split); the test rows here never decide anything.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from threadpoolctl import threadpool_limits

from lmrec.data.loaders import load_dataset
from lmrec.eval.experiment import make_split, run_experiment
from lmrec.eval.report import rich_table, write_results
from lmrec.eval.significance import compare

RESULTS = Path(__file__).parent / "results"
ROWS = [("pipeline", "configs/ml-100k.toml"), ("pipeline + seq", "configs/ml-100k-seq.toml"),
        ("pipeline + seq + sasrec", "configs/ml-100k-seq2.toml")]
console = Console()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", choices=[r[0] for r in ROWS[1:]],
                    help="run only these rows (and the base pipeline); the other rows of stack.json are kept")
    args = ap.parse_args()
    ds = load_dataset("ml-100k")
    split = make_split(ds, None)
    rows, results = [], {}
    todo = [r for r in ROWS if r[0] == ROWS[0][0] or not args.only or r[0] in args.only]
    out = RESULTS / "stack.json"
    kept = [r for r in json.loads(out.read_text())["rows"] if r["label"] not in {t[0] for t in todo}] \
        if args.only and out.exists() else []
    for label, config in todo:
        t0 = time.perf_counter()
        with threadpool_limits(1), console.status(f"{label}: fitting {config} (one thread)"):
            res = run_experiment("pipeline", split, params={"config": config})
        row = dict(res.row)
        row.update({"label": label, "wall_s": round(time.perf_counter() - t0, 1),
                    "reproduce": f"OMP_NUM_THREADS=1 lmrec eval --dataset ml-100k --model pipeline "
                                 f"--params '{{\"config\": \"{config}\"}}'"})
        results[label] = res.test
        if label != ROWS[0][0]:
            b = compare(res.test, results[ROWS[0][0]], "NDCG@10")
            row.update({"vs": ROWS[0][0], "delta_NDCG@10": round(b.mean_diff, 5), "ci_low": round(b.ci_low, 5),
                        "ci_high": round(b.ci_high, 5)})
        rows.append(row)
        console.print(f"{label}: NDCG@10 {row['NDCG@10']:.4f}  HR@10 {row['HR@10']:.4f}  ({row['wall_s']:.0f} s)")
    order = [r[0] for r in ROWS]
    rows = sorted(kept + rows, key=lambda r: order.index(r["label"]) if r["label"] in order else 99)
    command = "OMP_NUM_THREADS=1 python " + " ".join(sys.argv) if args.only else "OMP_NUM_THREADS=1 python benchmarks/stack.py"
    write_results("stack", rows, command=command, out_dir=RESULTS)
    console.print(rich_table(rows, title="stack"))


if __name__ == "__main__":
    main()
