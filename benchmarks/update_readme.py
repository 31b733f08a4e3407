"""Copy the committed benchmark tables into docs/benchmarks.md, and the headline figures (what
the service serves, benchmarks/results/served.json) into README.md between the HEADLINE markers.

    python benchmarks/update_readme.py
"""

from __future__ import annotations

import json
from pathlib import Path

from lmrec.eval.report import rows_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- BENCHMARKS:START -->", "<!-- BENCHMARKS:END -->"
HEAD_START, HEAD_END = "<!-- HEADLINE:START -->", "<!-- HEADLINE:END -->"

#: (result file, heading, note) in README order; a section whose result file is missing is skipped
SECTIONS = [
    ("served", "What the HTTP service serves (fed and queried through the API)",
     "served default = the service before any training; served trained = after POST /admin/train with "
     "the row's config; offline lmrec eval = the same config fitted and evaluated offline."),
    ("baselines", "Classic baselines (full ranking, tuned on validation, refit on train + validation)",
     "ΔNDCG@10 is the paired-bootstrap difference to the best model of the same data set (95% CI)."),
    ("lm_recall", "Language-model recall channels, CF + LM blends and cold start",
     "Zero-shot MiniLM (packaged, offline) over each item's text; ΔNDCG@10 is the paired-bootstrap "
     "difference to the named reference (95% CI). Cold-start rows rank only items never seen in "
     "training, with ties broken at random (popular / ease averaged over 5 tie seeds): "
     "`-coldstart-random` holds out a random 20% of the items, `-coldstart` the items first seen in "
     "the last 10% of the timeline."),
    ("search", "Product search (Home Depot, English) and query-title relevance (QBQTC, Chinese)",
     "Home Depot: NDCG@10 over each test query's judged products (graded 1-3), Recall@100 and "
     "NDCG@10_catalog over the whole 54,667-product catalog (see the benchmark's markdown for all "
     "columns). Latency per query includes query encoding, single thread, on a loaded machine."),
    ("encoders", "Encoders: torch vs ONNX fp32 vs ONNX int8",
     "Single-query latency and throughput at one thread, quiet machine; the int8 quality cost on real tasks is in "
     "the lm_recall table (minilm-int8 rows) and in the search table."),
    ("vector_index", "Vector index: exact vs faiss flat vs HNSW",
     "Rows for 100k vectors come from `python benchmarks/vector_index.py --quick` (HNSW ef_construction "
     "200, one build thread); rows for 1M from `python benchmarks/vector_index.py --sizes 1000000 "
     "--ef-construction 40 --build-threads 2 --queries 300 --ef-high 512` (a cheaper graph: recall@10 "
     "0.68 at ef_search 64, 0.89 at 512). Synthetic clustered 384-d vectors; loaded machine."),
    ("sequential", "Trained sequential recommenders (SASRec+, text-aware)", ""),
    ("stack", "ML-100k: the text-aware sequential model stacked into the pipeline", ""),
    ("ml1m", "ML-1M (random 80/20 split): trained models against EASE",
     "Issue 4's target here is EASE + 5% Recall@20 (>= 0.2885); validation choices are listed in "
     "benchmarks/results/ml1m.md."),
    ("kg", "Knowledge graph: KG channel and features in the pipeline, KG embeddings, explanations",
     "ML-1M given split with the movielens-1m-kg triples; Amazon Scientific with the category / brand graph "
     "parsed from item text. Δ columns: paired-bootstrap difference (95% CI) to the named reference on the "
     "same test users. Parts run separately (`--part`); the notes under the table summarise each."),
    ("two_tower", "Two-tower recommender (frozen LM item tower + MLP)", ""),
    ("finetune_search", "Fine-tuning the bi-encoder on Home Depot queries", ""),
    ("cross_encoder", "Home Depot: cross-encoder re-rankers, distilled and pruned students",
     "All 2,359 test queries of the 80/20 query split, the whole 54,667-product catalog; re-rankers re-score "
     "the first stage's top N; deltas are paired-bootstrap differences (95% CI) to the zero-shot hybrid. "
     "Latency: one thread, on a machine shared with other jobs. See docs/relevance.md."),
    ("search_service", "Search through the HTTP API, with and without the cross-encoder", ""),
    ("qbqtc_finetune", "QBQTC (Chinese): the trainable multilingual-e5-small, fine-tuned", ""),
    ("faq", "Customer-service FAQ answers (Bitext): retrieval, re-ranking, abstention", ""),
    ("pipeline", "Multi-stage pipeline: recall -> merge -> rank -> re-rank", ""),
    ("fairness", "Popularity bias and fairness: exposure, long tail, user groups",
     "gini@10: Gini of the items' top-10 appearances over the catalog; longtail@10: share of top-10 slots "
     "outside the 20% most popular training items; NDCG@10 per activity decile, and per gender and age band "
     "where the data set has them (lmrec.eval.fairness). The re-ranker rows apply `longtail` "
     "(lmrec.rerank.longtail) to the base model's top 100; ΔNDCG@10 is the paired-bootstrap difference to "
     "strength 0 (95% CI)."),
    ("privacy", "Privacy: DP-SGD two-tower over epsilon, noisy popularity counts",
     "ML-100k temporal leave-one-out. One user = one privacy unit (Poisson-sampled users, one clipped gradient "
     "per user), delta 1e-5, achieved epsilon in each row; rows come from `--section dp --section counts` and "
     "`--section dp_reference` (each row records its section). See docs/privacy.md."),
    ("privacy_federated", "Privacy: simulated federated training against centralised",
     "FedAvg of the two-tower over 20 user shards with pairwise masks; rounds to converge are in the JSON."),
    ("ingest", "Event ingest with durability on (SQLite WAL synchronous=FULL, PostgreSQL fsync)", ""),
    ("stream_ingest", "Event streams: NATS JetStream and Redis Streams into the engine", ""),
    ("realtime", "Serving engine in process: latency and event-to-effect", ""),
    ("service", "HTTP service under load", ""),
    ("workers", "Several workers over one PostgreSQL store", ""),
]


