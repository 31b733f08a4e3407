"""Stacking the trained sequential model into the multi-stage pipeline (ML-100k, temporal
leave-one-out, full ranking, test split).

Rows:
- pipeline: configs/ml-100k.toml (EASE + LM-recency + ALS + popularity -> LambdaRank);
- pipeline + seq: configs/ml-100k-seq.toml, the same plus the text-aware sequential model
  (benchmarks/sequential.py's "text+id L=50") as a channel whose candidates join the pool and
  whose score and rank are LambdaRank features. The sequential model is fitted once per ranker
  training window plus once on all training events (4 fits), one thread each.
Paired bootstrap of NDCG@10: pipeline + seq vs pipeline. Nothing is tuned on test (the
sequential model's settings are benchmarks/sequential.py's; the ranker's are default.toml's).

    OMP_NUM_THREADS=1 python benchmarks/stack.py
"""

from __future__ import annotations

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
ROWS = [("pipeline", "configs/ml-100k.toml"), ("pipeline + seq", "configs/ml-100k-seq.toml")]
console = Console()


def main() -> None:
    ds = load_dataset("ml-100k")
    split = make_split(ds, None)
    rows, results = [], {}
    for label, config in ROWS:
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
    write_results("stack", rows, command="OMP_NUM_THREADS=1 python " + " ".join(sys.argv), out_dir=RESULTS)
    console.print(rich_table(rows, title="stack"))


if __name__ == "__main__":
    main()
