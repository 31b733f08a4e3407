"""Home Depot query -> product search before and after fine-tuning MiniLM on the train queries.

The packaged all-MiniLM-L6-v2 is fine-tuned with MultipleNegativesRankingLoss
(`lmrec.text.finetune`, SentenceTransformerTrainer, no-duplicates batches) on the relevant
(grade >= 2.5) judgments of the train part of the 80/20 query split that benchmarks/search.py
uses (`query_split(0.2, seed=0)`), for a bounded wall-clock budget. Both models are then
evaluated with search.py's metrics on the same held-out test queries:
- `NDCG@10`: graded NDCG of each query's judged products re-ranked by the model;
- `Recall@100` (grade >= 2.5), `Recall@100_any`, `NDCG@10_catalog`: retrieval from the catalog.
The paired difference (after - before) per query comes with a 95% bootstrap interval.
Nothing is tuned: the hyper-parameters are fixed below, the test queries are only scored.

    python benchmarks/finetune_search.py                       # 12-minute budget, 1,000 test queries
    python benchmarks/finetune_search.py --budget-minutes 2 --test-queries 200 --name finetune_smoke

The fine-tuned model is written outside the repository (default
`<cache_dir>/finetuned/homedepot-minilm`); `lmrec finetune-encoder` does the same training.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from search import _sample, catalog_metrics, judged_ndcg, mean_se  # noqa: E402  (benchmarks/search.py)

from lmrec.data.loaders import load_relevance  # noqa: E402
from lmrec.eval.report import write_results  # noqa: E402
from lmrec.recall.search import DenseRetriever  # noqa: E402
from lmrec.text.finetune import FinetuneConfig, finetune_relevance  # noqa: E402
from lmrec.text.registry import get_encoder  # noqa: E402

METRICS = ("NDCG@10", "Recall@100", "Recall@100_any", "NDCG@10_catalog")


def default_out() -> Path:
    from lmrec.settings import get_settings

    return Path(get_settings().cache_dir).expanduser() / "finetuned" / "homedepot-minilm"


def paired(after: np.ndarray, before: np.ndarray, seed: int = 0, n: int = 2000) -> dict[str, float]:
    """Mean of after - before and its 95% percentile-bootstrap interval over queries."""
    d = after - before
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(len(d), size=(n, len(d)))].mean(axis=1)
    return {"delta": float(d.mean()), "ci_low": float(np.percentile(boots, 2.5)),
            "ci_high": float(np.percentile(boots, 97.5))}


def evaluate(retriever: DenseRetriever, test: Any) -> dict[str, np.ndarray]:
    values = {"NDCG@10": judged_ndcg(retriever, test)}
    values.update(catalog_metrics(retriever, test))
    return values


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget-minutes", type=float, default=12.0, help="wall-clock training budget")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--max-steps", type=int, default=0, help="0: one epoch, cut by the budget")
    ap.add_argument("--test-queries", type=int, default=1000, help="seeded sample of test queries (0 = all)")
    ap.add_argument("--catalog", choices=["pool", "full"], default="pool",
                    help="pool: the products judged for the evaluated queries (as search.py --catalog pool)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--reuse", action="store_true", help="evaluate the model already in --out, do not train")
    ap.add_argument("--name", default="finetune_search")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = args.out or default_out()
    hd = load_relevance("homedepot")
    train, test = hd.query_split(test_fraction=0.2, seed=0)
    test = test.subset_queries(_sample(test.n_queries, args.test_queries, 0))
    items = np.arange(hd.n_items) if args.catalog == "full" else np.unique(test.item_idx)
    texts = [hd.item_text[i] for i in items]
    print(f"homedepot: {train.n_queries} train queries, {test.n_queries} test queries, catalog {len(items)}",
          flush=True)

    cfg = FinetuneConfig(base="minilm", epochs=1.0, max_steps=args.max_steps, batch_size=args.batch_size,
                         lr=args.lr, warmup=0.1, max_seq_length=64, seed=0, threads=args.threads,
                         time_budget_s=args.budget_minutes * 60)
    if args.reuse:
        import json

        result_info = json.loads((out / "lmrec_finetune.json").read_text())
    else:
        res = finetune_relevance(hd, out, cfg, test_fraction=0.2, split_seed=0, progress=True)
        result_info = res.to_dict()
    print(f"fine-tuned: {result_info['steps']} steps x {cfg.batch_size} pairs of {result_info['pairs']} "
          f"in {result_info['train_s']:.0f} s", flush=True)

    rows, per_query = [], {}
    for label, enc_name in (("before", "minilm"), ("after", f"st:{out}")):
        t0 = time.time()
        encoder = get_encoder(enc_name, threads=args.threads)  # uncached: a fine-tuned folder has no stable name
        retriever = DenseRetriever(encoder, name=f"dense:{label}").fit(texts, items)
        values = evaluate(retriever, test)
        per_query[label] = values
        row: dict[str, Any] = {"dataset": "homedepot",
                               "split": f"query-80/20-seed0 test-sample{test.n_queries}",
                               "model": "dense", "params": {"encoder": "minilm" if label == "before" else "st:<out>"},
                               "label": f"dense:minilm ({'fine-tuned' if label == 'after' else 'zero-shot'})",
                               "catalog": len(items), "queries": test.n_queries}
        for key, vals in values.items():
            row[key], row[f"{key}_se"] = mean_se(vals)
        row["eval_s"] = round(time.time() - t0, 1)
        if label == "after":
            row.update({"train_pairs_available": result_info["pairs"], "steps": result_info["steps"],
                        "batch_size": cfg.batch_size, "pairs_seen": result_info["steps"] * cfg.batch_size,
                        "train_s": result_info["train_s"], "train_loss": result_info["train_loss"],
                        "finetune": {k: result_info["config"][k] for k in ("lr", "warmup", "scale", "min_grade",
                                                                             "max_seq_length", "time_budget_s")}})
            for key in METRICS:
                p = paired(values[key], per_query["before"][key])
                row[f"delta_{key}"] = round(p["delta"], 5)
                row[f"delta_{key}_ci"] = [round(p["ci_low"], 5), round(p["ci_high"], 5)]
            row["vs"] = "before"
            row["ci_low"], row["ci_high"] = row["delta_NDCG@10_ci"]
        row["reproduce"] = (f"lmrec finetune-encoder --dataset homedepot --out DIR --batch-size {cfg.batch_size} "
                            f"--lr {cfg.lr} --max-steps {result_info['steps']}; then "
                            f"lmrec search QUERY --dataset homedepot --retriever dense --encoder st:DIR"
                            if label == "after" else
                            "lmrec search QUERY --dataset homedepot --retriever dense --encoder minilm")
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        rows.append(row)
    command = "python benchmarks/finetune_search.py " + " ".join(argv if argv is not None else sys.argv[1:])
    json_path, md_path = write_results(args.name, rows, command.strip())
    with md_path.open("a", encoding="utf-8") as f:
        f.write(table(rows))
    print("wrote", json_path, md_path)


def table(rows: list[dict[str, Any]]) -> str:
    out = ["\n## All metrics (mean ± standard error over test queries)\n\n| model | " + " | ".join(METRICS)
           + " |\n" + "|---" * (len(METRICS) + 1) + "|\n"]
    for r in rows:
        out.append(f"| {r['label']} | " + " | ".join(f"{r[m]:.4f} ± {r[m + '_se']:.4f}" for m in METRICS) + " |\n")
    after = rows[-1]
    out.append("| after - before [95% CI] | " + " | ".join(
        f"{after[f'delta_{m}']:+.4f} [{after[f'delta_{m}_ci'][0]:+.4f}, {after[f'delta_{m}_ci'][1]:+.4f}]"
        for m in METRICS) + " |\n")
    out.append(f"\nFine-tuning: {after['steps']} steps x {after['batch_size']} (query, product) pairs = "
               f"{after['pairs_seen']} pairs seen of {after['train_pairs_available']} relevant train pairs, "
               f"{after['train_s']:.0f} s on this machine (budget {after['finetune']['time_budget_s'] / 60:.0f} min), "
               f"MultipleNegativesRankingLoss scale {after['finetune']['scale']}, lr {after['finetune']['lr']}.\n")
    return "".join(out)


if __name__ == "__main__":
    main()
