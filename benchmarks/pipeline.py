"""Multi-stage pipeline benchmarks: recall channels -> merge -> rank -> rerank.

Parts (`--part`, repeatable; default all):

- accuracy (ML-100k, ML latest-small, Amazon Scientific; full ranking, test split): the best
  single channel and the best model of the earlier issues (re-run with their committed
  parameters: benchmarks/results/baselines.json, lm_recall.json) against the pipeline of
  `configs/<dataset>.toml`: merged recall (ranker "none"), + LambdaRank, + CTR, + rerank (MMR).
  Every row has a paired bootstrap of NDCG@10 against the best earlier model. The pipeline is
  fitted once (channels, features, LambdaRank on the held-out windows of train + valid); the
  other rows swap one stage of the fitted pipeline, which is what `lmrec eval` with the row's
  `overrides` computes from scratch (every stage is deterministic). Ranker quality on the test
  candidates: AUC (pooled and per user) and NDCG@10 of the candidate pool.
  Nothing is tuned on test: channel parameters come from validation (earlier issues), the
  ranker settings of configs/default.toml were chosen on ML-100k validation.
- tradeoff (ML-100k): NDCG@10 against intra-list diversity (1 - cosine of MiniLM item
  embeddings) and catalog coverage as the MMR lambda and the Gumbel top-k temperature vary;
  PNG plots benchmarks/results/pipeline_tradeoff_ild.png and pipeline_tradeoff_coverage.png.
- latency: one `recommend` call (recall + rank + rerank, k=10) on generated catalogs of 10k
  and 100k items: p50 / p99 over single requests, one thread.
- search (Home Depot): query -> BM25 / dense / hybrid recall -> re-rank with the e5 bi-encoder
  (no cross-encoder ships with the packages) -> LambdaRank over pair features; graded
  NDCG@10 of the catalog top 10 per stage, the judged-set NDCG@10 and Recall@100, with the
  protocol of benchmarks/search.py on query samples (see --hd-* options).

Writes benchmarks/results/pipeline.json / .md (+ the PNGs); re-running some parts keeps the
rows of the others.

    python benchmarks/pipeline.py                                  # everything
    python benchmarks/pipeline.py --part accuracy --dataset ml-100k
    python benchmarks/pipeline.py --part latency --part search
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from threadpoolctl import threadpool_limits

from lmrec.data.loaders import load_dataset
from lmrec.eval.evaluator import EvalResult, evaluate
from lmrec.eval.experiment import item_categories, make_split, run_experiment
from lmrec.eval.report import plot_metric, rich_table, write_results
from lmrec.eval.significance import compare
from lmrec.pipeline import RecPipeline
from lmrec.rank.ctr import CTRRanker
from lmrec.rank.ltr import PassthroughRanker
from lmrec.rank.training import auc, group_auc, group_ndcg
from lmrec.recall.item2item import dataset_item_vectors
from lmrec.component import RERANKERS

RESULTS = Path(__file__).parent / "results"
DATASETS = ["ml-100k", "ml-latest-small", "amazon-scientific"]
PARTS = ["accuracy", "tradeoff", "latency", "search"]
SINGLE = {"popular", "itemknn", "ease", "als", "bpr", "lm-mean", "lm-recency", "lm-multi"}
console = Console()


# --- references from the committed results --------------------------------------------------
def _committed(dataset: str) -> list[dict[str, Any]]:
    rows = []
    for name in ("baselines", "lm_recall"):
        path = RESULTS / f"{name}.json"
        if path.exists():
            rows += [r for r in json.loads(path.read_text())["rows"] if r["dataset"] == dataset
                     and not r.get("encoder", "minilm").endswith("int8")]
    if not rows:
        raise SystemExit(f"no committed results for {dataset}: run benchmarks/baselines.py and lm_recall.py first")
    return rows


def references(dataset: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(best single channel row, best earlier model row) of the committed results."""
    rows = _committed(dataset)
    single = max((r for r in rows if r["model"] in SINGLE), key=lambda r: r["NDCG@10"])
    best = max(rows, key=lambda r: r["NDCG@10"])
    return single, best


# --- helpers -------------------------------------------------------------------------------
# Learned rankers are sensitive to the last bits of their input features (a LightGBM bin edge),
# and EASE's scores change in those bits with the BLAS thread count; this script runs BLAS on one
# thread, so the CLI command that re-runs a row does too (with two BLAS threads the ML-100k
# LambdaRank row gives NDCG@10 0.1005 instead of 0.1036).
ONE_THREAD = "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1"


