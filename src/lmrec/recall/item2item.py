"""Item texts, item embeddings and text-based item-to-item similarity.

The helpers here are shared by the LM recall channels (`lmrec.recall.lm_user`): an encoder
comes from the team registry (`lmrec.text.registry.get_encoder(name, cache=True)`, so real
encoders go through the SQLite embedding cache), every item gets the text of its data set's
template (`lmrec.text.templates.item_texts`), and the item matrix is memoised in-process,
keyed by (encoder name, hash of the texts), so refits and grid points neither re-encode nor
re-read the cache. Fake encoders are never cached on disk.

Example:
    >>> from lmrec.testing.toy import toy_dataset
    >>> sim = TextItemSimilarity.from_dataset(toy_dataset(), encoder="fake")
    >>> c = sim.similar(0, k=3)[0]
    >>> len(c), 0 in c.items.tolist()
    (3, False)
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from lmrec.data.dataset import Dataset
from lmrec.text.base import TextEncoder, normalize
from lmrec.types import Candidates, topk_indices

__all__ = ["resolve_encoder", "dataset_item_texts", "encode_texts_cached", "item_vectors_for",
           "dataset_item_vectors", "recency_weights", "spherical_kmeans", "batched_spherical_kmeans",
           "TextItemSimilarity"]

_ENCODERS: dict[str, TextEncoder] = {}  # loaded encoders, one per name and process
_VECTORS: dict[tuple[str, str], np.ndarray] = {}  # item vectors by (encoder name, texts hash)


def resolve_encoder(name: str) -> TextEncoder:
    """The registry's encoder called `name`, loaded once per process and wrapped in its
    on-disk `CachedEncoder`; fake encoders ("fake", "fake-DIM") stay uncached (their vectors
    are never written to disk)."""
    if name not in _ENCODERS:
        from lmrec.text.registry import check_encoder_name, get_encoder

        check_encoder_name(name)
        _ENCODERS[name] = get_encoder(name, cache=not name.startswith("fake"))
    return _ENCODERS[name]


def dataset_item_texts(dataset: Dataset) -> list[str]:
    """One text per item index from the data set's template (`lmrec.text.templates.item_texts`);
    a data set without an item table gets empty strings."""
    if dataset.item_table is None:
        return [""] * dataset.n_items
    from lmrec.text.templates import item_texts

    return item_texts(dataset)


def encode_texts_cached(encoder_name: str, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
    """Normalised embeddings (len(texts), dim) float32 of `texts` through `resolve_encoder`
    (the registry's embedding cache), memoised in-process by (encoder name, texts hash).
    The returned array is shared: copy it before writing to it."""
    digest = hashlib.sha256("\x1f".join(texts).encode("utf-8")).hexdigest()
    key = (encoder_name, digest)
    if key not in _VECTORS:
        vecs = normalize(resolve_encoder(encoder_name).encode_items(list(texts), progress=progress))
        vecs.setflags(write=False)
        _VECTORS[key] = vecs
    return _VECTORS[key]


def dataset_item_vectors(dataset: Dataset, encoder_name: str, *, progress: bool = False) -> np.ndarray:
    """Normalised embeddings of `dataset_item_texts(dataset)`: (n_items, dim) float32."""
    return encode_texts_cached(encoder_name, dataset_item_texts(dataset), progress=progress)


def item_vectors_for(dataset: Dataset, encoder_name: str, items: np.ndarray | Sequence[int],
                     current: np.ndarray) -> np.ndarray:
    """`current` item vectors brought up to date with `dataset`: the rows of `items` and of
    every item beyond `current` are (re-)encoded from their text; the array grows with spare
    capacity (`lmrec.types.grow_rows`), so adding items one by one stays cheap."""
    from lmrec.types import grow_rows

    n = dataset.n_items
    todo = np.unique(np.r_[np.asarray(items, np.int64), np.arange(len(current), n)]).astype(np.int64)
    out = current if current.flags.writeable else np.array(current)
    out = grow_rows(out, n)
    if len(todo):
        texts = _texts_at(dataset, todo)
        out[todo] = normalize(resolve_encoder(encoder_name).encode_items(texts))
    return out


def _texts_at(dataset: Dataset, items: np.ndarray) -> list[str]:
    if dataset.item_table is None:
        return [""] * len(items)
    from lmrec.text.templates import item_texts

    return item_texts(dataset, items=items)


def recency_weights(n: int, half_life: float) -> np.ndarray:
    """Weights of n events in time order: 2 ** -(events after it / half_life), last = 1.

    >>> recency_weights(3, 1.0).tolist()
    [0.25, 0.5, 1.0]
    """
    return np.power(2.0, -(np.arange(n)[::-1]) / half_life)


def spherical_kmeans(x: np.ndarray, k: int, *, seed: int = 0, iters: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Cosine k-means of the rows of `x` (normalised): (centroid sums (min(k, n), dim), labels).

    Seeded k-means++ initialisation; empty clusters keep their previous centre; stops when no
    assignment changes. Deterministic for a given seed. One user of `batched_spherical_kmeans`.

    >>> x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    >>> spherical_kmeans(x, 2, seed=0)[1].tolist()
    [1, 1, 0, 0]
    """
    x = np.asarray(x)
    sums, labels = batched_spherical_kmeans(x, np.array([0, len(x)]), k, seeds=[seed], iters=iters)
    return sums[0, :min(k, len(x))], labels


def _normalize_last(a: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(a, axis=-1, keepdims=True)
    return np.divide(a, n, out=np.zeros_like(a), where=n > 0)


def _length_chunks(lengths: np.ndarray, users: np.ndarray, max_rows: int) -> list[np.ndarray]:
    """Users (sorted by history length) grouped so that padding to the group's longest
    history at most doubles the rows and a group has at most `max_rows` padded rows."""
    chunks, i = [], 0
    while i < len(users):
        cap, j = max(2 * int(lengths[users[i]]), 16), i + 1
        while j < len(users) and lengths[users[j]] <= cap and (j - i + 1) * lengths[users[j]] <= max_rows:
            j += 1
        chunks.append(users[i:j])
        i = j
    return chunks


def batched_spherical_kmeans(x: np.ndarray, indptr: np.ndarray, k: int, *, seeds: Sequence[int] | np.ndarray,
                             iters: int = 20, index: np.ndarray | None = None,
                             max_floats: int = 1 << 21) -> tuple[np.ndarray, np.ndarray]:
    """`spherical_kmeans` of many users at once: user u owns rows indptr[u]:indptr[u + 1] of
    `x` (of `x[index]` when `index` is given, e.g. item vectors and the users' item indices)
    and is clustered into min(k, n_u) clusters with seed `seeds[u]`.

    Users are grouped by history length and each group runs vectorised over a zero-padded
    (users, max_len, dim) tensor (einsum products, at most `max_floats` floats); a
    user stops updating once no assignment changes, as in the one-user algorithm, and the
    k-means++ draws come from one generator per user (`default_rng(seed)`), so each user's
    clusters are those of `spherical_kmeans(rows, k, seed=seeds[u])` (up to float rounding)
    and do not depend on the other users. Returns (centroid sums (n_users, k, dim) float32,
    zero for unused clusters; labels (n_rows,)).
    """
    x = normalize(x)
    indptr = np.asarray(indptr, dtype=np.int64)
    n_users, dim = len(indptr) - 1, x.shape[1]
    lengths = np.diff(indptr)
    sums = np.zeros((n_users, k, dim), dtype=np.float32)
    labels_out = np.full(int(indptr[-1]), -1, dtype=np.int64)
    users = np.flatnonzero(lengths > 0)
    users = users[np.argsort(lengths[users], kind="stable")]
    ar_k = np.arange(k)
    for us in _length_chunks(lengths, users, max(max_floats // max(dim, 1), 1)):
        b, n = len(us), lengths[us]
        width = int(n.max())
        valid = np.arange(width)[None, :] < n[:, None]  # (b, width)
        rows = np.where(valid, indptr[us][:, None] + np.arange(width)[None, :], 0)
        xs = x[rows if index is None else index[rows]]  # (b, width, dim)
        xs[~valid] = 0.0
        kk = np.minimum(k, n)
        bias = np.where(ar_k[None, :] < kk[:, None], 0.0, -np.inf).astype(np.float32)[:, None, :]  # (b, 1, k)
        # k-means++ initialisation with one generator per user (the draws of the one-user version)
        gens = [np.random.Generator(np.random.PCG64(int(seeds[u]))) for u in us]
        centers = np.zeros((b, k, dim), dtype=np.float32)
        pick = np.array([g.integers(int(m)) for g, m in zip(gens, n)])
        centers[:, 0] = xs[np.arange(b), pick]
        best = np.einsum("bld,bd->bl", xs, centers[:, 0])
        for j in range(1, k):
            need = np.flatnonzero(kk > j)
            if not len(need):
                break
            dist = np.maximum(1.0 - best[need], 0.0) * valid[need]
            total = dist.sum(axis=1)
            cdf = (dist / total[:, None]).astype(np.float64).cumsum(axis=1)
            m = n[need]
            cdf /= cdf[np.arange(len(need)), m - 1][:, None]
            draw = np.array([gens[bi].random() if t > 1e-9 else -1.0 - gens[bi].integers(mm)
                             for bi, t, mm in zip(need, total, m)])
            pick[need] = np.where(draw >= 0, np.minimum((cdf <= draw[:, None]).sum(axis=1), m - 1),
                                  -1 - draw).astype(np.int64)
            cj = xs[need, pick[need]]
            centers[need, j] = cj
            best[need] = np.maximum(best[need], np.einsum("bld,bd->bl", xs[need], cj))
        labels = np.full((b, width), -1, dtype=np.int64)
        act, xa = np.arange(b), xs  # users still changing, and their rows
        for _ in range(iters):
            sims = np.einsum("bwd,bkd->bwk", xa, centers[act])  # (a, width, k); einsum: no BLAS thread spin-up
            sims += bias[act]
            new = np.argmax(sims, axis=2)
            new[~valid[act]] = -1
            changed = (new != labels[act]).any(axis=1)
            if not changed.any():
                break
            if changed.sum() < 0.75 * len(act):  # drop converged users
                act, new, xa = act[changed], new[changed], xa[changed]
                changed = np.ones(len(act), dtype=bool)
            labels[act] = new  # converged users get their (unchanged) labels again
            onehot = (new[:, :, None] == ar_k).astype(np.float32)  # padding (-1) matches nothing
            csum = np.einsum("bwk,bwd->bkd", onehot, xa)  # (a, k, dim)
            keep = (onehot.sum(axis=1) > 0) & changed[:, None]
            c = centers[act]
            c[keep] = _normalize_last(csum[keep])
            centers[act] = c
        onehot = (labels[:, :, None] == ar_k).astype(np.float32)
        sums[us] = np.einsum("bwk,bwd->bkd", onehot, xs)
        labels_out[rows[valid]] = labels[valid]
    return sums, labels_out


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
