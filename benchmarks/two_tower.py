"""Two-tower recommender (frozen MiniLM item vectors + MLP towers) against the zero-shot LM
channel and EASE, with the full-ranking protocol. Writes benchmarks/results/two_tower.json / .md.

Rows (no tuning on test: each fit early-stops on NDCG@10 of users' last training events,
held out inside `fit`; the configuration is fixed in this file):
- main split of ml-100k (temporal leave-one-out) and amazon-scientific (given split):
  two-tower with in-batch softmax + logQ correction and with pointwise BCE, each over
  `--seeds` seeds (metrics: mean over seeds; `*_se` = standard error across seeds;
  `NDCG@10_user_se`: the per-user standard error of seed 0), and the paired bootstrap of
  seed 0's NDCG@10 against EASE (lambda from benchmarks/results/lm_recall.json) re-run here;
  lm-recency and EASE rows are re-run with lm_recall.json's parameters for reference;
- ml-100k multi-task ("watched" + "liked" = rated 4+): each head scored on all test events
  and on the liked test events only, next to the single-task model;
- cold start (`coldstart-random`: 20% of the items held out, only they are ranked):
  two-tower vs popularity (popularity averaged over 5 tie-break seeds, as in lm_recall.py);
- `--lora`: one small-budget row of the LoRA item tower (MiniLM, adapters on the top layers)
  on ml-100k.

    python benchmarks/two_tower.py                  # everything but LoRA, 3 seeds
    python benchmarks/two_tower.py --seeds 1 --dataset ml-100k
    python benchmarks/two_tower.py --only lora --lora   # just the LoRA row (added to the table)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

sys.path.insert(0, str(Path(__file__).parent))
from lm_recall import average_ties  # noqa: E402  (benchmarks/lm_recall.py)

import lmrec.models.two_tower  # noqa: E402,F401  (registers "two-tower")
from lmrec.data.loaders import load_dataset  # noqa: E402
from lmrec.eval.evaluator import evaluate  # noqa: E402
from lmrec.eval.experiment import ExperimentResult, item_categories, make_split, run_experiment  # noqa: E402
from lmrec.eval.report import rich_table, write_results  # noqa: E402
from lmrec.eval.significance import compare  # noqa: E402
from lmrec.recall.item2item import dataset_item_vectors  # noqa: E402

DATASETS = ["ml-100k", "amazon-scientific"]
RESULTS = Path(__file__).parent / "results"
METRICS = ("NDCG@10", "HR@10", "MRR@10", "Recall@20", "Precision@10", "coverage@10", "ILD@10", "novelty@10")
BASE = {"encoder": "minilm", "dim": 128, "hidden": 256, "max_history": 20, "epochs": 20, "patience": 2,
        "batch_size": 512, "lr": 2e-3, "threads": 1}
CONFIGS = {
    "softmax-logq": {**BASE, "loss": "softmax", "logq": True, "temperature": 0.05},
    "bce": {**BASE, "loss": "bce", "negatives": 8, "temperature": 0.1},
}
# one epoch of 25 steps and no in-fit validation (a validation re-encodes the whole catalog):
# a LoRA step runs MiniLM forward and backward on every distinct item of the batch
LORA = {**BASE, "loss": "softmax", "logq": True, "temperature": 0.05, "item_tower": "lora", "lora_layers": 2,
        "lora_r": 8, "lora_max_length": 32, "batch_size": 32, "epochs": 1, "steps_per_epoch": 25,
        "valid_users": 0, "warmup_steps": 5}
MULTITASK = {**CONFIGS["softmax-logq"], "multitask_weight": 1.0, "like_threshold": 4.0}
console = Console()


def reproduce(row: dict[str, Any]) -> str:
    d, _, cold = row["dataset"].partition("-coldstart")
    split_opt = f" --split coldstart{cold}" if row["dataset"] != d else ""
    return f"lmrec eval --dataset {d}{split_opt} --model {row['model']} --params '{json.dumps(row['params'], sort_keys=True)}'"


def lm_recall_params(dataset: str, model: str) -> dict[str, Any]:
    """Parameters of `model`'s row on `dataset` (main split) in lm_recall.json."""
    import subprocess

    def rows_of(text: str) -> list[dict[str, Any]]:
        return [r for r in json.loads(text)["rows"] if r["dataset"] == dataset and r["model"] == model
                and r.get("encoder", "minilm") == "minilm"]

    path = RESULTS / "lm_recall.json"
    hit = rows_of(path.read_text()) if path.exists() else []
    if not hit:  # the working copy may be mid-rewrite by a partial run: use the committed file
        committed = subprocess.run(["git", "show", "HEAD:benchmarks/results/lm_recall.json"], capture_output=True,
                                   text=True, cwd=Path(__file__).parent)
        hit = rows_of(committed.stdout) if committed.returncode == 0 else []
    if not hit:
        raise SystemExit(f"lm_recall.json has no {model} row for {dataset}; run benchmarks/lm_recall.py first")
    return dict(hit[0]["params"])