def reproduce(dataset: str, model: str, params: dict) -> str:
    """The CLI command that re-runs one accuracy / trade-off row."""
    env = f"{ONE_THREAD} " if model == "pipeline" else ""
    return f"{env}lmrec eval --dataset {dataset} --model {model} --params '{json.dumps(params, sort_keys=True)}'"


def _row(res: EvalResult, dataset: str, split: str, model: str, params: dict, **extra: Any) -> dict[str, Any]:
    row = res.row(dataset=dataset, split=split, model=model, params=params, **extra)
    row["reproduce"] = reproduce(dataset, model, params)
    return row


def _vs(row: dict[str, Any], res: EvalResult, ref: EvalResult, ref_name: str) -> None:
    b = compare(res, ref, "NDCG@10")
    row.update({"vs": ref_name, "delta_NDCG@10": round(b.mean_diff, 5), "ci_low": round(b.ci_low, 5),
                "ci_high": round(b.ci_high, 5), "significant": b.significant})


def _ranker_quality(scores: np.ndarray, data: Any) -> dict[str, float]:
    y = data.labels["click"]
    nd = group_ndcg(scores, y, data.groups, 10)
    return {"AUC": round(auc(scores, y), 4), "gAUC": round(group_auc(scores, y, data.groups), 4),
            "pool_NDCG@10": round(float(np.nanmean(nd)), 4), "pool_users": int(np.isfinite(nd).sum())}


def _swap_rerank(pipe: RecPipeline, stages: list[dict[str, Any]]) -> None:
    pipe.rerankers = [RERANKERS.create(s["name"], s.get("params", {})) for s in stages]
    for r in pipe.rerankers:
        r.bind(pipe.ctx)


# --- accuracy --------------------------------------------------------------------------------
def accuracy(name: str, extra_rows: dict[str, list]) -> tuple[list[dict[str, Any]], RecPipeline, Any]:
    ds = load_dataset(name)
    split = make_split(ds)
    cats = item_categories(ds)
    dataset_item_vectors(ds, "minilm", progress=True)
    single, best = references(name)
    console.print(f"[bold]{name}[/]: best single {single['model']} {single['NDCG@10']:.4f}, "
                  f"best earlier {best['model']} {best['NDCG@10']:.4f}")
    rows = []
    refs = {}
    for label, ref in (("best single channel", single), ("best earlier model", best)):
        t0 = time.perf_counter()
        r = run_experiment(ref["model"], split, params=ref["params"])
        row = _row(r.test, name, split.name, ref["model"], ref["params"], fit_s=r.row["fit_s"], stage=label,
                   committed_NDCG10=ref["NDCG@10"])
        rows.append(row)
        refs[label] = r.test
        console.print(f"  {label}: {row['NDCG@10']:.4f} ({time.perf_counter() - t0:.0f} s)")
    base_ref = refs["best earlier model"]
    config = f"configs/{name}.toml"
    pipe = RecPipeline(config=config)
    pipe.keep_train_data = True
    pipe.progress = lambda msg: console.print(f"  [dim]{msg}[/]")
    t0 = time.perf_counter()
    pipe.fit(split.train_valid, ds)
    fit_s = round(time.perf_counter() - t0, 1)
    lambdarank = pipe.ranker
    cfg_ctr = pipe.spec.rank.params.get("ctr", {})
    t1 = time.perf_counter()
    ctr = CTRRanker(**cfg_ctr).fit(pipe.train_data)
    ctr_fit_s = round(time.perf_counter() - t1, 1)
    rated = len(np.unique(split.train_valid.value)) > 1  # ratings: a "high rating" task exists
    mt_params = {**cfg_ctr, "tasks": {"click": 1.0, "high": 0.5}}
    ctr_mt = CTRRanker(**mt_params).fit(pipe.train_data) if rated else None
    test_users = np.unique(split.test.user)
    test_data = pipe.rank_data(test_users, split.test)
    quality = {}
    variants = [
        ("merged recall", {"rank": {"ranker": "none"}}, PassthroughRanker().fit(test_data), None),
        ("+ LambdaRank", {}, lambdarank, None),
        ("+ CTR", {"rank": {"ranker": "ctr"}}, ctr, None),
        *([("+ CTR multi-task (click + high rating)",
            {"rank": {"ranker": "ctr", "params": {"ctr": {"tasks": mt_params["tasks"]}}}}, ctr_mt, None)]
          if ctr_mt is not None else []),
        ("+ LambdaRank + MMR rerank", {"rerank": {"stages": [{"name": "seen"}, {"name": "mmr", "params": {"lambda": 0.9}}]}},
         lambdarank, [{"name": "seen"}, {"name": "mmr", "params": {"lambda": 0.9}}]),
    ]
    original = [{"name": s.name, "params": s.params} for s in pipe.spec.rerank.stages]
    for label, overrides, ranker, stages in variants:
        pipe.ranker = ranker
        _swap_rerank(pipe, stages or original)
        t2 = time.perf_counter()
        res = evaluate(pipe, split, stage="test", item_categories=cats, progress=True)
        params = {"config": config, **({"overrides": overrides} if overrides else {})}
        row = _row(res, name, split.name, "pipeline", params, stage=label, eval_s=round(time.perf_counter() - t2, 1))
        if label == "+ LambdaRank":
            row.update(fit_s=fit_s, **{k: v for k, v in pipe.fit_info.items() if k in ("train_rows", "folds",
                                                                                   "train_positives", "window_recall")})
        if label == "+ CTR":
            row["ranker_fit_s"] = ctr_fit_s
        if label.startswith(("+ LambdaRank", "+ CTR")) and "MMR" not in label:
            q = _ranker_quality(ranker.score(test_data), test_data)
            quality[label] = q
            row.update(q)
        _vs(row, res, base_ref, f"{best['model']} (best earlier)")
        rows.append(row)
        console.print(f"  {label}: NDCG@10 {row['NDCG@10']:.4f} delta {row['delta_NDCG@10']:+.4f} "
                      f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]")
    for row in rows[:2]:
        if row["stage"] == "best single channel":
            _vs(row, refs["best single channel"], base_ref, f"{best['model']} (best earlier)")
    pipe.ranker = lambdarank
    _swap_rerank(pipe, original)
    extra_rows.setdefault("importance", []).append(
        {"dataset": name, "top": list(lambdarank.importance().items())[:10]})
    return rows, pipe, split


