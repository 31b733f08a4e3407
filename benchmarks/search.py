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

    python benchmarks/search.py         # full protocol (slow on 2 shared cores)
    python benchmarks/search.py --catalog pool --test-queries 300 --val-queries 100 --qbqtc-test 1000 --qbqtc-dev 500

Embeddings are cached per text under ~/.cache/lmrec/bench (LMREC_BENCH_CACHE), so reruns are
fast; LMREC_BENCH_FAKE=1 swaps the models for a hashing encoder (a smoke run of the script).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import sys
import time
from pathlib import Path
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

CACHE = Path(os.environ.get("LMREC_BENCH_CACHE", Path.home() / ".cache" / "lmrec" / "bench"))
RELEVANT = 2.5  # Recall@100: grade >= 2.5 ("mostly relevant": grades 2.67 and 3)


class TextStore:
    """Embeddings keyed by a hash of the text, saved as one .npz; grows as texts are encoded."""

    def __init__(self, name: str) -> None:
        self.path = CACHE / f"{name}.npz"
        self.keys, self.vecs = np.zeros(0, np.int64), None
        if self.path.exists():
            with np.load(self.path) as z:
                self.keys, self.vecs = z["keys"], z["vecs"]
        self.index = {int(k): i for i, k in enumerate(self.keys)}

    def get(self, texts: Sequence[str], encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        keys = [int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little", signed=True)
                for t in texts]
        missing = list({k: t for k, t in zip(keys, texts) if k not in self.index}.items())
        for s in range(0, len(missing), 256):
            part = missing[s:s + 256]
            v = np.asarray(encode([t for _, t in part]), np.float32).reshape(len(part), -1)
            self.index.update({k: len(self.keys) + j for j, (k, _) in enumerate(part)})
            self.keys = np.concatenate([self.keys, np.array([k for k, _ in part], np.int64)])
            self.vecs = v if self.vecs is None else np.concatenate([self.vecs, v])
        if missing:
            CACHE.mkdir(parents=True, exist_ok=True)
            np.savez(self.path.with_suffix(".tmp.npz"), keys=self.keys, vecs=self.vecs)
            os.replace(self.path.with_suffix(".tmp.npz"), self.path)
        return self.vecs[[self.index[k] for k in keys]] if keys else np.zeros((0, 384), np.float32)


class BenchEncoder:
    """A `TextEncoder` over the text cache; the model loads only on a cache miss.
    `live_queries=True` encodes queries with the model every time (for latency)."""

    def __init__(self, name: str) -> None:
        self.name, self.dim, self._model = name, 384, None
        self.stores = {"query": TextStore(f"{name}-query"), "item": TextStore(f"{name}-item")}
        self.live_queries = False

    def _fns(self) -> dict[str, Callable[[list[str]], np.ndarray]]:
        if self._model is None:
            e: Any
            if os.environ.get("LMREC_BENCH_FAKE"):  # smoke runs: a hashing encoder, no model
                from lmrec.text.base import FakeEncoder
                e = FakeEncoder(384)
            elif self.name == "e5":
                from lmrec.text.e5 import E5Encoder
                e = E5Encoder(threads=1)
            else:
                from lmrec.text.sentence import SentenceTransformerEncoder
                e = SentenceTransformerEncoder(threads=1)
            self._model = {"query": e.encode_queries, "item": e.encode_items}
        return self._model

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if self.live_queries:
            return normalize(np.asarray(self._fns()["query"](list(texts)), np.float32).reshape(len(texts), -1))
        return normalize(self.stores["query"].get(list(texts), lambda t: self._fns()["query"](t)))

    def encode_items(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return normalize(self.stores["item"].get(list(texts), lambda t: self._fns()["item"](t)))


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
    minilm = DenseRetriever(enc["minilm"], name="dense:minilm").fit(texts, items)
    e5 = DenseRetriever(enc["e5"], name="dense:e5").fit(texts, items)
    rrf = HybridRetriever(bm25, minilm, "rrf", k_rrf=60, depth=100, name="hybrid-rrf")
    alphas = np.round(np.linspace(0, 1, 11), 2)
    # the tuning target is retrieval quality on validation: NDCG@10 of the catalog top 10
    tune = lambda m: float(catalog_metrics(m, val)["NDCG@10_catalog"].mean())  # noqa: E731
    val_blend = {a: tune(HybridRetriever(bm25, minilm, "blend", alpha=a)) for a in alphas}
    alpha = float(max(val_blend, key=val_blend.get))
    blend = HybridRetriever(bm25, minilm, "blend", alpha=alpha, depth=100, name="hybrid-blend")
    scorer = BiEncoderScorer(enc["e5"], name="e5")
    val_mix = {m: tune(RerankRetriever(rrf, scorer, 30, mix=m)) for m in (0.0, 0.25, 0.5, 0.75)}
    mix = float(max(val_mix, key=val_mix.get))
    rerank = RerankRetriever(rrf, scorer, top_n=30, mix=mix, name="rerank")
    stemmed = "+PyStemmer" if importlib.util.find_spec("Stemmer") else ""
    models: list[tuple[str, Retriever, dict[str, Any], list[BenchEncoder]]] = [
        ("bm25", bm25, {"k1": 1.5, "b": 0.75, "tokenizer": "bm25s+stopwords" + stemmed}, []),
        ("dense:minilm", minilm, {}, [enc["minilm"]]),
        ("dense:e5", e5, {}, [enc["e5"]]),
        ("hybrid-rrf:bm25+minilm", rrf, {"k_rrf": 60, "depth": 100}, [enc["minilm"]]),
        ("hybrid-blend:bm25+minilm", blend, {"alpha": alpha, "norm": "minmax", "depth": 100,
                                             "val_NDCG@10_catalog": round(val_blend[alpha], 4)}, [enc["minilm"]]),
        ("rerank:hybrid-rrf+e5", rerank, {"top_n": 30, "mix": mix, "val_NDCG@10_catalog": round(val_mix[mix], 4)},
         [enc["minilm"], enc["e5"]]),
    ]
    split = f"query-80/20-seed0 test{'' if args.test_queries <= 0 else f'-sample{test.n_queries}'}"
    rows = []
    for name, model, params, encs in models:
        t0 = time.time()
        row: dict[str, Any] = {"dataset": "homedepot", "split": split, "model": name, "params": params,
                               "catalog": len(items), "queries": test.n_queries}
        row["NDCG@10"], row["NDCG@10_se"] = mean_se(judged_ndcg(model, test))
        for key, vals in catalog_metrics(model, test).items():
            row[key], row[f"{key}_se"] = mean_se(vals)
        row.update(latency(model, test.queries[:args.latency_queries], encs, (minilm, e5)))
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
        for name in ("e5", "minilm"):
            scorers[f"dense:{name}"] = (lambda e=enc[name]: np.einsum(
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
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    enc = {"minilm": BenchEncoder("minilm"), "e5": BenchEncoder("e5")}
    rows = []
    if args.only in (None, "homedepot"):
        rows += homedepot(args, enc)
    if args.only in (None, "qbqtc"):
        rows += qbqtc(args, enc)
    command = "python benchmarks/search.py " + " ".join(argv if argv is not None else sys.argv[1:])
    json_path, md_path = write_results("search", rows, command.strip())
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
