"""Home Depot product search with fine-tuned relevance models: a fine-tuned bi-encoder in the
hybrid first stage, a cross-encoder re-ranking its top N, and students distilled / pruned from
the cross-encoder, with quality against latency. Writes benchmarks/results/cross_encoder.json/.md
and cross_encoder_tradeoff.png.

Protocol (the split of benchmarks/search.py): queries split 80/20 with `query_split(0.2, seed=0)`;
the test part (ALL its queries) is only scored; `--val-queries` train queries (seeded) are held
out of every training run and used for early stopping and for choosing the re-rank mix; the
rest of train is training data. The catalog is all 54,667 products.

Stages (each trained model is saved under `--work` and reused by later runs unless --retrain):
1. `bi`: all-MiniLM-L6-v2 fine-tuned with MultipleNegativesRankingLoss on (query, product) pairs
   of grade >= 2.5 (`lmrec.text.finetune.finetune_pairs`), within --bi-minutes.
2. `ce`: a cross-encoder on the MiniLM backbone (`lmrec.text.cross_encoder.train_cross_encoder`):
   judged products with label grade / 3 plus --negatives hard negatives (label 0) from the
   hybrid first stage's top 30 that the query has no judgment for; BCE; validation NDCG@10 over
   the same kind of groups every --eval-steps steps, best weights kept; within --ce-minutes.
3. `student`: layers --student-layers of the cross-encoder (structured pruning by layer,
   `slice_layers`), then distilled from it: trained with BCE on the teacher's sigmoid scores of
   the training pairs, within --student-minutes.
4. `eval`: every first stage and re-ranker on all test queries:
   - `NDCG@10_catalog`: graded NDCG@10 (linear gain 1-3, unjudged 0) of the top 10 retrieved;
   - `Recall@100`: share of the query's grade >= 2.5 products in the top 100;
   - `NDCG@10`: the query's judged products re-ranked by the model (Kaggle-style, judged only);
   - `rerank_ms`: milliseconds to score one query's top N with the re-ranker (one thread),
     `query_ms`: first stage + re-rank for one query (p50 / p99 over --latency-queries).
   Re-rankers re-score the hybrid's top N (`--top-n`), blended with the first stage by a mix
   chosen on validation among 0, 0.25, 0.5. Paired 95% bootstrap CIs against the hybrid.

    python benchmarks/cross_encoder.py                        # everything (about an hour on 2 cores)
    python benchmarks/cross_encoder.py --part eval            # re-evaluate saved models
    python benchmarks/cross_encoder.py --ce-minutes 2 --bi-minutes 1 --student-minutes 1 \\
        --test-queries 200 --val-queries 100 --name cross_encoder_smoke --work /tmp/ce-smoke

`lmrec finetune-cross-encoder --dataset homedepot` trains the same cross-encoder from the CLI.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from search import RELEVANT, BenchEncoder, _sample, catalog_metrics, judged_ndcg, mean_se  # noqa: E402

from lmrec.data.loaders import load_relevance  # noqa: E402
from lmrec.data.relevance import RelevanceSet  # noqa: E402
from lmrec.eval.report import write_results  # noqa: E402
from lmrec.recall.bm25 import BM25Retriever  # noqa: E402
from lmrec.recall.hybrid import HybridRetriever  # noqa: E402
from lmrec.recall.search import DenseRetriever, RerankRetriever, Retriever  # noqa: E402
from lmrec.text.cross_encoder import (CrossEncoderConfig, CrossEncoderModel, RelevanceGroup,  # noqa: E402
                                      relevance_groups, slice_layers, train_cross_encoder)
from lmrec.text.distill import distil_bi_encoder, margin_triples  # noqa: E402
from lmrec.text.finetune import FinetuneConfig, finetune_pairs, relevance_pairs  # noqa: E402

log = logging.getLogger("cross_encoder")
METRICS = ("NDCG@10_catalog", "Recall@100", "NDCG@10")


def bootstrap_delta(a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b over paired queries with a 95% percentile bootstrap interval."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    d = d[~np.isnan(d)]
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (n, len(d)))].mean(1)
    return float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def per_query(model: Retriever, rs: RelevanceSet) -> dict[str, np.ndarray]:
    """Every metric per test query (NaN where a query has no relevant product for Recall)."""
    found = model.batch(rs.queries, 100)
    out = {"NDCG@10": judged_ndcg(model, rs)}
    cat = catalog_metrics(_Fixed(found), rs)  # reuse the retrieved lists
    out["NDCG@10_catalog"] = cat["NDCG@10_catalog"]
    rec = np.full(rs.n_queries, np.nan)
    for q, c in enumerate(found):
        items, grade = rs.judged(q)
        rel = grade >= RELEVANT
        if rel.any():
            rec[q] = np.isin(items[rel], c.items).mean()
    out["Recall@100"] = rec
    return out


class _Fixed(Retriever):
    """Lists computed once, replayed in order to catalog_metrics."""

    def __init__(self, lists: list[Any]) -> None:
        super().__init__()
        self.lists = lists

    def batch(self, queries: Any, k: int = 10) -> list[Any]:
        return [c.top(k) for c in self.lists]

    def score_items(self, query: str, items: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _search(self, query: str, k: int) -> Any: ...  # pragma: no cover
    def _rebuild(self, items: np.ndarray, texts: list[str]) -> None: ...  # pragma: no cover
    def _add(self, item_index: int, text: str) -> None: ...  # pragma: no cover
    def _remove(self, item_index: int) -> None: ...  # pragma: no cover


def timed(fn: Callable[[], Any], queries: list[str]) -> tuple[float, float]:
    """p50 / p99 milliseconds of `fn()(query)` over `queries` (after one warm-up call)."""
    call = fn()
    call(queries[0])
    times = []
    for q in queries:
        t0 = time.perf_counter()
        call(q)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


class CachedScorer:
    """A pair scorer whose scores are kept per (query, text): the validation mixes and the two
    re-rank depths re-use them (latency is measured on the uncached `inner`)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name = inner, inner.name
        self.cache: dict[tuple[str, str], float] = {}

    def __call__(self, query: str, texts: Any) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if (query, t) not in self.cache]
        if todo:
            self.cache.update(zip(((query, t) for t in todo), self.inner(query, todo).tolist()))
        return np.array([self.cache[(query, t)] for t in texts], np.float32)