# --- accuracy / diversity trade-off ----------------------------------------------------------
def tradeoff(name: str, pipe: RecPipeline, split: Any) -> list[dict[str, Any]]:
    vecs = dataset_item_vectors(split.dataset, "minilm")
    config = f"configs/{name}.toml"
    grid = [("mmr", "lambda", v) for v in (1.0, 0.9, 0.8, 0.7, 0.5, 0.3)] + \
           [("gumbel", "temperature", v) for v in (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)]
    rows = []
    for stage, knob, value in grid:
        stages = [{"name": "seen"}, {"name": stage, "params": {knob: value}}]
        _swap_rerank(pipe, stages)
        res = evaluate(pipe, split, stage="test", item_vectors=vecs, keep_recs=False)
        row = _row(res, name, split.name, "pipeline", {"config": config, "overrides": {"rerank": {"stages": stages}}},
                   stage=f"{stage} {knob}={value:g}", rerank=stage, knob=knob, value=value, ild="minilm-cosine")
        rows.append(row)
        console.print(f"  {row['stage']}: NDCG@10 {row['NDCG@10']:.4f} ILD@10 {row['ILD@10']:.4f} "
                      f"coverage@10 {row['coverage@10']:.4f}")
    return rows


def plot_tradeoff(rows: list[dict[str, Any]]) -> list[Path]:
    out = []
    for x, fname in (("ILD@10", "pipeline_tradeoff_ild.png"), ("coverage@10", "pipeline_tradeoff_coverage.png")):
        out.append(plot_metric(rows, x, "NDCG@10", RESULTS / fname, group="rerank",
                               title=f"{rows[0]['dataset']}: MMR lambda and Gumbel temperature sweeps"))
    return out