def run(name: str, split: Any, params: dict[str, Any]) -> ExperimentResult:
    t0 = time.perf_counter()
    res = run_experiment(name, split, params=params)
    info = getattr(res.model, "train_info", {})
    console.print(f"  {name:10s} NDCG@10 {res.row['NDCG@10']:.4f}  ({time.perf_counter() - t0:.0f} s) "
                  f"{json.dumps({k: info[k] for k in ('best_epoch', 'epochs_run', 'valid_NDCG@10') if k in info})}")
    return res


def seeded(split: Any, label: str, params: dict[str, Any], seeds: int) -> tuple[dict[str, Any], ExperimentResult]:
    """Fit `seeds` times (seed 0, 1, ...); one row with the mean and the standard error across
    seeds of every metric, and seed 0's result (for the paired bootstrap)."""
    results = [run("two-tower", split, {**params, "seed": s}) for s in range(seeds)]
    rows = [r.row for r in results]
    row = dict(rows[0])
    row["params"] = dict(params)
    for m in METRICS + ("fit_s",):
        vals = np.array([r[m] for r in rows if m in r], dtype=float)
        if not len(vals):
            continue
        row[m] = float(vals.mean())
        row[f"{m}_se"] = float(vals.std(ddof=1) / np.sqrt(len(vals))) if len(vals) > 1 else None
        if m == "NDCG@10":
            row["NDCG@10_by_seed"] = [round(float(v), 5) for v in vals]
    row["NDCG@10_user_se"] = rows[0]["NDCG@10_se"] if seeds > 1 else rows[0].get("NDCG@10_se")
    if seeds == 1:
        row["NDCG@10_se"], row["HR@10_se"] = rows[0].get("NDCG@10_se"), rows[0].get("HR@10_se")
    row["seeds"] = seeds
    row["label"] = f"two-tower[{label}]"
    infos = [r.model.train_info for r in results]
    row["train_s"] = round(float(np.mean([i["train_s"] for i in infos])), 1)
    row["best_epoch"] = [i["best_epoch"] for i in infos]
    row["valid_NDCG@10_infit"] = [round(i["valid_NDCG@10"] or 0.0, 5) for i in infos]
    return row, results[0]


def vs(row: dict[str, Any], res: ExperimentResult, ref: ExperimentResult, ref_name: str) -> None:
    b = compare(res.test, ref.test, "NDCG@10")
    row.update({"vs": ref_name, "delta_NDCG@10": round(b.mean_diff, 5), "ci_low": round(b.ci_low, 5),
                "ci_high": round(b.ci_high, 5)})


