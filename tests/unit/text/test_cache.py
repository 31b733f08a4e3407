"""EmbeddingCache / CachedEncoder: hits skip the encoder, order is kept, the folder persists."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

from lmrec.text.base import FakeEncoder
from lmrec.text.cache import CachedEncoder, EmbeddingCache, batches, text_key


class CountingEncoder(FakeEncoder):
    """FakeEncoder that records every text it is asked to encode."""

    def __init__(self) -> None:
        super().__init__(dim=16)
        self.calls: list[tuple[str, list[str]]] = []

    def encode_queries(self, texts: Sequence[str], **kw) -> np.ndarray:
        self.calls.append(("query", list(texts)))
        return super().encode_queries(texts)

    def encode_items(self, texts: Sequence[str], **kw) -> np.ndarray:
        self.calls.append(("item", list(texts)))
        return super().encode_items(texts)


def test_hits_do_not_call_the_encoder_and_keep_order(tmp_path: Path) -> None:
    inner = CountingEncoder()
    enc = CachedEncoder(inner, EmbeddingCache(tmp_path))
    texts = ["red shoes", "kitchen knife", "red shoes", "drill"]
    first = enc.encode_items(texts)
    assert first.dtype == np.float32 and first.shape == (4, 16)
    assert inner.calls == [("item", ["red shoes", "kitchen knife", "drill"])]  # duplicates encoded once
    np.testing.assert_array_equal(first, FakeEncoder(dim=16).encode_items(texts))

    again = enc.encode_items(list(reversed(texts)))
    assert len(inner.calls) == 1
    np.testing.assert_array_equal(again, first[::-1])

    enc.encode_items(["drill", "hammer"])  # only the miss is encoded
    assert inner.calls[-1] == ("item", ["hammer"])


def test_roles_are_cached_separately(tmp_path: Path) -> None:
    inner = CountingEncoder()
    enc = CachedEncoder(inner, tmp_path)
    enc.encode_items(["drill"])
    enc.encode_queries(["drill"])
    assert [c[0] for c in inner.calls] == ["item", "query"]
    assert enc.cache.count(enc.name) == 2


def test_cache_survives_reopening(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path) as cache:
        vecs = CachedEncoder(CountingEncoder(), cache).encode_queries(["a", "b", "c"])
    inner = CountingEncoder()
    with EmbeddingCache(tmp_path) as cache:
        again = CachedEncoder(inner, cache).encode_queries(["c", "a", "b"])
    assert inner.calls == []
    np.testing.assert_array_equal(again, vecs[[2, 0, 1]])


def test_empty_input_and_chunked_lookup(tmp_path: Path) -> None:
    enc = CachedEncoder(CountingEncoder(), tmp_path, chunk_size=300)
    assert enc.encode_items([]).shape == (0, 16)
    texts = [f"item {i}" for i in range(1200)]  # > one IN(...) chunk and several encode chunks
    v = enc.encode_items(texts)
    assert enc.cache.count() == 1200
    inner = CountingEncoder()
    np.testing.assert_array_equal(CachedEncoder(inner, enc.cache).encode_items(texts), v)
    assert inner.calls == []


def test_other_encoder_names_do_not_collide(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    assert text_key("a", "item", "x") != text_key("b", "item", "x")
    CachedEncoder(FakeEncoder(dim=8), cache).encode_items(["x"])
    other = CachedEncoder(FakeEncoder(dim=16), cache)
    assert other.encode_items(["x"]).shape == (1, 16)
    cache.clear("fake-8")
    assert cache.count() == 1


def test_put_many_checks_lengths(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        EmbeddingCache(tmp_path).put_many(["k"], np.zeros((2, 4), np.float32))


def test_batches_cover_the_range() -> None:
    assert list(batches(5, 2)) == [(0, 2), (2, 4), (4, 5)]
    assert list(batches(0, 64, progress=True)) == []
    assert list(batches(3, 2, progress=True)) == [(0, 2), (2, 3)]
