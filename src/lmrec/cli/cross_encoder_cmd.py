"""`lmrec finetune-cross-encoder`: train a cross-encoder re-ranker on a search relevance set."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer

from lmrec.cli.common import console, fail


def finetune_cross_encoder_command(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Relevance set: homedepot or qbqtc."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the trained cross-encoder."),
    base: str = typer.Option("minilm", "--base", help="Backbone: minilm (packaged all-MiniLM-L6-v2), "
                                                     "e5-small-st (multilingual, for Chinese) or st:<folder>."),
    loss: str = typer.Option("bce", "--loss", help="bce (pointwise, graded soft labels) or lambda (listwise)."),
    negatives: int = typer.Option(4, "--negatives", help="Hard negatives per query from BM25's top 30 (0 = none)."),
    val_queries: int = typer.Option(300, "--val-queries", help="Train queries held out for early stopping."),
    epochs: float = typer.Option(1.0, "--epochs", help="Passes over the training pairs."),
    max_steps: int = typer.Option(0, "--max-steps", help="Stop after this many steps (0 = epochs decide)."),
    minutes: float = typer.Option(0.0, "--minutes", help="Stop after this many minutes of training (0 = no limit)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Pairs per step (groups per step for lambda)."),
    lr: float = typer.Option(4e-5, "--lr", help="AdamW learning rate."),
    max_length: int = typer.Option(64, "--max-length", help="Tokens of query + text."),
    eval_steps: int = typer.Option(150, "--eval-steps", help="Validate every this many steps."),
    patience: int = typer.Option(4, "--patience", help="Stop after this many validations without a gain."),
    int8: bool = typer.Option(True, "--int8/--no-int8", help="Also export an int8 ONNX copy for serving."),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(1, "--threads", help="torch threads (1 is fastest on a shared 2-core machine)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Overrides LMREC_DATA_DIR."),
) -> None:
    """Train a cross-encoder on the train queries of the relevance set's 80/20 query split
    (the split the search benchmarks evaluate), with hard negatives and early stopping on
    held-out train queries. Serve it with `lmrec serve --cross-encoder OUT`."""
    from pydantic import ValidationError

    from lmrec.data.loaders import RELEVANCE_SETS, load_relevance
    from lmrec.text.cross_encoder import (CrossEncoderConfig, export_cross_encoder_onnx, relevance_groups,
                                          train_cross_encoder)
    from lmrec.text.finetune import TrainingUnavailable, base_model_path

    if dataset not in RELEVANCE_SETS:
        raise fail(f"unknown relevance set {dataset!r}; known: {', '.join(RELEVANCE_SETS)}")
    if dataset == "qbqtc" and base == "minilm":
        raise fail("qbqtc is Chinese and minilm is English-only: use --base e5-small-st")
    try:
        config = CrossEncoderConfig(base=base, loss=loss, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
                                    lr=lr, max_length=max_length, eval_steps=eval_steps, patience=patience, seed=seed,
                                    threads=threads, time_budget_s=minutes * 60)
        base_model_path(base)
    except ValidationError as e:
        raise fail(f"bad option: {e.errors()[0]['loc'][0]}: {e.errors()[0]['msg']}") from None
    except (TrainingUnavailable, ValueError) as e:
        raise fail(str(e)) from None
    if val_queries < 0 or negatives < 0:
        raise fail("--val-queries and --negatives must be >= 0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        rs = load_relevance(dataset, data_dir)
    except FileNotFoundError as e:
        raise fail(str(e)) from None
    import numpy as np

    from lmrec.recall.bm25 import BM25Retriever

    train, _ = rs.query_split(test_fraction=0.2, seed=0)
    judged = np.unique(train.query_idx)
    rng = np.random.default_rng(seed)
    val_q = np.sort(rng.permutation(judged)[:min(val_queries, len(judged) // 5)])
    val = train.subset_queries(val_q)
    train = train.subset_queries(np.setdiff1d(judged, val_q))
    neg = None
    if negatives:
        console.print(f"indexing {rs.n_items:,} items with BM25 for hard negatives ...")
        bm25 = BM25Retriever("char" if rs.info.get("language") == "zh" else "english").fit(rs.item_text)
        neg = lambda qs, d: [c.items for c in bm25.batch(qs, d)]  # noqa: E731
    groups = relevance_groups(train, negatives=neg, n_negatives=negatives, depth=30, seed=seed)
    val_groups = relevance_groups(val, negatives=neg, n_negatives=negatives, depth=30, seed=seed + 1)
    console.print(f"training on {len(groups):,} queries ({sum(len(g.texts) for g in groups):,} pairs), "
                  f"validating on {len(val_groups):,}")
    try:
        result = train_cross_encoder(groups, out, config, val=val_groups or None, progress=True,
                                     info={"dataset": dataset, "split": "query split 0.2 seed 0: train part",
                                           "negatives": f"BM25 top 30, {negatives} per query"})
    except (TrainingUnavailable, ValueError) as e:
        raise fail(str(e)) from None
    console.print(f"trained {result.steps} steps in {result.train_s:.0f} s; best step {result.best_step}, "
                  f"validation NDCG@10 {result.val_ndcg}")
    if int8:
        folder = export_cross_encoder_onnx(result.path, "int8")
        console.print(f"int8 ONNX copy: {folder}")
    console.print(f"saved to {result.path}; serve it with [bold]lmrec serve --cross-encoder {result.path}[/]")
    console.print_json(json.dumps({"curve": result.curve[-5:]}))