# --- latency ---------------------------------------------------------------------------------
def latency(n_items: int, n_users: int, requests: int = 200) -> dict[str, Any]:
    from lmrec.testing.toy import toy_dataset

    t0 = time.perf_counter()
    ds = toy_dataset(n_users=n_users, n_items=n_items, events_per_user=20, seed=0, name=f"generated-{n_items}")
    spec = {"encoder": "fake-384",
            "channels": [{"name": "als", "model": "als", "params": {"factors": 64, "iterations": 10}, "quota": 100},
                         {"name": "lm", "model": "lm-recency", "params": {"encoder": "fake-384", "half_life": 2.0},
                          "quota": 100},
                         {"name": "popular", "model": "popular", "quota": 50, "min_history": 0, "weight": 0.0}],
            "fallback": {"chain": ["popular"]},
            "rank": {"ranker": "lambdarank", "keep": 100,
                     "window": {"size": 3, "repeats": 1, "max_users": 1000},
                     "params": {"lambdarank": {"n_estimators": 150, "learning_rate": 0.03, "num_leaves": 15,
                                               "min_child_samples": 100}}},
            "rerank": {"n": 10, "stages": [{"name": "seen"}, {"name": "available"},
                                           {"name": "mmr", "params": {"lambda": 0.8}}]}}
    pipe = RecPipeline(spec=spec)
    pipe.fit(ds.interactions, ds)
    fit_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    users = rng.choice(n_users, size=requests, replace=False)
    for u in users[:5]:  # warm-up
        pipe.recommend(int(u), k=10)
    total, parts = [], {"recall": [], "rank": [], "rerank": []}
    from lmrec.types import Query

    for u in users:
        q = pipe._resolve(Query(user=int(u)))
        t = time.perf_counter()
        pool = pipe.candidates([q])
        t_recall = time.perf_counter()
        ranked = pipe.rank([q], pool)
        t_rank = time.perf_counter()
        pipe.rerank(q, ranked[0], 10)
        t_end = time.perf_counter()
        total.append((t_end - t) * 1000)
        parts["recall"].append((t_recall - t) * 1000)
        parts["rank"].append((t_rank - t_recall) * 1000)
        parts["rerank"].append((t_end - t_rank) * 1000)
    whole = []
    for u in users:  # the public call, as a server would make it
        t = time.perf_counter()
        pipe.recommend(int(u), k=10)
        whole.append((time.perf_counter() - t) * 1000)
    row = {"dataset": f"generated-{n_items // 1000}k", "split": "-", "model": "pipeline", "params": {"spec": spec},
           "items": n_items, "users": n_users, "requests": requests,
           "p50_ms": round(float(np.percentile(whole, 50)), 2), "p99_ms": round(float(np.percentile(whole, 99)), 2),
           "stages_p50_ms": {k: round(float(np.percentile(v, 50)), 2) for k, v in parts.items()},
           "stages_sum_p50_ms": round(float(np.percentile(total, 50)), 2),
           "candidates": int(len(pool[0])), "fit_s": round(fit_s, 1), "threads": 1}
    console.print(f"  {n_items} items: p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, stages {row['stages_p50_ms']}")
    return row


