"""ONNX export of the packaged MiniLM: fp32 matches torch, int8 stays close, exports are cached."""

from __future__ import annotations

import json

import numpy as np
import pytest

SENTENCES = [
    "Toy Story (1995). Genres: Animation, Children's, Comedy.", "cordless drill with two batteries",
    "stainless steel kitchen knife", "running shoes for men", "how do I fix a leaking faucet",
    "BEHR Premium Textured DeckOver 1-gal. #SC-141 Tugboat Wood and Concrete Coating", "angle bracket",
    "Simpson Strong-Tie 12-Gauge Angle", "a", "The quick brown fox jumps over the lazy dog",
    "Delta Vero 1-Handle Shower Only Faucet Trim Kit in Chrome (Valve Not Included)", "deck over",
    "a very long sentence " * 40, "ceiling fan with light", "garden hose 50 ft", "LED light bulbs",
    "paint roller", "wireless doorbell", "copper pipe fittings", "shower head",
]


def test_fp32_matches_torch(minilm, onnx_fp32) -> None:
    enc = onnx_fp32
    assert enc.dim == 384 and enc.name == "onnx-fp32:all-MiniLM-L6-v2"
    ref = minilm.encode_items(SENTENCES)
    got = enc.encode_items(SENTENCES, batch_size=7)
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert float((ref * got).sum(1).min()) > 1 - 1e-4
    assert enc.encode_queries([]).shape == (0, 384)


def test_int8_close_to_fp32(onnx_folders, onnx_fp32) -> None:
    from lmrec.text.onnx import OnnxEncoder

    fp32 = onnx_fp32.encode_items(SENTENCES)
    enc = OnnxEncoder(onnx_folders["int8"], threads=1)
    assert enc.name == "onnx-int8:all-MiniLM-L6-v2"
    int8 = enc.encode_items(SENTENCES)
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    cos = (fp32 * int8).sum(1)
    assert cos.mean() > 0.98 and cos.min() > 0.9
    meta = json.loads((onnx_folders["int8"] / "export.json").read_text())
    assert meta["quantize"] == "int8" and meta["per_channel"] is True
    assert (onnx_folders["int8"] / "model.onnx").stat().st_size < (onnx_folders["fp32"] / "model.onnx").stat().st_size / 3


def test_export_is_cached(onnx_folders) -> None:
    from lmrec.text.onnx import export_onnx
    from lmrec.text.sentence import DEFAULT_ENGLISH

    model = onnx_folders["int8"] / "model.onnx"
    before = model.stat().st_mtime_ns
    assert export_onnx(DEFAULT_ENGLISH, onnx_folders["int8"].parent, quantize="int8") == onnx_folders["int8"]
    assert model.stat().st_mtime_ns == before
    with pytest.raises(ValueError):
        export_onnx(DEFAULT_ENGLISH, onnx_folders["int8"].parent, quantize="fp16")  # type: ignore[arg-type]