def _enough(groups: list[RelevanceGroup], pairs: int) -> list[RelevanceGroup]:
    """A seeded random subset of groups holding about `pairs` texts (all when pairs <= 0)."""
    if pairs <= 0:
        return groups
    order = np.random.default_rng(7).permutation(len(groups))
    out, n = [], 0
    for i in order:
        if n >= pairs:
            break
        out.append(groups[int(i)])
        n += len(groups[int(i)].texts)
    return out


class Setup:
    """Data, split, first stages; models trained on demand."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work).expanduser()
        self.work.mkdir(parents=True, exist_ok=True)
        self.hd = load_relevance("homedepot")
        train, test = self.hd.query_split(test_fraction=0.2, seed=0)
        self.test = test.subset_queries(_sample(test.n_queries, args.test_queries, 0))
        val_q = _sample(train.n_queries, args.val_queries, 1)
        self.val = train.subset_queries(val_q)
        rest = np.setdiff1d(np.arange(train.n_queries), val_q)
        self.train = train.subset_queries(rest)
        log.info("homedepot: %d train / %d validation / %d test queries, catalog %d", self.train.n_queries,
                 self.val.n_queries, self.test.n_queries, self.hd.n_items)
        self.texts = self.hd.item_text
        t0 = time.time()
        self.bm25 = BM25Retriever("english").fit(self.texts)
        log.info("BM25 index over %d products (%.0f s)", len(self.texts), time.time() - t0)
        self._dense: dict[str, DenseRetriever] = {}

    def dense(self, name: str, label: str = "minilm") -> DenseRetriever:
        if name not in self._dense:
            t0 = time.time()
            if name == "minilm":
                enc: Any = BenchEncoder("minilm")
            else:  # a fine-tuned folder, as served: its int8 ONNX export (encoded live: no cache entry goes stale)
                from lmrec.text.onnx import OnnxEncoder, export_onnx

                enc = OnnxEncoder(export_onnx(name, Path(name) / "onnx", quantize="int8"), threads=1,
                                  name=f"onnx-int8:{Path(name).name}")
            self._dense[name] = DenseRetriever(enc, name=f"dense:{label}", batch_size=128).fit(self.texts)
            log.info("encoded %d products with %s (%.0f s)", len(self.texts), self._dense[name].name,
                     time.time() - t0)
        return self._dense[name]

    def hybrid(self, dense_name: str, alpha: float = 0.7, label: str = "minilm") -> HybridRetriever:
        d = self.dense(dense_name, label)
        return HybridRetriever(self.bm25, d, "blend", alpha=alpha, depth=100,
                               name=f"hybrid-blend:bm25+{d.name.split(':')[1]}")

    # ---------------------------------------------------------------- training stages
    def bi_path(self) -> Path:
        return self.work / "bi-minilm"

    def train_bi(self) -> dict[str, Any]:
        out = self.bi_path()
        if (out / "lmrec_finetune.json").is_file() and not self.args.retrain:
            log.info("bi-encoder: reusing %s", out)
            return json.loads((out / "lmrec_finetune.json").read_text())
        pairs = relevance_pairs(self.train, min_grade=RELEVANT, seed=0)
        cfg = FinetuneConfig(batch_size=64, lr=5e-5, epochs=1.0, max_seq_length=48, threads=1,
                             max_steps=self.args.bi_steps,
                             time_budget_s=self.args.bi_minutes * 60)
        log.info("bi-encoder: fine-tuning MiniLM on %d pairs for at most %.0f min", len(pairs), self.args.bi_minutes)
        res = finetune_pairs(pairs, out, cfg, progress=False, info={"dataset": "homedepot", "split": "train - val"})
        log.info("bi-encoder: %d steps in %.0f s", res.steps, res.train_s)
        return res.to_dict()

    def negatives(self) -> Callable[[list[str], int], list[np.ndarray]]:
        first = self.hybrid("minilm")
        return lambda queries, depth: [c.items for c in first.batch(queries, depth)]

    def groups(self) -> tuple[list[RelevanceGroup], list[RelevanceGroup]]:
        neg = self.negatives()
        t0 = time.time()
        train = relevance_groups(self.train, negatives=neg, n_negatives=self.args.negatives, depth=30, seed=0)
        val = relevance_groups(self.val, negatives=neg, n_negatives=self.args.negatives, depth=30, seed=1)
        log.info("groups: %d train (%d pairs), %d validation (%.0f s)", len(train), sum(len(g.texts) for g in train),
                 len(val), time.time() - t0)
        return train, val

    def ce_path(self) -> Path:
        return self.work / "ce-minilm"

    def train_ce(self) -> dict[str, Any]:
        out = self.ce_path()
        if (out / "lmrec_cross_encoder.json").is_file() and not self.args.retrain:
            log.info("cross-encoder: reusing %s", out)
            return json.loads((out / "lmrec_cross_encoder.json").read_text())
        train, val = self.groups()
        cfg = CrossEncoderConfig(base="minilm", batch_size=32, lr=self.args.ce_lr, epochs=1.0, max_length=64,
                                 max_steps=self.args.ce_steps,
                                 eval_steps=self.args.eval_steps, patience=4, threads=1,
                                 time_budget_s=self.args.ce_minutes * 60)
        res = train_cross_encoder(train, out, cfg, val=val, info={"dataset": "homedepot", "negatives": "hybrid top 30"})
        log.info("cross-encoder: %d steps, best %d, validation NDCG@10 %.4f", res.steps, res.best_step, res.val_ndcg)
        return res.to_dict()

    def distil_path(self) -> Path:
        return self.work / "bi-minilm-distilled"

    def train_bi_distil(self) -> dict[str, Any]:
        """The fine-tuned bi-encoder, trained further on the cross-encoder's margins (Margin-MSE)."""
        out = self.distil_path()
        if (out / "lmrec_finetune.json").is_file() and not self.args.retrain:
            log.info("distilled bi-encoder: reusing %s", out)
            return json.loads((out / "lmrec_finetune.json").read_text())
        teacher = CrossEncoderModel(self.ce_path(), backend="onnx")
        train, _ = self.groups()
        train = _enough(train, self.args.distil_steps * 32 // 6 * 10)  # groups for the steps it can take
        t0 = time.time()
        triples = margin_triples(train, teacher, max_per_group=6)
        log.info("distilled bi-encoder: %d teacher margins (%.0f s)", len(triples), time.time() - t0)
        base = f"st:{self.bi_path()}" if self.bi_path().is_dir() else "minilm"
        cfg = FinetuneConfig(base=base, batch_size=32, lr=2e-5, epochs=1.0, max_seq_length=48, threads=1,
                             max_steps=self.args.distil_steps,
                             time_budget_s=self.args.distil_minutes * 60)
        res = distil_bi_encoder(triples, out, cfg, info={"dataset": "homedepot", "teacher": str(self.ce_path())})
        log.info("distilled bi-encoder: %d steps in %.0f s", res.steps, res.train_s)
        return res.to_dict()

    def student_path(self) -> Path:
        return self.work / f"ce-student-{len(self.args.student_layers)}l"

    def train_student(self) -> dict[str, Any]:
        out = self.student_path()
        if (out / "lmrec_cross_encoder.json").is_file() and not self.args.retrain:
            log.info("student: reusing %s", out)
            return json.loads((out / "lmrec_cross_encoder.json").read_text())
        sliced = slice_layers(self.ce_path(), self.args.student_layers, self.work / "ce-sliced")
        teacher = CrossEncoderModel(self.ce_path(), backend="onnx")
        train, val = self.groups()
        train = _enough(train, self.args.student_steps * 32)  # the pairs it can see: the teacher scores only those
        t0 = time.time()
        soft = []
        for g in train:
            logits = teacher(g.query, g.texts)
            soft.append(RelevanceGroup(g.query, g.texts, (1.0 / (1.0 + np.exp(-logits))).tolist()))
        log.info("student: teacher scored %d training pairs (%.0f s)", sum(len(g.texts) for g in soft), time.time() - t0)
        cfg = CrossEncoderConfig(base=f"st:{sliced}", batch_size=32, lr=self.args.ce_lr, epochs=1.0, max_length=64,
                                 max_steps=self.args.student_steps,
                                 eval_steps=self.args.eval_steps, patience=4, threads=1,
                                 time_budget_s=self.args.student_minutes * 60)
        res = train_cross_encoder(soft, out, cfg, val=val, info={"dataset": "homedepot", "teacher": str(self.ce_path()),
                                                                 "kept_layers": list(self.args.student_layers)})
        log.info("student: %d steps, validation NDCG@10 %.4f", res.steps, res.val_ndcg)
        return res.to_dict()


def evaluate(s: Setup, trained: dict[str, Any]) -> list[dict[str, Any]]:
    args = s.args
    test, val = s.test, s.val
    split = f"query-80/20-seed0 test{'' if args.test_queries <= 0 else f'-sample{test.n_queries}'}"
    tune = lambda m: float(np.nanmean(per_query(m, val)["NDCG@10_catalog"]))  # noqa: E731
    first: dict[str, tuple[Retriever, dict[str, Any]]] = {
        "bm25": (s.bm25, {}), "dense:minilm": (s.dense("minilm"), {}),
        "hybrid-blend:bm25+minilm": (s.hybrid("minilm"), {"alpha": 0.7})}
    first["hybrid-blend:bm25+minilm"][1]["val_NDCG@10_catalog"] = round(tune(first["hybrid-blend:bm25+minilm"][0]), 4)
    reference = "hybrid-blend:bm25+minilm"  # the zero-shot hybrid of benchmarks/search.py: every delta is against it
    for label, path in (("minilm-ft", s.bi_path()), ("minilm-distil", s.distil_path())):
        if not path.is_dir():
            continue
        first[f"dense:{label}"] = (s.dense(str(path), label), {"trained": path.name})
        alphas = {a: tune(s.hybrid(str(path), a, label)) for a in (0.3, 0.5, 0.7)}
        a = max(alphas, key=alphas.get)
        first[f"hybrid-blend:bm25+{label}"] = (s.hybrid(str(path), a, label),
                                               {"alpha": a, "val_NDCG@10_catalog": round(alphas[a], 4)})
    hybrids = [n for n in first if n.startswith("hybrid-blend")]
    base_name = max(hybrids, key=lambda n: first[n][1].get("val_NDCG@10_catalog", 0.0))  # best on validation
    base = first[base_name][0]
    rerankers: dict[str, tuple[Any, dict[str, Any]]] = {}
    for label, path in (("ce", s.ce_path()), (f"ce-student-{len(args.student_layers)}l", s.student_path())):
        if not (path / "config.json").is_file():
            continue
        for backend in ("torch", "int8"):
            rerankers[f"{label}-{backend}" if backend != "torch" else label] = (
                CrossEncoderModel(path, backend=backend, threads=1, batch_size=64), {"backend": backend})
    if args.only_rerankers:
        rerankers = {k: v for k, v in rerankers.items() if k in args.only_rerankers.split(",")}
    rows: list[dict[str, Any]] = []
    results: dict[str, dict[str, np.ndarray]] = {}
    lat_q = test.queries[:args.latency_queries]

    def record(name: str, model: Retriever, params: dict[str, Any], extra: dict[str, Any]) -> None:
        t0 = time.time()
        m = per_query(model, test)
        results[name] = m
        row: dict[str, Any] = {"dataset": "homedepot", "split": split, "model": name, "params": params,
                               "catalog": s.hd.n_items, "queries": test.n_queries}
        for k in METRICS:
            row[k], row[f"{k}_se"] = mean_se(m[k][~np.isnan(m[k])])
        row.update(extra)
        if name != reference and reference in results:
            for k in ("NDCG@10_catalog", "Recall@100"):
                d, lo, hi = bootstrap_delta(m[k], results[reference][k])
                row[f"delta_{k}"] = f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}] vs {reference}"
        row["eval_s"] = round(time.time() - t0, 1)
        log.info("%s", {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
        rows.append(row)

    for name in [reference] + [n for n in first if n != reference]:
        model, params = first[name]
        p50, p99 = timed(lambda model=model: (lambda q: model(q, 100)), lat_q)
        record(name, model, params, {"query_p50_ms": p50, "query_p99_ms": p99})
    for name, (inner, params) in rerankers.items():
        scorer = CachedScorer(inner)
        tops = args.top_n if params["backend"] == "int8" else args.top_n[:1]  # torch: the first depth only
        for top in sorted(tops, reverse=True):
            mixes = {m: tune(RerankRetriever(base, scorer, top, mix=m)) for m in (0.0, 0.25, 0.5)}
            mix = max(mixes, key=mixes.get)
            rr = RerankRetriever(base, scorer, top_n=top, mix=mix, name=f"rerank:{name}")
            cands = {q: base(q, top) for q in lat_q}
            times = []
            inner(lat_q[0], [s.texts[int(i)] for i in cands[lat_q[0]].items])  # warm-up
            for q in lat_q:
                texts = [s.texts[int(i)] for i in cands[q].items]
                t0 = time.perf_counter()
                inner(q, texts)
                times.append((time.perf_counter() - t0) * 1000)
            live = RerankRetriever(base, inner, top_n=top, mix=mix)
            qp50, qp99 = timed(lambda live=live: (lambda q: live(q, 100)), lat_q)
            record(f"{base_name} > {name}@{top}", rr,
                   params | {"top_n": top, "mix": mix, "val_NDCG@10_catalog": round(mixes[mix], 4)},
                   {"rerank_p50_ms": float(np.percentile(times, 50)), "rerank_p99_ms": float(np.percentile(times, 99)),
                    "query_p50_ms": qp50, "query_p99_ms": qp99})
    return rows


def speed(s: Setup) -> None:
    """Re-rank latency of every re-ranker on the same queries, interleaved (query by query, the
    scorers in rotating order), so that load from other processes falls on all of them alike:
    the speed-up of each student over the teacher is a ratio within one run. Writes
    <name>_speed.json / .md."""
    args = s.args
    base = s.hybrid("minilm")
    queries = s.test.queries[:args.latency_queries]
    scorers: dict[str, Any] = {}
    for label, path in (("ce", s.ce_path()), (f"ce-student-{len(args.student_layers)}l", s.student_path())):
        if (path / "config.json").is_file():
            for backend in ("torch", "onnx", "int8"):
                scorers[f"{label}-{backend}"] = CrossEncoderModel(path, backend=backend, threads=1, batch_size=64)
    names = list(scorers)
    rows = []
    for top in args.top_n:
        texts = [[s.texts[int(i)] for i in base(q, top).items] for q in queries]
        for n in names:  # warm-up
            scorers[n](queries[0], texts[0])
        times: dict[str, list[float]] = {n: [] for n in names}
        for j, (q, t) in enumerate(zip(queries, texts)):
            for n in names[j % len(names):] + names[:j % len(names)]:
                t0 = time.perf_counter()
                scorers[n](q, t)
                times[n].append((time.perf_counter() - t0) * 1000)
        ref = float(np.median(times["ce-torch"])) if "ce-torch" in times else None
        for n in names:
            p50 = float(np.median(times[n]))
            rows.append({"dataset": "homedepot", "split": f"test, first {len(queries)} queries", "model": n,
                         "params": {"top_n": top, "threads": 1}, "rerank_p50_ms": p50,
                         "rerank_p99_ms": float(np.percentile(times[n], 99)),
                         "speedup_vs_ce-torch": round(ref / p50, 2) if ref else None})
            log.info("%s", rows[-1])
    command = "python benchmarks/cross_encoder.py --part speed " + " ".join(
        a for a in sys.argv[1:] if not a.startswith("--part") and a != "speed")
    write_results(f"{args.name}_speed", rows, command.strip(),
                  notes="Each query's top N texts (the zero-shot hybrid's) scored by every re-ranker in turn, the order "
                        "rotating per query; one intra-op thread each; medians and 99th percentiles over the queries.")


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        x = r.get("rerank_p50_ms")
        if x is None:
            continue
        ax.scatter(x, r["NDCG@10_catalog"], s=30)
        ax.annotate(r["model"].split(" > ")[-1], (x, r["NDCG@10_catalog"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    for r in rows:
        if "rerank_p50_ms" not in r and r["model"].startswith("hybrid"):
            ax.axhline(r["NDCG@10_catalog"], ls="--", lw=0.8, color="grey")
            ax.annotate(r["model"], (0, r["NDCG@10_catalog"]), fontsize=7, color="grey")
    ax.set_xlabel("re-rank latency per query, p50 ms (1 thread)")
    ax.set_ylabel("NDCG@10 of the catalog top 10 (all test queries)")
    ax.set_title("Home Depot: cross-encoder re-rankers, quality vs latency")
    ax.set_xscale("symlog", linthresh=1)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=["all", "bi", "ce", "student", "distil", "eval", "speed"], default="all")
    p.add_argument("--test-queries", type=int, default=0, help="seeded sample of test queries (0 = all)")
    p.add_argument("--val-queries", type=int, default=300)
    p.add_argument("--latency-queries", type=int, default=100)
    p.add_argument("--negatives", type=int, default=4, help="hard negatives per training query")
    p.add_argument("--bi-minutes", type=float, default=12.0)
    p.add_argument("--ce-minutes", type=float, default=25.0)
    p.add_argument("--ce-steps", type=int, default=900, help="the learning-rate schedule's length (0 = one epoch); "
                   "the minutes budget may stop earlier")
    p.add_argument("--bi-steps", type=int, default=250)
    p.add_argument("--student-steps", type=int, default=900)
    p.add_argument("--distil-steps", type=int, default=400)
    p.add_argument("--student-minutes", type=float, default=12.0)
    p.add_argument("--distil-minutes", type=float, default=10.0, help="Margin-MSE distillation of the "
                   "cross-encoder into the fine-tuned bi-encoder (0 = skip)")
    p.add_argument("--student-layers", type=lambda v: [int(x) for x in v.split(",")], default=[0, 2, 4])
    p.add_argument("--ce-lr", type=float, default=4e-5)
    p.add_argument("--eval-steps", type=int, default=150)
    p.add_argument("--top-n", type=lambda v: [int(x) for x in v.split(",")], default=[20, 50])
    p.add_argument("--work", default=None, help="folder for the trained models (default <cache_dir>/finetuned/homedepot)")
    p.add_argument("--only-rerankers", default="", help="comma list of re-rankers to evaluate (default all: ce, "
                   "ce-int8, ce-student-3l, ce-student-3l-int8)")
    p.add_argument("--retrain", action="store_true", help="train again even when a saved model exists")
    p.add_argument("--name", default="cross_encoder")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
    for noisy in ("httpx", "datasets", "urllib3", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.work is None:
        from lmrec.settings import get_settings

        args.work = str(Path(get_settings().cache_dir).expanduser() / "finetuned" / "homedepot")
    import torch

    torch.set_num_threads(1)
    s = Setup(args)
    trained: dict[str, Any] = {}
    if args.part in ("all", "bi"):
        trained["bi"] = s.train_bi()
    if args.part in ("all", "ce"):
        trained["ce"] = s.train_ce()
    if args.part in ("all", "student"):
        trained["student"] = s.train_student()
    if args.part in ("all", "distil") and args.distil_minutes > 0:
        trained["distil"] = s.train_bi_distil()
    if args.part == "speed":
        speed(s)
        return
    if args.part not in ("all", "eval"):
        return
    rows = evaluate(s, trained)
    notes = training_notes(s)
    command = "python benchmarks/cross_encoder.py " + " ".join(argv if argv is not None else sys.argv[1:])
    json_path, md_path = write_results(args.name, rows, command.strip(), notes=notes)
    png = md_path.with_name(f"{args.name}_tradeoff.png")
    plot(rows, png)
    with md_path.open("a", encoding="utf-8") as f:
        f.write(full_table(rows) + f"\n![quality vs latency]({png.name})\n")
    log.info("wrote %s %s %s", json_path, md_path, png)


def training_notes(s: Setup) -> str:
    out = ["## Trained models\n"]
    for label, path, manifest in (("bi-encoder", s.bi_path(), "lmrec_finetune.json"),
                                  ("cross-encoder", s.ce_path(), "lmrec_cross_encoder.json"),
                                  ("student", s.student_path(), "lmrec_cross_encoder.json"),
                                  ("distilled bi-encoder", s.distil_path(), "lmrec_finetune.json")):
        f = path / manifest
        if not f.is_file():
            continue
        m = json.loads(f.read_text())
        cfg = m.get("config", {})
        out.append(f"- {label}: {m.get('steps')} steps over {m.get('pairs')} training pairs in {m.get('train_s')} s "
                   f"(lr {cfg.get('lr')}, batch {cfg.get('batch_size')}"
                   + (f", best step {m['best_step']}, validation NDCG@10 {m['val_ndcg']}" if m.get("val_ndcg") else "")
                   + (f", kept layers {m['info']['kept_layers']}" if m.get("info", {}).get("kept_layers") else "")
                   + ")")
    return "\n".join(out) + "\n"


def full_table(rows: list[dict[str, Any]]) -> str:
    cols = ["NDCG@10_catalog", "Recall@100", "NDCG@10"]
    out = ["\n## All metrics (mean ± standard error over test queries; latency in ms, one thread)\n\n"
           "| model | " + " | ".join(cols) + " | rerank p50 / p99 | query p50 / p99 |\n" + "|---" * (len(cols) + 3)
           + "|\n"]
    for r in rows:
        cells = [f"{r[c]:.4f} ± {r[c + '_se']:.4f}" for c in cols]
        rr = f"{r['rerank_p50_ms']:.1f} / {r['rerank_p99_ms']:.1f}" if "rerank_p50_ms" in r else "-"
        out.append(f"| {r['model']} | " + " | ".join(cells) + f" | {rr} | {r['query_p50_ms']:.1f} / "
                   f"{r['query_p99_ms']:.1f} |\n")
    deltas = [r for r in rows if "delta_NDCG@10_catalog" in r]
    if deltas:
        out.append("\n## Paired differences (95% bootstrap CI over test queries)\n\n| model | ΔNDCG@10_catalog | "
                   "ΔRecall@100 |\n|---|---|---|\n")
        for r in deltas:
            out.append(f"| {r['model']} | {r['delta_NDCG@10_catalog']} | {r['delta_Recall@100']} |\n")
    return "".join(out)


if __name__ == "__main__":
    main()