# --- search ----------------------------------------------------------------------------------
def search(args: argparse.Namespace) -> list[dict[str, Any]]:
    sys.path.insert(0, str(Path(__file__).parent))
    from search import BenchEncoder, _sample, catalog_metrics, judged_ndcg, mean_se  # the search protocol

    from lmrec.data.loaders import load_relevance
    from lmrec.eval.significance import paired_bootstrap
    from lmrec.rank.search import SearchRanker
    from lmrec.recall.bm25 import BM25Retriever
    from lmrec.recall.hybrid import HybridRetriever
    from lmrec.recall.search import BiEncoderScorer, DenseRetriever, RerankRetriever

    hd = load_relevance("homedepot")
    train, test = hd.query_split(test_fraction=0.2, seed=0)
    test = test.subset_queries(_sample(test.n_queries, args.hd_test, 0))
    val_idx = _sample(train.n_queries, args.hd_val, 1)
    val = train.subset_queries(val_idx)
    rest = np.setdiff1d(np.arange(train.n_queries), val_idx)
    fit_q = train.subset_queries(rest[_sample(len(rest), args.hd_train, 2)])
    items = np.unique(np.concatenate([test.item_idx, val.item_idx, fit_q.item_idx]))
    texts = [hd.item_text[i] for i in items]
    console.print(f"homedepot: {test.n_queries} test / {val.n_queries} validation / {fit_q.n_queries} ranker-training "
                  f"queries; catalog = their {len(items)} judged products")
    minilm, e5 = BenchEncoder("minilm"), BenchEncoder("e5-small")
    bm25 = BM25Retriever("english").fit(texts, items)
    dense = DenseRetriever(minilm, name="dense:minilm").fit(texts, items)
    hybrid = HybridRetriever(bm25, dense, "rrf", k_rrf=60, depth=100, name="hybrid-rrf")
    e5_scorer = BiEncoderScorer(e5, name="e5")
    tune = lambda m: float(catalog_metrics(m, val)["NDCG@10_catalog"].mean())  # noqa: E731
    mixes = {m: tune(RerankRetriever(hybrid, e5_scorer, 30, mix=m)) for m in (0.0, 0.25, 0.5, 0.75)}
    mix = max(mixes, key=mixes.get)
    rerank = RerankRetriever(hybrid, e5_scorer, top_n=30, mix=mix, name="rerank-e5")

    def judgments(rs: Any) -> list[dict[int, float]]:
        out = []
        for q in range(rs.n_queries):
            it, gr = rs.judged(q)
            out.append({int(i): float(g) for i, g in zip(it, gr)})
        return out

    t0 = time.perf_counter()
    ranked = SearchRanker(hybrid, [e5_scorer], depth=100, name="ranker").train(
        fit_q.queries, judgments(fit_q), n_estimators=200, learning_rate=0.05, num_leaves=15,
        min_child_samples=20, valid_fraction=0.0)
    rank_fit_s = time.perf_counter() - t0
    stages = [("recall", "bm25", bm25, {}), ("recall", "dense:minilm", dense, {}),
              ("recall", "hybrid-rrf:bm25+minilm", hybrid, {"k_rrf": 60, "depth": 100}),
              ("+ rerank (e5 bi-encoder)", "rerank:hybrid-rrf+e5", rerank,
               {"top_n": 30, "mix": mix, "val_NDCG@10_catalog": round(mixes[mix], 4)}),
              ("+ ranker (LambdaRank)", "ranker:hybrid-rrf+e5+lambdarank", ranked,
               {"depth": 100, "features": ranked.columns(ranked._channels or []), "train_queries": fit_q.n_queries,
                "fit_s": round(rank_fit_s, 1)})]
    split = f"query-80/20-seed0 test-sample{test.n_queries}"
    rows, per_query = [], {}
    for stage, label, model, params in stages:
        t = time.perf_counter()
        row: dict[str, Any] = {"dataset": "homedepot", "split": split, "model": label, "stage": stage,
                               "params": params, "catalog": len(items), "queries": test.n_queries}
        jn = judged_ndcg(model, test)
        row["NDCG@10"], row["NDCG@10_se"] = mean_se(jn)
        cm = catalog_metrics(model, test)
        for key, vals in cm.items():
            row[key], row[f"{key}_se"] = mean_se(vals)
        per_query[label] = cm["NDCG@10_catalog"]
        row["eval_s"] = round(time.perf_counter() - t, 1)
        row["reproduce"] = "python benchmarks/pipeline.py --part search"
        rows.append(row)
        console.print(f"  {label}: NDCG@10_catalog {row['NDCG@10_catalog']:.4f} judged NDCG@10 {row['NDCG@10']:.4f}")
    ref = per_query["hybrid-rrf:bm25+minilm"]
    for row in rows:
        b = paired_bootstrap(per_query[row["model"]], ref)
        row.update({"vs": "hybrid-rrf (catalog NDCG@10)", "delta_NDCG@10_catalog": round(b.mean_diff, 5),
                    "ci_low_catalog": round(b.ci_low, 5), "ci_high_catalog": round(b.ci_high, 5)})
    return rows


