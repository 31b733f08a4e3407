"""Query -> product search: BM25, dense (MiniLM, E5), hybrid and re-ranking on Home Depot, and
pointwise query-title scoring on QBQTC (Chinese). Writes benchmarks/results/search.json / .md.

Home Depot: queries split 80/20 with `query_split(0.2, seed=0)`; rows report the test part (or a
seeded sample); fusion weights are tuned for NDCG@10_catalog on a sample of the train part
(validation), the rest of train is left untouched. Per-query metrics, with standard errors across queries:
- `NDCG@10`: graded NDCG (linear gain = grade 1..3) of the query's judged products re-ranked by
  the model's score (the Kaggle-style per-query protocol);
- `Recall@100`: share of the query's relevant products (grade >= 2.5) in the top 100 retrieved
  from the catalog; `Recall@100_any`: every judged product counts as relevant;
- `NDCG@10_catalog`: graded NDCG@10 of the top 10 retrieved from the catalog (unjudged = 0);
- `p50_ms` / `p99_ms`: one query at a time, top 100, query encoding included.
QBQTC: ROC-AUC (label >= 1 vs 0; label 2 vs rest) and Spearman with the 0/1/2 label of each
pair's score, on test_public and dev (or seeded samples).

    python benchmarks/search.py         # full protocol: all 54,667 products, all test queries
    python benchmarks/search.py --encoders minilm,minilm-int8,e5-small   # the default dense encoders
    python benchmarks/search.py --catalog pool --test-queries 300 --val-queries 100 --qbqtc-test 1000 --qbqtc-dev 500

Dense channels use the team registry's encoders (`lmrec.text.registry.get_encoder(name,
cache=True)`): item and query embeddings go through the CachedEncoder's SQLite cache, so reruns
encode nothing; latency encodes each query live with the uncached model. Rows: dense:<encoder>
for each of --encoders (e5-small is labelled "e5"), hybrid-rrf / hybrid-blend of BM25 with each
MiniLM variant (minilm, minilm-int8), and the e5 re-ranker over hybrid-rrf:bm25+minilm.
LMREC_BENCH_FAKE=1 swaps the models for a hashing encoder kept in memory (a smoke run; nothing
is cached on disk); write smoke runs elsewhere with --name.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np
from scipy.stats import rankdata, spearmanr

from lmrec.data.loaders import load_relevance
from lmrec.data.relevance import RelevanceSet
from lmrec.eval.metrics import gains_from_arrays, graded_ndcg
from lmrec.eval.report import write_results
from lmrec.recall.bm25 import BM25Retriever
from lmrec.recall.hybrid import HybridRetriever
from lmrec.recall.search import BiEncoderScorer, DenseRetriever, RerankRetriever, Retriever
from lmrec.text.base import normalize

RELEVANT = 2.5  # Recall@100: grade >= 2.5 ("mostly relevant": grades 2.67 and 3)
LABELS = {"e5-small": "e5"}  # row label of an encoder (the committed rows say dense:e5)
MINILMS = ("minilm", "minilm-int8", "minilm-onnx")  # the encoders hybrids are built with


class BenchEncoder:
    """A registry encoder behind its CachedEncoder (SQLite embedding cache); the model loads
    on first use. `live_queries=True` encodes queries with the uncached model (for latency).
    With LMREC_BENCH_FAKE=1 it is an in-memory hashing encoder (smoke runs)."""

    def __init__(self, name: str) -> None:
        self.name, self.label, self.dim = name, LABELS.get(name, name), 384
        self._cached: Any = None
        self._live: Any = None
        self.live_queries = False

    def _load(self) -> None:
        if self._cached is not None:
            return
        if os.environ.get("LMREC_BENCH_FAKE"):  # smoke runs: no model, nothing written to disk
            from lmrec.text.base import FakeEncoder
            self._cached = self._live = FakeEncoder(384, name=f"fake-{self.label}")
        else:
            from lmrec.text.registry import get_encoder
            self._cached = get_encoder(self.name, cache=True, threads=1)
            self._live = self._cached.encoder
        self.dim = self._cached.dim

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        self._load()
        enc = self._live if self.live_queries else self._cached
        return normalize(np.asarray(enc.encode_queries(list(texts), batch_size=batch_size), np.float32)
                         .reshape(len(texts), -1))

    def encode_items(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        self._load()
        return normalize(self._cached.encode_items(list(texts), batch_size=batch_size, progress=progress))


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    return np.arange(n) if size <= 0 or size >= n else np.sort(np.random.default_rng(seed).permutation(n)[:size])


def mean_se(x: np.ndarray) -> tuple[float, float]:
    return float(np.mean(x)), float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def judged_ndcg(model: Retriever, rs: RelevanceSet, k: int = 10) -> np.ndarray:
    """Per-query graded NDCG@k of each query's judged products re-ranked by the model's score."""
    width = max(len(rs.judged(q)[0]) for q in range(rs.n_queries))
    recs = np.full((rs.n_queries, width), -1, np.int64)
    for q in range(rs.n_queries):
        items, _ = rs.judged(q)
        s = model.score_items(rs.queries[q], items)
        recs[q, :len(items)] = items[np.lexsort((items, -s))]
    gains = gains_from_arrays(rs.query_idx, rs.item_idx, rs.grade, (rs.n_queries, rs.n_items))
    return graded_ndcg(recs, gains, k, gain="linear")


def catalog_metrics(model: Retriever, rs: RelevanceSet) -> dict[str, np.ndarray]:
    """Recall@100 (grade >= RELEVANT, and any judged) and NDCG@10 of retrieval from the catalog."""
    found = model.batch(rs.queries, 100)
    recs = np.full((rs.n_queries, 100), -1, np.int64)
    rec, rec_any = np.zeros(rs.n_queries), np.zeros(rs.n_queries)
    for q, c in enumerate(found):
        recs[q, :len(c)] = c.items
        items, grade = rs.judged(q)
        hit = np.isin(items, c.items)
        rel = grade >= RELEVANT
        rec[q] = hit[rel].mean() if rel.any() else np.nan
        rec_any[q] = hit.mean()
    gains = gains_from_arrays(rs.query_idx, rs.item_idx, rs.grade, (rs.n_queries, rs.n_items))
    return {"Recall@100": rec[~np.isnan(rec)], "Recall@100_any": rec_any,
            "NDCG@10_catalog": graded_ndcg(recs[:, :10], gains, 10, gain="linear")}


def latency(model: Retriever, queries: Sequence[str], encoders: list[BenchEncoder],
            dense: Sequence[DenseRetriever]) -> dict[str, float]:
    """Per-query milliseconds of `model(query, 100)`, encoding the query with the model."""
    for e in encoders:
        e.live_queries = True
    for d in dense:  # forget the batch run's query vectors
        d._recent.clear()
    model("warm up", 100)  # loads the models
    times = []
    for q in queries:
        t0 = time.perf_counter()
        model(q, 100)
        times.append((time.perf_counter() - t0) * 1000)
    for e in encoders:
        e.live_queries = False
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


def homedepot(args: argparse.Namespace, enc: dict[str, BenchEncoder]) -> list[dict[str, Any]]:
    hd = load_relevance("homedepot")
    train, test = hd.query_split(test_fraction=0.2, seed=0)
    test = test.subset_queries(_sample(test.n_queries, args.test_queries, 0))
    val = train.subset_queries(_sample(train.n_queries, args.val_queries, 1))
    items = (np.arange(hd.n_items) if args.catalog == "full"
             else np.unique(np.concatenate([test.item_idx, val.item_idx])))
    texts = [hd.item_text[i] for i in items]
    print(f"homedepot: {test.n_queries} test / {val.n_queries} validation queries, catalog {len(items)}", flush=True)
    bm25 = BM25Retriever("english").fit(texts, items)
    stemmed = "+PyStemmer" if importlib.util.find_spec("Stemmer") else ""
    models: list[tuple[str, Retriever, dict[str, Any], list[BenchEncoder]]] = [
        ("bm25", bm25, {"k1": 1.5, "b": 0.75, "tokenizer": "bm25s+stopwords" + stemmed}, [])]
    dense: dict[str, DenseRetriever] = {}
    for name, e in enc.items():
        t0 = time.time()
        dense[name] = DenseRetriever(e, name=f"dense:{e.label}").fit(texts, items)
        print(f"  encoded {len(items)} products with {name} ({time.time() - t0:.0f} s, cached after)", flush=True)
        models.append((f"dense:{e.label}", dense[name], {"encoder": name}, [e]))
    # the tuning target is retrieval quality on validation: NDCG@10 of the catalog top 10
    tune = lambda m: float(catalog_metrics(m, val)["NDCG@10_catalog"].mean())  # noqa: E731
    alphas = np.round(np.linspace(0, 1, 11), 2)
    rrfs: dict[str, HybridRetriever] = {}
    for name in [n for n in enc if n in MINILMS]:
        e, lab = enc[name], enc[name].label
        rrfs[name] = HybridRetriever(bm25, dense[name], "rrf", k_rrf=60, depth=100, name=f"hybrid-rrf:{lab}")
        val_blend = {a: tune(HybridRetriever(bm25, dense[name], "blend", alpha=a)) for a in alphas}
        alpha = float(max(val_blend, key=val_blend.get))
        blend = HybridRetriever(bm25, dense[name], "blend", alpha=alpha, depth=100, name=f"hybrid-blend:{lab}")
        models += [(f"hybrid-rrf:bm25+{lab}", rrfs[name], {"k_rrf": 60, "depth": 100, "encoder": name}, [e]),
                   (f"hybrid-blend:bm25+{lab}", blend, {"alpha": alpha, "norm": "minmax", "depth": 100, "encoder": name,
                                                        "val_NDCG@10_catalog": round(val_blend[alpha], 4)}, [e])]
    rer = args.rerank_encoder
    if "minilm" in rrfs and rer:
        renc = enc.get(rer) or BenchEncoder(rer)
        scorer = BiEncoderScorer(renc, name=renc.label)
        top = args.rerank_top
        val_mix = {m: tune(RerankRetriever(rrfs["minilm"], scorer, top, mix=m)) for m in (0.0, 0.25, 0.5, 0.75)}
        mix = float(max(val_mix, key=val_mix.get))
        rerank = RerankRetriever(rrfs["minilm"], scorer, top_n=top, mix=mix, name="rerank")
        models.append((f"rerank:hybrid-rrf+{renc.label}", rerank,
                       {"top_n": top, "mix": mix, "encoder": rer, "val_NDCG@10_catalog": round(val_mix[mix], 4)},
                       [enc["minilm"], renc]))
    split = f"query-80/20-seed0 test{'' if args.test_queries <= 0 else f'-sample{test.n_queries}'}"
    rows = []
    for name, model, params, encs in models:
        t0 = time.time()
        row: dict[str, Any] = {"dataset": "homedepot", "split": split, "model": name, "params": params,
                               "catalog": len(items), "queries": test.n_queries}
        row["NDCG@10"], row["NDCG@10_se"] = mean_se(judged_ndcg(model, test))
        for key, vals in catalog_metrics(model, test).items():
            row[key], row[f"{key}_se"] = mean_se(vals)
        row.update(latency(model, test.queries[:args.latency_queries], encs, list(dense.values())))
        row["eval_s"] = round(time.time() - t0, 1)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        rows.append(row)
    return rows


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC-AUC as the Mann-Whitney statistic (ties count one half)."""
    r = rankdata(scores)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((r[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def qbqtc(args: argparse.Namespace, enc: dict[str, BenchEncoder]) -> list[dict[str, Any]]:
    qb = load_relevance("qbqtc")
    bm25 = BM25Retriever("char").fit(qb.item_text)  # IDF from all 22,984 titles
    rows = []
    for part, size in (("test", args.qbqtc_test), ("dev", args.qbqtc_dev)):
        pairs = np.flatnonzero(qb.part == part)
        pairs = pairs[_sample(len(pairs), size, 0)]
        queries = [qb.queries[i] for i in qb.query_idx[pairs]]
        titles = [qb.item_text[i] for i in qb.item_idx[pairs]]
        label = qb.grade[pairs]
        scorers: dict[str, Callable[[], np.ndarray]] = {
            "bm25": lambda: np.array([bm25.score_items(q, np.array([i]))[0]
                                      for q, i in zip(queries, qb.item_idx[pairs])]),
        }
        qenc = dict(enc)
        if args.rerank_encoder and args.rerank_encoder not in qenc:  # the multilingual model scores Chinese
            qenc[args.rerank_encoder] = BenchEncoder(args.rerank_encoder)
        for e in qenc.values():
            scorers[f"dense:{e.label}"] = (lambda e=e: np.einsum(
                "ij,ij->i", e.encode_queries(queries), e.encode_items(titles)))
        split = part if size <= 0 else f"{part}-sample{len(pairs)}"
        for name, fn in scorers.items():
            t0 = time.time()
            s = fn()
            row = {"dataset": "qbqtc", "split": split, "model": name, "pairs": len(pairs),
                   "AUC": auc(s, label >= 1), "AUC_label2": auc(s, label == 2),
                   "spearman": float(spearmanr(s, label).statistic), "eval_s": round(time.time() - t0, 1)}
            print(row, flush=True)
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--catalog", choices=["full", "pool"], default="full",
                   help="full: all 54,667 products; pool: the products judged for the evaluated queries")
    p.add_argument("--test-queries", type=int, default=0, help="seeded sample of test queries (0 = all)")
    p.add_argument("--val-queries", type=int, default=500, help="validation queries carved from train")
    p.add_argument("--latency-queries", type=int, default=50)
    p.add_argument("--qbqtc-test", type=int, default=0, help="seeded sample of test pairs (0 = all 5,000)")
    p.add_argument("--qbqtc-dev", type=int, default=0, help="seeded sample of dev pairs (0 = all 20,000)")
    p.add_argument("--only", choices=["homedepot", "qbqtc"], default=None)
    p.add_argument("--encoders", default="minilm,minilm-int8,e5-small",
                   help="comma list of registry encoders for the dense channels (minilm, minilm-int8, "
                        "minilm-onnx, e5-small)")
    p.add_argument("--rerank-encoder", default="e5-small",
                   help="bi-encoder that re-ranks the top --rerank-top of hybrid-rrf:bm25+minilm and scores QBQTC pairs "
                        "even when it is not in --encoders ('' = no re-ranker)")
    p.add_argument("--rerank-top", type=int, default=30, help="how many hybrid results the re-ranker re-scores")
    p.add_argument("--name", default="search", help="results file stem (benchmarks/results/NAME.json/.md)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    enc = {name: BenchEncoder(name) for name in args.encoders.split(",") if name}
    rows = []
    if args.only in (None, "homedepot"):
        rows += homedepot(args, enc)
    if args.only in (None, "qbqtc"):
        rows += qbqtc(args, enc)
    command = "python benchmarks/search.py " + " ".join(argv if argv is not None else sys.argv[1:])
    json_path, md_path = write_results(args.name, rows, command.strip())
    with md_path.open("a", encoding="utf-8") as f:  # the shared table leaves out these metrics
        f.write(full_tables(rows))
    print("wrote", json_path, md_path)
    print(full_tables(rows))


def full_tables(rows: list[dict[str, Any]]) -> str:
    """Markdown tables with every metric of this benchmark (mean ± standard error)."""
    specs = {"homedepot": ["NDCG@10", "Recall@100", "Recall@100_any", "NDCG@10_catalog", "p50_ms", "p99_ms"],
             "qbqtc": ["AUC", "AUC_label2", "spearman"]}
    out = []
    for ds, cols in specs.items():
        sel = [r for r in rows if r["dataset"] == ds]
        if not sel:
            continue
        out.append(f"\n## {ds}: all metrics\n\n| split | model | " + " | ".join(cols) + " |\n"
                   + "|---" * (len(cols) + 2) + "|\n")
        for r in sel:
            cells = [f"{r[c]:.4f} ± {r[c + '_se']:.4f}" if c + "_se" in r else
                     (f"{r[c]:.1f}" if c.endswith("_ms") else f"{r[c]:.4f}") for c in cols]
            out.append(f"| {r['split']} | {r['model']} | " + " | ".join(cells) + " |\n")
    return "".join(out)


if __name__ == "__main__":
    main()
