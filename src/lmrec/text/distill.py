"""Distil a cross-encoder into a bi-encoder with Margin-MSE.

The bi-encoder (a sentence-transformers folder: "minilm", "st:<folder>", e.g. one already
fine-tuned with `lmrec.text.finetune`) learns to reproduce the cross-encoder's *margins*: for a
(query, positive, negative) triple the teacher gives logit(q, p) - logit(q, n), and the student's
`scale x (cos(q, p) - cos(q, n))` is pulled to it by mean squared error (Hofstätter et al.,
"Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge Distillation").
Only the margin is matched, so the student keeps its own score scale, and its cosine stays a
retrieval score over the whole catalog (the teacher could never scan it).

`margin_triples` builds the triples from `RelevanceGroup`s (the cross-encoder's training
groups): each judged text against each hard negative of its query, scored by the teacher.

Example:
    >>> triples = [("cordless drill", "20V Cordless Drill Kit", "Garden Hose", 6.5)]
    >>> distil_bi_encoder(triples, "/tmp/bi-distilled", FinetuneConfig(max_steps=1))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lmrec.text.cross_encoder import RelevanceGroup
from lmrec.text.finetune import MANIFEST, FinetuneConfig, FinetuneResult, load_trainable, run_trainer

__all__ = ["margin_triples", "distil_bi_encoder"]


def margin_triples(groups: Sequence[RelevanceGroup], teacher: Any, *, max_per_group: int = 8,
                   seed: int = 0) -> list[tuple[str, str, str, float]]:
    """(query, positive, negative, teacher margin) for texts with a higher label than another text
    of the same group (at most `max_per_group` per group, seeded); `teacher(query, texts)` scores."""
    rng = random.Random(seed)
    out = []
    for g in groups:
        labels = np.asarray(g.labels)
        pairs = [(i, j) for i in range(len(labels)) for j in range(len(labels)) if labels[i] > labels[j]]
        if not pairs:
            continue
        pairs = rng.sample(pairs, min(max_per_group, len(pairs)))
        scores = np.asarray(teacher(g.query, g.texts), np.float64)
        out.extend((g.query, g.texts[i], g.texts[j], float(scores[i] - scores[j])) for i, j in pairs)
    rng.shuffle(out)
    return out


def distil_bi_encoder(triples: Sequence[tuple[str, str, str, float]], out: str | Path,
                      config: FinetuneConfig | None = None, *, scale: float = 20.0,
                      info: dict[str, Any] | None = None) -> FinetuneResult:
    """Train `config.base` on (query, positive, negative, teacher margin) triples with
    MarginMSELoss over `scale` x cosine, and save it to `out` (a sentence-transformers folder plus
    `lmrec_finetune.json`, loadable as encoder "st:<out>")."""
    config = config or FinetuneConfig()
    if not triples:
        raise ValueError("triples: nothing to distil")
    model, path = load_trainable(config)
    from datasets import Dataset
    from sentence_transformers.sentence_transformer.losses import MarginMSELoss
    from sentence_transformers.util import pairwise_cos_sim

    out = Path(out)
    data = Dataset.from_dict({"query": [t[0] for t in triples], "positive": [t[1] for t in triples],
                              "negative": [t[2] for t in triples], "label": [float(t[3]) for t in triples]})
    loss = MarginMSELoss(model, similarity_fct=lambda a, b: scale * pairwise_cos_sim(a, b))
    output, _, train_s = run_trainer(model, loss, data, config, out, description=f"distil into {config.base}")
    result = FinetuneResult(path=out.resolve(), pairs=len(triples), steps=int(output.global_step),
                            train_s=round(train_s, 2), train_loss=float(output.training_loss),
                            config=config.model_dump(),
                            info={"base_path": path, "loss": f"MarginMSE over {scale} x cosine", **(info or {})})
    (out / MANIFEST).write_text(json.dumps(result.to_dict(), indent=2))
    return result
