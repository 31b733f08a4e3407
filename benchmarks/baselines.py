"""Classic baselines on every interaction data set with the full-ranking protocol.

Each model is tuned on the validation split (its small default grid), refit on
train + validation and evaluated on test. Writes benchmarks/results/baselines.json and .md.

    python benchmarks/baselines.py                       # all four data sets
    python benchmarks/baselines.py --dataset ml-100k     # one data set
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console

from lmrec.cli.eval_cmd import run_models
from lmrec.component import DEFAULT_GRIDS
from lmrec.data.loaders import load_dataset
from lmrec.eval.report import rich_table, write_results

DATASETS = ["ml-100k", "ml-latest-small", "amazon-scientific", "ml-1m"]
MODELS = ["popular", "itemknn", "ease", "als", "bpr"]
RESULTS = Path(__file__).parent / "results"


def add_significance(rows: list[dict], results: list, metric: str = "NDCG@10") -> None:
    """Paired bootstrap of every model against the best one of the same data set."""
    from lmrec.eval.significance import compare

    best = max(range(len(rows)), key=lambda i: rows[i][metric])
    for row, res in zip(rows, results):
        if row is rows[best]:
            row["vs_best"] = "best"
            continue
        b = compare(res, results[best], metric)
        row["vs_best"] = rows[best]["model"]
        row[f"delta_{metric}"] = round(b.mean_diff, 5)
        row["ci_low"], row["ci_high"] = round(b.ci_low, 5), round(b.ci_high, 5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", action="append", choices=DATASETS, help="repeatable; default: all")
    ap.add_argument("--model", action="append", choices=MODELS, help="repeatable; default: all")
    ap.add_argument("--no-tune", action="store_true", help="use default parameters only")
    ap.add_argument("--name", default="baselines", help="result file name (default: baselines)")
    args = ap.parse_args()
    console = Console()
    datasets = args.dataset or DATASETS
    models = args.model or MODELS
    out_json = RESULTS / f"{args.name}.json"
    rows: list[dict] = []
    if out_json.exists() and (args.dataset or args.model):
        # re-running part of the table keeps the other rows
        keep = json.loads(out_json.read_text())["rows"]
        rows = [r for r in keep if not (r["dataset"] in datasets and r["model"] in models)]
    for name in datasets:
        t0 = time.perf_counter()
        ds = load_dataset(name)
        console.print(f"[bold]{name}[/]: {ds.n_users} users, {ds.n_items} items, {len(ds.interactions)} events "
                      f"(loaded in {time.perf_counter() - t0:.1f} s)")
        spec = [(m, {}, None if args.no_tune else DEFAULT_GRIDS.get(m)) for m in models]
        results: list = []
        new_rows = run_models(ds, None, spec, results=results)
        add_significance(new_rows, results)
        console.print(rich_table(new_rows))
        rows.extend(new_rows)
        order = {d: i for i, d in enumerate(DATASETS)}
        rows.sort(key=lambda r: (order.get(r["dataset"], 99), MODELS.index(r["model"]) if r["model"] in MODELS else 99))
        for r in rows:  # the CLI command that re-runs exactly this row (tuned parameters fixed)
            r["reproduce"] = (f"lmrec eval --dataset {r['dataset']} --model {r['model']} "
                              f"--params '{json.dumps(r['params'], sort_keys=True)}'")
        complete = {(r["dataset"], r["model"]) for r in rows} >= {(d, m) for d in DATASETS for m in MODELS}
        command = "python benchmarks/baselines.py" if complete else "python " + " ".join(sys.argv)
        write_results(args.name, rows, command=command, out_dir=RESULTS)
    console.print(f"wrote {out_json}")


if __name__ == "__main__":
    main()
