"""Copy the committed benchmark tables into README.md between the BENCHMARKS markers.

    python benchmarks/update_readme.py
"""

from __future__ import annotations

import json
from pathlib import Path

from lmrec.eval.report import rows_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- BENCHMARKS:START -->", "<!-- BENCHMARKS:END -->"

#: (result file, heading, note) in README order; a section whose result file is missing is skipped
SECTIONS = [
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
    ("two_tower", "Two-tower recommender (frozen LM item tower + MLP)", ""),
    ("finetune_search", "Fine-tuning the bi-encoder on Home Depot queries", ""),
    ("pipeline", "Multi-stage pipeline: recall -> merge -> rank -> re-rank", ""),
    ("ingest", "Event ingest with durability on (SQLite WAL synchronous=FULL, PostgreSQL fsync)", ""),
    ("realtime", "Serving engine in process: latency and event-to-effect", ""),
    ("service", "HTTP service under load", ""),
]


def section(name: str, heading: str, note: str) -> str | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    md_path = RESULTS / f"{name}.md"
    table = rows_table(data["rows"])
    if md_path.exists():
        # the benchmark's own markdown table is authoritative (it may have custom columns)
        lines = md_path.read_text().splitlines()
        body = [ln for ln in lines if ln.startswith("|")]
        if body:
            table = "\n".join(body)
    out = [f"### {heading}", "", f"Reproduce: `{data['command']}` (commit {data.get('git_commit')}, "
           f"{data.get('date')}, {data.get('machine')}).", ""]
    if note:
        out += [note, ""]
    out += [table, ""]
    return "\n".join(out)


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    parts = [s for s in (section(*spec) for spec in SECTIONS) if s]
    block = START + "\n" + "\n".join(parts) + END
    if START in text:
        a, b = text.index(START), text.index(END) + len(END)
        text = text[:a] + block + text[b:]
    else:
        text = text.replace("BENCHMARK_TABLES", block)
    readme.write_text(text)
    print(f"README.md: {len(parts)} benchmark sections")


if __name__ == "__main__":
    main()