def main_split(ds: Any, seeds: int) -> list[dict[str, Any]]:
    split = make_split(ds)
    ease = run("ease", split, lm_recall_params(ds.name, "ease"))
    lm = run("lm-recency", split, lm_recall_params(ds.name, "lm-recency"))
    ease.row["note"] = "reference, params from lm_recall.json"
    lm.row["note"] = "zero-shot reference, params from lm_recall.json"
    vs(lm.row, lm, ease, "ease")
    rows = [ease.row, lm.row]
    for label, params in CONFIGS.items():
        row, res0 = seeded(split, label, params, seeds)
        vs(row, res0, ease, "ease")
        row["note"] = "bootstrap: seed 0 vs ease"
        rows.append(row)
    return rows


def liked_split(split: Any, threshold: float) -> Any:
    """The same split with only the test events rated >= threshold."""
    return replace(split, test=split.test.select(split.test.value >= threshold))


def multitask(ds: Any) -> list[dict[str, Any]]:
    split = make_split(ds)
    liked = liked_split(split, MULTITASK["like_threshold"])
    cats = item_categories(ds)
    single = run("two-tower", split, {**CONFIGS["softmax-logq"], "seed": 0})
    multi = run("two-tower", split, {**MULTITASK, "seed": 0})
    rows = []
    for label, model, params in (("single-task", single.model, CONFIGS["softmax-logq"]),
                                 ("multi-task: watched head", multi.model, MULTITASK),
                                 ("multi-task: liked head", multi.model.for_task("liked"),
                                  {**MULTITASK, "score_task": "liked"})):
        for truth, sp in (("all test events", split), ("test events rated 4+", liked)):
            res = evaluate(model, sp, stage="test", item_categories=cats, keep_recs=False)
            row = res.row(dataset=ds.name, split=split.name, model="two-tower", params=dict(params),
                          fit_s=round(model.train_info["train_s"], 2), seeds=1)
            row.update({"label": f"two-tower[{label}]", "truth": truth, "task": "multitask"})
            rows.append(row)
    return rows


def cold(ds: Any, seeds: int) -> list[dict[str, Any]]:
    split = make_split(ds, "coldstart-random")
    pop = average_ties(run("popular", split, {}), split)
    rows = [pop.row]
    row, res0 = seeded(split, "softmax-logq", CONFIGS["softmax-logq"], seeds)
    vs(row, res0, pop, "popular")
    row["x_popular"] = round(row["NDCG@10"] / max(pop.row["NDCG@10"], 1e-9), 2)
    row["note"] = "bootstrap: seed 0 vs popular (tie-averaged)"
    rows.append(row)
    return rows


