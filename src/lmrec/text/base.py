"""The `TextEncoder` interface and a fast deterministic fake encoder for tests.

Every encoder returns L2-normalised float32 arrays of shape (len(texts), dim), so a dot
product is a cosine similarity. Queries and items are encoded separately because some
models (E5) prefix them differently.
"""

from __future__ import annotations

import hashlib
import re
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


def normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation to float32 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        n = float(np.linalg.norm(x))
        return x / n if n > 0 else x
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


@runtime_checkable
class TextEncoder(Protocol):
    """Embeds texts into a shared space. `name` identifies the model and its version (it keys
    the embedding cache), `dim` is the embedding size."""

    name: str
    dim: int

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 64,
                       progress: bool = False) -> np.ndarray: ...

    def encode_items(self, texts: Sequence[str], *, batch_size: int = 64,
                     progress: bool = False) -> np.ndarray: ...


_TOKEN = re.compile(r"\w+", re.UNICODE)


class FakeEncoder:
    """Hashes words and character trigrams into a `dim`-dimensional vector.

    Deterministic, dependency-free and fast (for unit tests): texts sharing words get a high
    cosine; Chinese text is covered by its characters. It is not a language model.

    >>> enc = FakeEncoder(dim=64)
    >>> v = enc.encode_items(["red running shoes", "running shoes", "kitchen knife"])
    >>> bool(v[0] @ v[1] > v[0] @ v[2])
    True
    """

    def __init__(self, dim: int = 64, name: str = "fake") -> None:
        self.dim = dim
        self.name = f"{name}-{dim}"

    def _features(self, text: str) -> list[str]:
        text = text.lower()
        words = _TOKEN.findall(text)
        feats = list(words)
        for w in words:
            padded = f"#{w}#"
            feats.extend(padded[i:i + 3] for i in range(max(len(padded) - 2, 1)))
        return feats

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for r, t in enumerate(texts):
            for f in self._features(t):
                h = int.from_bytes(hashlib.blake2b(f.encode(), digest_size=8).digest(), "little")
                out[r, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        return normalize(out)

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self._encode(list(texts))

    def encode_items(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self._encode(list(texts))
