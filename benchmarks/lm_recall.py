"""LM recall channels (lm-mean, lm-recency, lm-multi) alone and blended with the best CF
baseline, with the full-ranking protocol; plus the cold-start item split.

Every model is tuned on validation (its DEFAULT_GRIDS entry), refit on train + validation and
evaluated on test. The blend takes the best CF baseline of benchmarks/results/baselines.json
(EASE tuned here when the data set has no row there) and the LM channel with the best
validation NDCG@10, and tunes only its weight. Rows carry a paired bootstrap of NDCG@10
against the CF model ("vs", "delta_NDCG@10", "ci_low", "ci_high"). Writes
benchmarks/results/lm_recall.json and .md after every data set.

    python benchmarks/lm_recall.py                        # all data sets, MiniLM
    python benchmarks/lm_recall.py --dataset ml-100k --encoder e5-small
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

import lmrec.recall.blend as blend_mod
import lmrec.recall.lm_user  # noqa: F401  (registers the LM channels)
from lmrec.component import DEFAULT_GRIDS
from lmrec.data.loaders import load_dataset
from lmrec.eval.experiment import ExperimentResult, make_split, run_experiment
from lmrec.eval.report import rich_table, write_results
from lmrec.eval.significance import compare
from lmrec.recall.item2item import dataset_item_vectors

DATASETS = ["ml-100k", "ml-latest-small", "amazon-scientific"]
COLD = ["ml-100k", "ml-latest-small"]
LM_MODELS = ["lm-mean", "lm-recency", "lm-multi"]
CF_MODELS = ["popular", "itemknn", "ease", "als", "bpr"]
RESULTS = Path(__file__).parent / "results"
console = Console()


def best_cf(dataset: str) -> tuple[str, dict[str, Any]] | None:
    """(model, params) of the best non-popularity baseline of `dataset` in baselines.json."""
    path = RESULTS / "baselines.json"
    if not path.exists():
        return None
    rows = [r for r in json.loads(path.read_text())["rows"]
            if r["dataset"] == dataset and r["model"] in CF_MODELS[1:]]
    if not rows:
        return None
    top = max(rows, key=lambda r: r["NDCG@10"])
    return top["model"], dict(top["params"])


def vs(row: dict[str, Any], res: ExperimentResult, ref: ExperimentResult, ref_name: str) -> None:
    """Add the paired bootstrap of NDCG@10 of `res` minus `ref` to `row`."""
    b = compare(res.test, ref.test, "NDCG@10")
    row.update({"vs": ref_name, "delta_NDCG@10": round(b.mean_diff, 5), "ci_low": round(b.ci_low, 5),
                "ci_high": round(b.ci_high, 5)})


def run(name: str, split: Any, *, params: dict | None = None, grid: Any = None) -> ExperimentResult:
    t0 = time.perf_counter()
    res = run_experiment(name, split, params=params, grid=grid)
    console.print(f"  {name:12s} NDCG@10 {res.row['NDCG@10']:.4f}  params {res.row['params']}  "
                  f"({time.perf_counter() - t0:.0f} s)")
    return res


def lm_channels(split: Any, encoder: str) -> tuple[list[dict], dict[str, ExperimentResult]]:
    results = {m: run(m, split, params={"encoder": encoder}, grid=DEFAULT_GRIDS[m]) for m in LM_MODELS}
    return [r.row for r in results.values()], results


def main_split(ds: Any, encoder: str) -> list[dict]:
    split = make_split(ds)
    rows, lm = lm_channels(split, encoder)
    cf = best_cf(ds.name)
    if cf is None:
        tuned = run("ease", split, grid=DEFAULT_GRIDS["ease"])
        cf = ("ease", dict(tuned.row["params"]))
    cf_name, cf_params = cf
    cf_res = run(cf_name, split, params=cf_params)
    cf_res.row["note"] = "CF reference (params from baselines.json or tuned here)"
    for r in lm.values():
        vs(r.row, r, cf_res, cf_name)
    best_lm = max(LM_MODELS, key=lambda m: lm[m].row.get("valid_NDCG@10", lm[m].row["NDCG@10"]))
    pairs = [(cf_name, cf_params, cf_res)]
    if cf_name != "ease" and ds.n_items < 5000:  # also blend EASE, the reference blend partner
        lam = best_cf_params(ds.name, "ease")
        pairs.append(("ease", lam, run("ease", split, params=lam)))
    rows.extend(p[2].row for p in pairs)
    for name, params, ref in pairs:
        bparams = {"cf": name, "cf_params": params, "lm": best_lm, "lm_params": lm[best_lm].row["params"]}
        b = run("blend", split, params=bparams, grid=DEFAULT_GRIDS["blend"])
        b.row["model"] = f"blend({name}+{best_lm})"
        vs(b.row, b, ref, name)
        rows.append(b.row)
        blend_mod.clear_member_cache()
    return rows


def best_cf_params(dataset: str, model: str) -> dict[str, Any]:
    path = RESULTS / "baselines.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    hit = [r for r in rows if r["dataset"] == dataset and r["model"] == model]
    return dict(hit[0]["params"]) if hit else {}


def cold_split(ds: Any, encoder: str) -> list[dict]:
    """Items first seen in the last 10% of the timeline; only they are ranked. EASE gets the
    ml main-split lambda (its scores of unseen items are all 0, so tuning is moot)."""
    split = make_split(ds, "coldstart")
    pop = run("popular", split)
    ease = run("ease", split, params=best_cf_params(ds.name, "ease") or {"lam": 500.0})
    rows, lm = lm_channels(split, encoder)
    for r in [ease, *lm.values()]:
        vs(r.row, r, pop, "popular")
        r.row["x_popular"] = round(r.row["NDCG@10"] / max(pop.row["NDCG@10"], 1e-9), 2)
    return [pop.row, ease.row, *rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", action="append", choices=DATASETS, help="repeatable; default: all")
    ap.add_argument("--encoder", default="minilm", help="minilm (default), e5-small, fake")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-start split")
    ap.add_argument("--name", default="lm_recall")
    args = ap.parse_args()
    datasets = args.dataset or DATASETS
    out_json = RESULTS / f"{args.name}.json"
    rows: list[dict] = []
    if out_json.exists() and args.dataset:
        done = set(datasets) | {f"{d}-coldstart" for d in datasets}
        rows = [r for r in json.loads(out_json.read_text())["rows"] if r["dataset"] not in done]
    for name in datasets:
        t0 = time.perf_counter()
        ds = load_dataset(name)
        dataset_item_vectors(ds, args.encoder, progress=False)
        console.print(f"[bold]{name}[/]: {ds.n_users} users, {ds.n_items} items "
                      f"(loaded and encoded in {time.perf_counter() - t0:.0f} s)")
        parts = [main_split(ds, args.encoder)]
        if name in COLD and not args.no_cold:
            parts.append(cold_split(ds, args.encoder))
        for new in parts:
            for r in new:
                if r["model"].startswith(("lm-", "blend")):
                    r["encoder"] = args.encoder
            console.print(rich_table(new))
            rows.extend(new)
            write_results(args.name, rows, command="python " + " ".join(sys.argv), out_dir=RESULTS)
    console.print(f"wrote {out_json}")


if __name__ == "__main__":
    main()