def lora(ds: Any) -> list[dict[str, Any]]:
    """The LoRA item tower and, with the very same budget, the frozen one (what the adapters add
    per step; neither is trained to convergence)."""
    split = make_split(ds)
    rows = []
    for label, params in (("lora", LORA), ("frozen, same budget", {**LORA, "item_tower": "frozen"})):
        res = run("two-tower", split, {**params, "seed": 0})
        row = res.row
        row.update({"label": f"two-tower[{label}]", "train_s": round(res.model.train_info["train_s"], 1),
                    "steps": LORA["epochs"] * LORA["steps_per_epoch"], "note": "small CPU budget: "
                    f"{LORA['epochs']} x {LORA['steps_per_epoch']} steps of {LORA['batch_size']} events"})
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", action="append", choices=DATASETS, help="repeatable; default: both")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--only", choices=["main", "multitask", "cold", "lora"], action="append",
                    help="run only these parts (repeatable); default: main, multitask, cold (+ lora with --lora)")
    ap.add_argument("--lora", action="store_true", help="add the LoRA item-tower row (slow on CPU)")
    ap.add_argument("--name", default="two_tower")
    ap.add_argument("--merge", type=Path, action="append", default=[],
                    help="add the rows of another results JSON of this script (e.g. a data set run in a "
                         "parallel process with --name) to this one, replacing rows of the same data set and part")
    args = ap.parse_args()
    parts = args.only or ["main", "multitask", "cold"] + (["lora"] if args.lora else [])
    if args.merge and not args.only:
        parts = []
    out_json = RESULTS / f"{args.name}.json"
    def load_rows(path: Path) -> list[dict[str, Any]]:
        doc = json.loads(path.read_text())
        for r in doc["rows"]:  # rows of older runs: the file's command produced them
            r.setdefault("run_command", doc["command"])
        return doc["rows"]

    rows = load_rows(out_json) if out_json.exists() else []
    for other in args.merge:
        new_rows = load_rows(other)
        keys = {(r["dataset"], r.get("part")) for r in new_rows}
        rows = [r for r in rows if (r["dataset"], r.get("part")) not in keys] + new_rows
    if args.merge:
        _, md = write_results(args.name, rows, command="python " + " ".join(sys.argv), out_dir=RESULTS)
        with md.open("a", encoding="utf-8") as f:
            f.write(notes(rows))
    for name in (args.dataset or DATASETS) if parts else []:
        ds = load_dataset(name)
        dataset_item_vectors(ds, "minilm", progress=True)
        console.print(f"[bold]{name}[/]: {ds.n_users} users, {ds.n_items} items")
        for part in parts:
            if part == "multitask" and name != "ml-100k":
                continue  # the only one of the two with ratings
            if part == "lora" and name != "ml-100k":
                continue
            new = {"main": lambda: main_split(ds, args.seeds), "multitask": lambda: multitask(ds),
                   "cold": lambda: cold(ds, args.seeds), "lora": lambda: lora(ds)}[part]()
            for r in new:
                r["part"] = part
                r["reproduce"] = reproduce(r)
                r["run_command"] = "python " + " ".join(sys.argv)
            # replace the rows of this (dataset, part) from an earlier run
            ds_names = {r["dataset"] for r in new}
            rows = [r for r in rows if not (r["dataset"] in ds_names and r.get("part") == part)]
            rows.extend(new)
            console.print(rich_table(new, title=f"{name} / {part}"))
            command = "python " + " ".join(sys.argv)
            _, md = write_results(args.name, rows, command=command, out_dir=RESULTS)
            with md.open("a", encoding="utf-8") as f:
                f.write(notes(rows))
    console.print(f"wrote {out_json}")


def notes(rows: list[dict[str, Any]]) -> str:
    out = ["\n## Details\n\n| dataset | part | label | truth | NDCG@10 | seeds | NDCG@10 by seed | train_s | best epoch | "
           "ΔNDCG@10 [95% CI] |\n|---|---|---|---|---|---|---|---|---|---|\n"]
    for r in rows:
        delta = (f"{r['delta_NDCG@10']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] vs {r['vs']}"
                 if "ci_low" in r else "-")
        out.append(f"| {r['dataset']} | {r.get('part', '')} | {r.get('label', r['model'])} | {r.get('truth', 'all')} | "
                   f"{r['NDCG@10']:.4f} | {r.get('seeds', 1)} | {r.get('NDCG@10_by_seed', '-')} | "
                   f"{r.get('train_s', r.get('fit_s', '-'))} | {r.get('best_epoch', '-')} | {delta} |\n")
    out.append("\nWith seeds > 1, `± se` in the table above is the standard error across seeds (per-user standard "
               "error of seed 0 in the JSON as NDCG@10_user_se); otherwise the per-user standard error. "
               "Every two-tower fit early-stops on NDCG@10 of up to 1,000 users' last training events, held out "
               "inside fit; no parameter was chosen on test.\n")
    runs = sorted({(r.get("part", ""), r.get("run_command", "")) for r in rows if r.get("run_command")})
    if runs:
        out.append("\nRows by part were produced by (merged into this file with `--merge`):\n\n")
        out.extend(f"- {part}: `{cmd}`\n" for part, cmd in runs)
    return "".join(out)


if __name__ == "__main__":
    main()