# --- report ----------------------------------------------------------------------------------
def tables(rows: list[dict[str, Any]], extra: dict[str, list]) -> str:
    """Markdown sections beyond the shared table."""
    out = []
    acc = [r for r in rows if r.get("part") == "accuracy"]
    if acc:
        out.append("\n## Accuracy: stages against the best earlier model\n\nΔ = paired bootstrap of NDCG@10 "
                   "per user against the best model of the earlier issues (95% CI); `*` = the CI excludes 0.\n\n"
                   "| dataset | stage | model / params | NDCG@10 | HR@10 | Recall@20 | Δ NDCG@10 [95% CI] | AUC | gAUC | "
                   "pool NDCG@10 |\n|---|---|---|---|---|---|---|---|---|---|\n")
        for r in acc:
            delta = (f"{r['delta_NDCG@10']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]{' *' if r.get('significant') else ''}"
                     if "ci_low" in r else "reference")
            params = r["params"] if r["model"] == "pipeline" else {k: v for k, v in r["params"].items()}
            out.append(f"| {r['dataset']} | {r['stage']} | {r['model']} `{json.dumps(params, sort_keys=True)}` | "
                       f"{r['NDCG@10']:.4f} ± {r['NDCG@10_se']:.4f} | {r['HR@10']:.4f} | {r['Recall@20']:.4f} | {delta} | "
                       f"{r.get('AUC', '-')} | {r.get('gAUC', '-')} | {r.get('pool_NDCG@10', '-')} |\n")
        out.append("\nAUC / gAUC / pool NDCG@10: the ranker's scores on the test candidates (pooled ROC-AUC, mean "
                   "per-user AUC, NDCG@10 of the candidate pool re-ranked; users whose test item is in the pool).\n"
                   f"\nRe-run a pipeline row with `{ONE_THREAD} lmrec eval ...` (each row's `reproduce` in the JSON): "
                   "this script runs BLAS on one thread, and a learned ranker is sensitive to the last bits of its "
                   "features (EASE's scores move in those bits with the BLAS thread count); with two BLAS threads "
                   "the ML-100k LambdaRank row gives NDCG@10 0.1005 instead of 0.1036.\n")
    imp = extra.get("importance", [])
    if imp:
        out.append("\n### LambdaRank feature importance (total gain, top 10)\n\n")
        for e in imp:
            out.append(f"- {e['dataset']}: " + ", ".join(f"{k} {v:.0f}" for k, v in e["top"]) + "\n")
    trade = [r for r in rows if r.get("part") == "tradeoff"]
    if trade:
        out.append("\n## Accuracy-diversity trade-off\n\nThe LambdaRank pipeline with one re-ranker after the seen "
                   "filter: MMR (lambda 1 = relevance only) or Gumbel top-k sampling (temperature 0 = no noise). "
                   "ILD@10 here is the mean pairwise cosine distance of MiniLM item embeddings (the accuracy rows "
                   "use category Jaccard distance, like the earlier tables).\n\n"
                   "![NDCG vs ILD](pipeline_tradeoff_ild.png)\n![NDCG vs coverage](pipeline_tradeoff_coverage.png)\n\n"
                   "| dataset | rerank | NDCG@10 | ILD@10 (MiniLM) | coverage@10 | novelty@10 |\n|---|---|---|---|---|---|\n")
        for r in trade:
            out.append(f"| {r['dataset']} | {r['stage']} | {r['NDCG@10']:.4f} | {r['ILD@10']:.4f} | "
                       f"{r['coverage@10']:.4f} | {r['novelty@10']:.3f} |\n")
    lat = [r for r in rows if r.get("part") == "latency"]
    if lat:
        out.append("\n## Latency of one recommend call (recall + rank + rerank, k = 10)\n\n"
                   "| catalog | users | candidates | p50 ms | p99 ms | recall / rank / rerank p50 ms | fit s |\n"
                   "|---|---|---|---|---|---|---|\n")
        for r in lat:
            st = r["stages_p50_ms"]
            out.append(f"| {r['items']} | {r['users']} | {r['candidates']} | {r['p50_ms']} | {r['p99_ms']} | "
                       f"{st['recall']} / {st['rank']} / {st['rerank']} | {r['fit_s']} |\n")
    hd = [r for r in rows if r.get("part") == "search"]
    if hd:
        out.append("\n## Search path on Home Depot, per stage\n\nNDCG@10_catalog: graded NDCG@10 of the top 10 "
                   "retrieved from the catalog; NDCG@10: the judged products re-ranked (Kaggle-style); "
                   "Δ: paired bootstrap per query of NDCG@10_catalog against hybrid-rrf.\n\n"
                   "| stage | model | NDCG@10_catalog | NDCG@10 (judged) | Recall@100 | Δ NDCG@10_catalog [95% CI] |\n"
                   "|---|---|---|---|---|---|\n")
        for r in hd:
            out.append(f"| {r['stage']} | {r['model']} | {r['NDCG@10_catalog']:.4f} ± {r['NDCG@10_catalog_se']:.4f} | "
                       f"{r['NDCG@10']:.4f} | {r['Recall@100']:.4f} | {r['delta_NDCG@10_catalog']:+.4f} "
                       f"[{r['ci_low_catalog']:+.4f}, {r['ci_high_catalog']:+.4f}] |\n")
    return "".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", action="append", choices=PARTS, help="repeatable; default: all")
    ap.add_argument("--dataset", action="append", choices=DATASETS, help="accuracy data sets (default: all)")
    ap.add_argument("--latency-items", default="10000,100000")
    ap.add_argument("--latency-users", type=int, default=5000)
    ap.add_argument("--hd-test", type=int, default=300, help="Home Depot test queries (seeded sample)")
    ap.add_argument("--hd-val", type=int, default=100, help="validation queries (re-rank mix)")
    ap.add_argument("--hd-train", type=int, default=1000, help="ranker training queries")
    ap.add_argument("--name", default="pipeline")
    ap.add_argument("--replot", action="store_true", help="only redraw the tables and plots from the saved JSON")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    parts = args.part or PARTS
    datasets = args.dataset or DATASETS
    out_json = RESULTS / f"{args.name}.json"
    old = json.loads(out_json.read_text()) if out_json.exists() else {"rows": [], "extra": {}}
    rows: list[dict[str, Any]] = old["rows"]
    extra: dict[str, list] = old.get("extra", {}) if isinstance(old.get("extra"), dict) else {}
    commands = dict(old.get("commands", {}))

    def keep(pred: Any) -> None:
        nonlocal rows
        rows = [r for r in rows if not pred(r)]

    def order(r: dict[str, Any]) -> tuple:
        part = PARTS.index(r["part"]) if r.get("part") in PARTS else len(PARTS)
        return part, DATASETS.index(r["dataset"]) if r["dataset"] in DATASETS else len(DATASETS)

    def save(command: str) -> None:
        rows.sort(key=order)  # stable: the order within a part and data set is kept
        for r in rows:
            if r.get("part") in ("accuracy", "tradeoff"):
                r["reproduce"] = reproduce(r["dataset"], r["model"], r["params"])
        _, md = write_results(args.name, rows, command=command, out_dir=RESULTS)
        doc = json.loads(out_json.read_text())
        doc["extra"], doc["commands"] = extra, commands
        out_json.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        with md.open("a", encoding="utf-8") as f:
            f.write(tables(rows, extra))
            f.write("\n## Commands of each part\n\n" + "".join(f"- {k}: `{v}`\n" for k, v in commands.items()))

    cmd = "python benchmarks/pipeline.py " + " ".join(sys.argv[1:])
    if args.replot:  # tables and plots from the saved rows; the last run's command stays
        trade = [r for r in rows if r.get("part") == "tradeoff"]
        if trade:
            plot_tradeoff(trade)
        save(old.get("command", cmd))
        return
    with threadpool_limits(1):
        if "accuracy" in parts or "tradeoff" in parts:
            for name in datasets:
                pipe, split = None, None
                if "accuracy" in parts:
                    keep(lambda r, n=name: r.get("part") == "accuracy" and r["dataset"] == n)
                    extra["importance"] = [e for e in extra.get("importance", []) if e["dataset"] != name]
                    new, pipe, split = accuracy(name, extra)
                    for r in new:
                        r["part"] = "accuracy"
                    rows += new
                    commands[f"accuracy {name}"] = cmd
                    save(cmd)
                if "tradeoff" in parts and name == "ml-100k":
                    if pipe is None:
                        _, pipe, split = accuracy(name, {})
                    keep(lambda r: r.get("part") == "tradeoff")
                    new = tradeoff(name, pipe, split)
                    for r in new:
                        r["part"] = "tradeoff"
                    rows += new
                    plot_tradeoff(new)
                    commands["tradeoff"] = cmd
                    save(cmd)
        if "latency" in parts:
            keep(lambda r: r.get("part") == "latency")
            for n in (int(x) for x in args.latency_items.split(",") if x):
                r = latency(n, args.latency_users)
                r["part"] = "latency"
                rows.append(r)
                commands["latency"] = cmd
                save(cmd)
        if "search" in parts:
            keep(lambda r: r.get("part") == "search")
            new = search(args)
            for r in new:
                r["part"] = "search"
            rows += new
            commands["search"] = cmd
            save(cmd)
    console.print(rich_table([r for r in rows if r.get("part") == "accuracy"]))
    console.print(f"wrote {out_json}")


if __name__ == "__main__":
    main()
