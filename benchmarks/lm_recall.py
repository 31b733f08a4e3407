"""LM recall channels (lm-mean, lm-recency, lm-multi) alone and blended with the best CF
baseline, with the full-ranking protocol; plus the cold-start item split.

Every model is tuned on validation (its DEFAULT_GRIDS entry), refit on train + validation and
evaluated on test. The blend takes the best CF baseline of benchmarks/results/baselines.json
(EASE tuned here when the data set has no row there) and the LM channel with the best
validation NDCG@10, and tunes only its weight. Rows carry a paired bootstrap of NDCG@10
against the CF model ("vs", "delta_NDCG@10", "ci_low", "ci_high"). Writes
benchmarks/results/lm_recall.json and .md after every data set.

Cold start, two splits (only the new items are ranked):
- "coldstart-random" (every data set): a seeded random 20% of the items are held out as new
  test items (10% more as new validation items); every event on them leaves training.
- "coldstart" (ml-100k, ml-latest-small): items first seen in the last 10% of the timeline.
Popularity and EASE score every new item alike (no training events), so the evaluator breaks
ties at random; their metrics are averaged over TIE_SEEDS tie-break seeds ("tie_seeds"). LM
rows carry "x_popular" (NDCG@10 / popular's) and a paired bootstrap vs popular (per-user
values of popular averaged over the seeds).

`--compare-encoders minilm-int8` adds lm-recency (tuned) with that encoder on the main split,
with a paired bootstrap against lm-recency with `--encoder` (the quantisation cost).

    python benchmarks/lm_recall.py                        # all data sets, MiniLM (+ int8 lm-recency)
    python benchmarks/lm_recall.py --dataset ml-100k --encoder e5-small --compare-encoders ""
    python benchmarks/lm_recall.py --dataset ml-100k --encoder fake --name smoke   # smoke run
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
from lmrec.component import DEFAULT_GRIDS
from lmrec.data.loaders import load_dataset
from lmrec.eval.evaluator import EvalResult, evaluate
from lmrec.eval.experiment import ExperimentResult, item_categories, make_split, run_experiment
from lmrec.eval.report import rich_table, write_results
from lmrec.eval.significance import compare
from lmrec.recall.item2item import dataset_item_vectors

DATASETS = ["ml-100k", "ml-latest-small", "amazon-scientific"]
COLD = {"ml-100k": ["coldstart-random", "coldstart"], "ml-latest-small": ["coldstart-random", "coldstart"],
        "amazon-scientific": ["coldstart-random"]}
LM_MODELS = ["lm-mean", "lm-recency", "lm-multi"]
CF_MODELS = ["popular", "itemknn", "ease", "als", "bpr"]
TIE_SEEDS = 5  # tie-break seeds averaged for the cold-start rows of popular and EASE
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


def main_split(ds: Any, encoder: str, compare_encoders: list[str] = ()) -> list[dict]:
    split = make_split(ds)
    rows, lm = lm_channels(split, encoder)
    for enc in compare_encoders:  # e.g. the int8 MiniLM: same model, other encoder
        r = run("lm-recency", split, params={"encoder": enc}, grid=DEFAULT_GRIDS["lm-recency"])
        r.row["encoder"] = enc
        vs(r.row, r, lm["lm-recency"], f"lm-recency[{encoder}]")
        r.row["note"] = f"encoder {enc}; bootstrap vs lm-recency with {encoder}"
        rows.append(r.row)
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
        b.row["label"] = f"blend({name}+{best_lm})"  # the model name stays "blend", which lmrec eval accepts
        vs(b.row, b, ref, name)
        rows.append(b.row)
        blend_mod.clear_member_cache()
    return rows


def best_cf_params(dataset: str, model: str) -> dict[str, Any]:
    path = RESULTS / "baselines.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    hit = [r for r in rows if r["dataset"] == dataset and r["model"] == model]
    return dict(hit[0]["params"]) if hit else {}


def average_ties(res: ExperimentResult, split: Any, seeds: int = TIE_SEEDS) -> ExperimentResult:
    """Re-evaluate a fitted model with `seeds` tie-break seeds (0 is `res.test`) and replace
    its row's metrics and `res.test`'s per-user values by the means over the seeds."""
    cats = item_categories(split.dataset)
    evs = [res.test] + [evaluate(res.model, split, stage="test", item_categories=cats, seed=s, keep_recs=False)
                        for s in range(1, seeds)]
    for e in evs[1:]:
        assert (e.users == evs[0].users).all()
    avg = EvalResult(metrics={m: float(sum(e.metrics[m] for e in evs) / len(evs)) for m in evs[0].metrics},
                     per_user={m: sum(e.per_user[m] for e in evs) / len(evs) for m in evs[0].per_user},
                     users=evs[0].users, info=evs[0].info)
    keep = ("dataset", "split", "model", "params", "fit_s", "eval_s", "seeds")
    row = avg.row(**{k: res.row[k] for k in keep if k in res.row})
    row.update({k: v for k, v in res.row.items() if k not in row and k not in res.test.metrics
                and not k.endswith("_se")})
    row["tie_seeds"] = seeds
    row["NDCG@10_by_tie_seed"] = [round(e.metrics["NDCG@10"], 5) for e in evs]
    return ExperimentResult(row=row, test=avg, tuning=res.tuning, model=res.model)


def cold_split(ds: Any, encoder: str, name: str = "coldstart") -> list[dict]:
    """Only the new items of cold-start split `name` are ranked (ties broken at random).
    Popular and EASE (tuned, though every grid point ties: the new items have no training
    events, so EASE scores them all 0) are averaged over TIE_SEEDS tie orders."""
    split = make_split(ds, name)
    summary = split.summary()
    pop = average_ties(run("popular", split), split)
    pop.row.update({"new_items": summary["new_items_test"], "test_users": summary["test_users"],
                    "test_events": summary["test"], "new_items_valid": summary["new_items_valid"],
                    "tie_break": summary.get("tie_break", "index")})
    ease = average_ties(run("ease", split, grid=DEFAULT_GRIDS["ease"]), split)
    ease.row["note"] = "tuned on valid, but all grid points tie: new items have no training events (EASE scores 0)"
    rows, lm = lm_channels(split, encoder)
    for r in [ease, *lm.values()]:
        vs(r.row, r, pop, "popular")
        r.row["x_popular"] = round(r.row["NDCG@10"] / max(pop.row["NDCG@10"], 1e-9), 2)
    return [pop.row, ease.row, *rows]


def cold_notes(rows: list[dict]) -> str:
    """Markdown notes on the cold-start splits (from the popular-coldstart rows)."""
    pops = [r for r in rows if "-coldstart" in r["dataset"] and r["model"] == "popular"]
    if not pops:
        return ""
    out = ["\n## Cold-start notes\n\n"]
    for r in pops:
        out.append(f"- {r['dataset']}: {r.get('new_items', '?')} new test items (the only candidates), "
                   f"{r.get('test_users', '?')} test users, {r.get('test_events', '?')} test events; "
                   f"validation ranks {r.get('new_items_valid', '?')} other new items. "
                   f"Ties broken {r.get('tie_break', 'random')}ly; popular and ease are means over "
                   f"{r.get('tie_seeds', 1)} tie-break seeds (NDCG@10 per seed: {r.get('NDCG@10_by_tie_seed')}).\n")
    out.append("- x_popular = NDCG@10 / popular's NDCG@10; the bootstrap (vs, delta, ci) pairs each user's "
               "value with popular's seed-averaged one.\n")
    return "".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", action="append", choices=DATASETS, help="repeatable; default: all")
    ap.add_argument("--encoder", default="minilm",
                    help="encoder of the LM channels: minilm (default), minilm-int8, minilm-onnx, e5-small, fake")
    ap.add_argument("--compare-encoders", default="minilm-int8",
                    help="comma list of extra encoders for an lm-recency row on the main split ('' = none)")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-start split")
    ap.add_argument("--name", default="lm_recall", help="results file stem (benchmarks/results/NAME.json/.md)")
    args = ap.parse_args()
    datasets = args.dataset or DATASETS
    extra_encs = [e for e in args.compare_encoders.split(",") if e and e != args.encoder]
    out_json = RESULTS / f"{args.name}.json"
    rows: list[dict] = []
    if out_json.exists() and args.dataset:
        done = set(datasets) | {f"{d}-{c}" for d in datasets for c in COLD.get(d, [])}
        rows = [r for r in json.loads(out_json.read_text())["rows"] if r["dataset"] not in done]
    for name in datasets:
        t0 = time.perf_counter()
        ds = load_dataset(name)
        for enc in [args.encoder, *extra_encs]:
            dataset_item_vectors(ds, enc, progress=True)
        console.print(f"[bold]{name}[/]: {ds.n_users} users, {ds.n_items} items "
                      f"(loaded and encoded in {time.perf_counter() - t0:.0f} s)")
        parts = [main_split(ds, args.encoder, extra_encs)]
        if not args.no_cold:
            parts.extend(cold_split(ds, args.encoder, c) for c in COLD.get(name, []))
        for new in parts:
            for r in new:
                if r["model"].startswith(("lm-", "blend")):
                    r.setdefault("encoder", args.encoder)
            console.print(rich_table(new))
            rows.extend(new)
            # rows of earlier runs are kept: when every data set is present, the whole script is
            # the command that reproduces the table
            complete = set(DATASETS) <= {r["dataset"] for r in rows}
            default_args = args.encoder == "minilm" and args.compare_encoders == "minilm-int8" and not args.no_cold
            command = ("python benchmarks/lm_recall.py" if complete and default_args
                       else "python " + " ".join(sys.argv))
            for r in rows:  # the CLI command that re-runs exactly this row (tuned parameters fixed)
                d, _, cold = r["dataset"].partition("-coldstart")
                split_opt = f" --split coldstart{cold}" if r["dataset"] != d else ""
                r["reproduce"] = (f"lmrec eval --dataset {d}{split_opt} --model {r['model']} "
                                  f"--params '{json.dumps(r['params'], sort_keys=True)}'")
            _, md = write_results(args.name, rows, command=command, out_dir=RESULTS)
            notes = cold_notes(rows)
            if notes:
                with md.open("a", encoding="utf-8") as f:
                    f.write(notes)
    console.print(f"wrote {out_json}")


if __name__ == "__main__":
    main()
