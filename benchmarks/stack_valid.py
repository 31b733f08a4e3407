"""Validation NDCG@10 / HR@10 of one ML-100k pipeline config (fit on train, score the
validation split of the temporal leave-one-out protocol): what benchmarks/stack.py's rows
are chosen by. Prints one JSON line; `--out` appends it to a JSON-lines file.

    OMP_NUM_THREADS=1 python benchmarks/stack_valid.py configs/ml-100k-seq.toml --out benchmarks/results/stack_valid.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

from lmrec.component import create
from lmrec.data.loaders import load_dataset
from lmrec.eval.evaluator import evaluate
from lmrec.eval.experiment import make_split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    ds = load_dataset("ml-100k")
    split = make_split(ds, None)
    t0 = time.perf_counter()
    with threadpool_limits(1):
        model = create("pipeline", {"config": args.config})
        model.fit(split.train, ds)
        res = evaluate(model, split, stage="valid")
    row = {"config": args.config, "valid": {k: res.metrics[k] for k in ("NDCG@10", "HR@10")},
           "s": time.perf_counter() - t0,
           "reproduce": f"OMP_NUM_THREADS=1 python benchmarks/stack_valid.py {args.config}"}
    print(json.dumps(row))
    if args.out is not None:
        with args.out.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