def section(name: str, heading: str, note: str) -> str | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    md_path = RESULTS / f"{name}.md"
    table = rows_table(data["rows"])
    if md_path.exists():
        # the benchmark's own markdown is authoritative (it may have custom columns and several
        # tables): everything after its header lines, tables kept apart by blank lines
        lines = md_path.read_text().splitlines()
        first = next((j for j, ln in enumerate(lines) if ln.startswith("|")), None)
        if first is not None:
            table = "\n".join(lines[first:]).strip()
    out = [f"### {heading}", "", f"Reproduce: `{data['command']}` (commit {data.get('git_commit')}, "
           f"{data.get('date')}, {data.get('machine')}).", ""]
    if note:
        out += [note, ""]
    out += [table, ""]
    return "\n".join(out)


def headline() -> str | None:
    """The README's headline table: served quality (served.json) per data set."""
    path = RESULTS / "served.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    lines = ["| data set | what | NDCG@10 | HR@10 | vs |", "|---|---|---|---|---|"]
    for r in data["rows"]:
        vs = "-"
        if r.get("vs"):
            vs = f"{r['delta_NDCG@10']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] vs {r['vs']}"
        cfg = (r.get("params") or {}).get("config", "")
        what = r["what"] + (f" (`{Path(cfg).name}`)" if cfg and "default" not in r["what"] else "")
        lines.append(f"| {r['dataset']} | {what} | {r['NDCG@10']:.4f} | {r['HR@10']:.4f} | {vs} |")
    return (f"Reproduce: `{data['command']}` (commit {data.get('git_commit')}, {data.get('date')}).\n\n"
            + "\n".join(lines))


def _replace(text: str, start: str, end: str, block: str) -> str:
    if start in text:
        a, b = text.index(start), text.index(end) + len(end)
        return text[:a] + start + "\n" + block + "\n" + end + text[b:]
    return text


def main() -> None:
    docs = ROOT / "docs" / "benchmarks.md"
    text = docs.read_text()
    parts = [s for s in (section(*spec) for spec in SECTIONS) if s]
    docs.write_text(_replace(text, START, END, "\n".join(parts)))
    print(f"docs/benchmarks.md: {len(parts)} benchmark sections")
    head = headline()
    if head:
        readme = ROOT / "README.md"
        readme.write_text(_replace(readme.read_text(), HEAD_START, HEAD_END, head))
        print("README.md: headline table")


if __name__ == "__main__":
    main()
