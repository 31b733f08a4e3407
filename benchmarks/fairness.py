"""Popularity bias and fairness: accuracy, exposure Gini, long-tail share and NDCG per user group
of a few models, and the accuracy cost of the long-tail re-ranker at several strengths.

Definitions (lmrec.eval.fairness): head = the 20% most popular items of the training data
(distinct users); longtail@10 = share of top-10 slots given to other items; gini@10 = Gini of the
items' top-10 appearances over the catalog; user groups = activity deciles (training items per
user), and gender / age bands where the data set has them (ML-100k, ML-1M).

Rows, per data set (its default split, full ranking, test stage, parameters from
benchmarks/results/baselines.json, i.e. tuned on validation):
- the plain models (`lmrec eval --model NAME`);
- the base model as the only channel of a pipeline (ranker "none"), re-ranked by the seen filter
  and `longtail` (xquad or penalty) at strengths 0 .. 1: `lmrec eval --model pipeline
  --params '{"spec": ...}'` with the row's `spec`. Strength 0 is the reference of the paired
  bootstrap (ΔNDCG@10 [95% CI]).

    python benchmarks/fairness.py                       # ml-100k, amazon-scientific, ml-1m
    python benchmarks/fairness.py --dataset ml-100k
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from threadpoolctl import threadpool_limits

from lmrec.data.loaders import load_dataset
from lmrec.eval.experiment import make_split, run_experiment
from lmrec.eval.report import plot_metric, rich_tables, write_results
from lmrec.eval.significance import compare

RESULTS = Path(__file__).parent / "results"
console = Console()

#: models per data set, and the base model of the re-ranking sweep (None: no sweep)
DATASETS: dict[str, dict] = {
    "ml-100k": {"models": [("popular", {}), ("itemknn", {"k": 200, "shrink": 0.0}), ("ease", {"lam": 200.0}),
                           ("als", {"factors": 128, "regularization": 1.0, "alpha": 10.0})],
                "base": ("ease", {"lam": 200.0})},
    "amazon-scientific": {"models": [("popular", {}), ("itemknn", {"k": 20, "shrink": 10.0})],
                          "base": ("itemknn", {"k": 20, "shrink": 10.0})},
    "ml-1m": {"models": [("popular", {}), ("ease", {"lam": 1000.0})], "base": None},
}
STRENGTHS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
METHODS = ("xquad", "penalty")


def sweep_spec(model: str, params: dict, strength: float, method: str) -> dict:
    return {"encoder": "fake",  # no stage reads text; keeps the run offline and fast
            "channels": [{"name": model, "model": model, "params": params, "quota": 100}],
            "rank": {"ranker": "none"},
            "rerank": {"stages": [{"name": "seen"},
                                  {"name": "longtail", "params": {"strength": strength, "method": method}}]}}


def run_dataset(name: str, cfg: dict) -> list[dict]:
    ds = load_dataset(name)
    split = make_split(ds, None)
    rows: list[dict] = []
    for model, params in cfg["models"]:
        t0 = time.perf_counter()
        with console.status(f"{name}: {model}"):
            res = run_experiment(model, split, params=params)
        rows.append({**res.row, "label": model, "wall_s": round(time.perf_counter() - t0, 1)})
        console.print(f"{name} {model}: NDCG@10 {res.row['NDCG@10']:.4f} longtail@10 {res.row['longtail@10']:.3f}")
    if cfg["base"] is None:
        return rows
    base, bparams = cfg["base"]
    ref = None
    for method in METHODS:
        for s in STRENGTHS:
            if s == 0.0 and ref is not None:
                continue  # strength 0 is the same ranking for both methods
            spec = sweep_spec(base, bparams, s, method)
            t0 = time.perf_counter()
            with console.status(f"{name}: {base} + longtail {method} {s}"):
                res = run_experiment("pipeline", split, params={"spec": spec})
            row = {**res.row, "params": {"channel": base, **bparams, "longtail": s, "method": method},
                   "spec": spec, "label": f"{base} + longtail {method if s else ''} {s:g}".replace("  ", " "),
                   "curve": f"{base} + {method}", "strength": s, "wall_s": round(time.perf_counter() - t0, 1)}
            if ref is None:
                ref = res.test
                row["vs_best"] = "best"
            else:
                b = compare(res.test, ref, "NDCG@10", seed=0)
                row.update({"delta_NDCG@10": round(b.mean_diff, 5), "ci_low": round(b.ci_low, 5),
                            "ci_high": round(b.ci_high, 5), "vs": f"{base} + longtail 0"})
            rows.append(row)
            console.print(f"{name} {row['label']}: NDCG@10 {row['NDCG@10']:.4f} "
                          f"longtail@10 {row['longtail@10']:.3f} gini@10 {row['gini@10']:.3f}")
    # both curves start at strength 0
    zero = next(r for r in rows if r.get("strength") == 0.0)
    rows.append({**{k: v for k, v in zero.items() if k not in ("vs_best",)}, "curve": f"{base} + penalty",
                 "params": {**zero["params"], "method": "penalty"}, "plot_only": True})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", action="append", choices=list(DATASETS))
    args = ap.parse_args()
    names = args.dataset or list(DATASETS)
    rows: list[dict] = []
    with threadpool_limits(1):
        for name in names:
            rows += run_dataset(name, DATASETS[name])
    table_rows = [r for r in rows if not r.get("plot_only")]
    for t in rich_tables(table_rows, width=console.width):
        console.print(t)
    plots = []
    for name in names:
        curve_rows = [r for r in rows if r["dataset"] == name and "curve" in r]
        if curve_rows:
            png = plot_metric(curve_rows, "longtail@10", "NDCG@10", RESULTS / f"fairness_{name}.png",
                              group="curve", title=f"{name}: accuracy vs long-tail share (re-ranker strength)")
            plots.append(png.name)
    command = "python benchmarks/fairness.py" + "".join(f" --dataset {n}" for n in (args.dataset or []))
    notes = ("Re-ranker rows: the base model's top 100 (one channel, no ranker), then `seen` and `longtail` "
             "(lmrec.rerank.longtail). xquad moves each list towards half head, half tail (it lowers the tail "
             "share of a list that is already mostly tail); penalty always pushes popular items down. "
             "Plots (NDCG@10 against longtail@10 as the strength grows): "
             + ", ".join(f"![{p}]({p})" for p in plots) + "." if plots else None)
    _, md = write_results("fairness", table_rows, command, out_dir=RESULTS, notes=notes)
    console.print(f"written {md}")


if __name__ == "__main__":
    sys.exit(main())
