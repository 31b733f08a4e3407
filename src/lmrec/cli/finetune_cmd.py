"""`lmrec finetune-encoder`: fine-tune the bi-encoder on a search relevance set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from lmrec.cli.common import console, fail


def finetune_encoder_command(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Relevance set: homedepot, or qbqtc (Chinese: "
                                                                "--base e5-small-st --min-grade 1)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the fine-tuned sentence-transformers model."),
    base: str = typer.Option("minilm", "--base", help="minilm (packaged all-MiniLM-L6-v2), e5-small-st "
                                                        "(multilingual e5, torch) or st:<folder>."),
    epochs: float = typer.Option(1.0, "--epochs", help="Passes over the training pairs."),
    batch_size: int = typer.Option(64, "--batch-size", help="Pairs per batch (the in-batch negatives)."),
    max_pairs: int = typer.Option(0, "--max-pairs", help="Seeded sample of training pairs (0 = all)."),
    max_steps: int = typer.Option(0, "--max-steps", help="Stop after this many steps (0 = epochs decide)."),
    lr: float = typer.Option(2e-5, "--lr", help="AdamW learning rate."),
    min_grade: float = typer.Option(2.5, "--min-grade", help="Judgments at least this relevant are positives."),
    loss: str = typer.Option("mnrl", "--loss", help="mnrl (positives, in-batch negatives), or cosent / angle "
                                                     "(every judgment, graded)."),
    freeze_embeddings: bool = typer.Option(False, "--freeze-embeddings", help="Keep the token embeddings fixed."),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(0, "--threads", help="torch threads (0 = torch's default)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Overrides LMREC_DATA_DIR."),
) -> None:
    """Fine-tune a bi-encoder with MultipleNegativesRankingLoss on the train queries of the
    relevance set's 80/20 query split; the result loads as encoder `st:<out>`."""
    from pydantic import ValidationError

    from lmrec.data.loaders import RELEVANCE_SETS
    from lmrec.text.finetune import FinetuneConfig, TrainingUnavailable, finetune_relevance

    if dataset not in RELEVANCE_SETS:
        raise fail(f"unknown relevance set {dataset!r}; known: {', '.join(RELEVANCE_SETS)}")
    try:
        config = FinetuneConfig(base=base, epochs=epochs, batch_size=batch_size, max_pairs=max_pairs,
                                max_steps=max_steps, lr=lr, min_grade=min_grade, seed=seed, threads=threads,
                                loss=loss, freeze_embeddings=freeze_embeddings)
    except ValidationError as e:
        raise fail(f"bad option: {e}") from None
    try:
        result = finetune_relevance(dataset, out, config, data_dir=data_dir, progress=True)
    except (TrainingUnavailable, FileNotFoundError, ValueError) as e:
        raise fail(str(e)) from None
    console.print(f"fine-tuned on {result.pairs} pairs, {result.steps} steps in {result.train_s:.0f} s "
                  f"(final training loss {result.train_loss:.4f})")
    console.print(f"saved to {result.path}; use it as encoder [bold]{result.encoder_name}[/]")
    console.print_json(json.dumps({k: result.info[k] for k in ("dataset", "train_queries", "held_out_queries")
                                   if k in result.info}))
