"""Query -> items retrieval over a text catalog: the `Retriever` interface, dense (bi-encoder)
retrieval and re-ranking of a first stage's top-N with a pairwise scorer.

Every retriever is built over a catalog of (item index, text) pairs with `fit`, and stays live:
`add` / `remove` take effect for the very next query. `BM25Retriever` lives in
`lmrec.recall.bm25`, `HybridRetriever` in `lmrec.recall.hybrid`.

Example:
    >>> from lmrec.text.base import FakeEncoder
    >>> r = DenseRetriever(FakeEncoder()).fit(["red running shoes", "kitchen knife", "garden hose"])
    >>> int(r("running shoes", k=2).items[0])
    0
    >>> r.add(7, "chef kitchen knife set"); r.remove(1)
    >>> [int(i) for i in r("kitchen knife", k=1).items]
    [7]
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Protocol, Self, Sequence

import numpy as np

from lmrec.recall.normalise import normalise
from lmrec.stores.vector_index import BaseVectorIndex, build_index
from lmrec.text.base import TextEncoder, normalize
from lmrec.types import Candidates


class Retriever(ABC):
    """Maps a query string to ranked `Candidates` (item indices) over a live text catalog.

    Subclasses implement `_rebuild` (index the whole catalog), `_add`, `_remove` and
    `score_items` / `_search`. The catalog texts are kept here so re-rankers can read them.
    """

    name: str = "retriever"

    def __init__(self) -> None:
        self.texts: dict[int, str] = {}

    def fit(self, item_texts: Sequence[str], items: Sequence[int] | np.ndarray | None = None) -> Self:
        """Index a catalog: `item_texts[j]` is the text of item index `items[j]` (default j)."""
        ids = np.arange(len(item_texts)) if items is None else np.asarray(items, dtype=np.int64)
        if len(ids) != len(item_texts):
            raise ValueError(f"{len(item_texts)} texts but {len(ids)} item indices")
        self.texts = {int(i): str(t) for i, t in zip(ids, item_texts)}
        self._rebuild(np.fromiter(self.texts, np.int64, len(self.texts)), list(self.texts.values()))
        return self

    def add(self, item_index: int, text: str) -> None:
        """Make an item searchable now (replaces the text of an item already present)."""
        item_index = int(item_index)
        if item_index in self.texts:
            self._remove(item_index)
        self.texts[item_index] = str(text)
        self._add(item_index, str(text))

    def remove(self, item_index: int) -> None:
        """Stop returning an item from the next query on; unknown items raise KeyError."""
        item_index = int(item_index)
        if item_index not in self.texts:
            raise KeyError(f"item {item_index} is not in the catalog")
        del self.texts[item_index]
        self._remove(item_index)

    def __call__(self, query: str, k: int = 10) -> Candidates:
        """The top-k items for `query`, best first; `sources` and `stage_scores` name this channel."""
        return self.batch([query], k)[0]

    def batch(self, queries: Sequence[str], k: int = 10) -> list[Candidates]:
        """`self(query, k)` for each query (subclasses may batch the work)."""
        return [self._search(q, k) for q in queries]

    def _named(self, items: np.ndarray, scores: np.ndarray) -> Candidates:
        c = Candidates(items, scores, [(self.name,)] * len(items))
        c.stage_scores[self.name] = c.scores.copy()
        return c

    @abstractmethod
    def score_items(self, query: str, items: np.ndarray) -> np.ndarray:
        """This retriever's score of `query` against each given (catalog) item index."""

    @abstractmethod
    def _search(self, query: str, k: int) -> Candidates: ...

    @abstractmethod
    def _rebuild(self, items: np.ndarray, texts: list[str]) -> None: ...

    @abstractmethod
    def _add(self, item_index: int, text: str) -> None: ...

    @abstractmethod
    def _remove(self, item_index: int) -> None: ...


class DenseRetriever(Retriever):
    """Cosine top-k between `encoder.encode_queries(query)` and `encoder.encode_items(texts)`.

    Item vectors live in `index` (a `lmrec.stores.vector_index` index keyed by item index;
    default: a fresh exact one; pass `build_index("hnsw", dim)` for large catalogs).

    >>> from lmrec.text.base import FakeEncoder
    >>> DenseRetriever(FakeEncoder()).fit(["a b", "c d"]).batch(["c d"], k=1)[0].items.tolist()
    [1]
    """

    def __init__(self, encoder: TextEncoder, *, index: BaseVectorIndex | None = None, name: str | None = None,
                 batch_size: int = 64) -> None:
        super().__init__()
        self.encoder, self.batch_size = encoder, batch_size
        self.name = name or f"dense:{encoder.name}"
        self.index: BaseVectorIndex = index if index is not None else build_index("exact", encoder.dim)
        self._recent: dict[str, np.ndarray] = {}  # last queries' vectors: hybrids score them twice

    def _query_vectors(self, queries: list[str]) -> np.ndarray:
        missing = [q for q in dict.fromkeys(queries) if q not in self._recent]
        if missing:
            if len(self._recent) + len(missing) > 4096:
                self._recent.clear()
            vecs = normalize(self.encoder.encode_queries(missing, batch_size=self.batch_size))
            self._recent.update(zip(missing, vecs))
        return np.stack([self._recent[q] for q in queries]) if queries else np.zeros((0, self.encoder.dim), np.float32)

    def _rebuild(self, items: np.ndarray, texts: list[str]) -> None:
        if len(self.index):
            self.index.remove(self.index.ids())
        if len(items):
            self.index.add(items, self.encoder.encode_items(texts, batch_size=self.batch_size))

    def _add(self, item_index: int, text: str) -> None:
        self.index.add([item_index], self.encoder.encode_items([text]))

    def _remove(self, item_index: int) -> None:
        self.index.remove([item_index])

    def item_vectors(self, items: np.ndarray) -> np.ndarray:
        """The stored (normalised) embeddings of catalog items."""
        return np.asarray(self.index.get(np.asarray(items, np.int64)), np.float32)

    def score_items(self, query: str, items: np.ndarray) -> np.ndarray:
        q = self._query_vectors([query])[0]
        return (self.item_vectors(np.asarray(items)) @ q).astype(np.float32)

    def _search(self, query: str, k: int) -> Candidates:
        return self.batch([query], k)[0]

    def batch(self, queries: Sequence[str], k: int = 10) -> list[Candidates]:
        if not len(self.index) or not len(queries):
            return [Candidates.empty() for _ in queries]
        ids, scores = self.index.search(self._query_vectors(list(queries)), k)
        return [self._named(i[i >= 0], s[i >= 0]) for i, s in zip(ids, scores)]


class PairScorer(Protocol):
    """Scores one query against a list of item texts (higher = more relevant)."""

    name: str

    def __call__(self, query: str, texts: Sequence[str]) -> np.ndarray: ...


class BiEncoderScorer:
    """Cosine of a (usually stronger or different) bi-encoder, used as a re-ranking score.

    >>> from lmrec.text.base import FakeEncoder
    >>> s = BiEncoderScorer(FakeEncoder())
    >>> bool(s("kitchen knife", ["kitchen knife set", "garden hose"]).argmax() == 0)
    True
    """

    def __init__(self, encoder: TextEncoder, name: str | None = None) -> None:
        self.encoder, self.name = encoder, name or f"bi:{encoder.name}"

    def __call__(self, query: str, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros(0, np.float32)
        q = normalize(self.encoder.encode_queries([query]))[0]
        return (normalize(self.encoder.encode_items(list(texts))) @ q).astype(np.float32)


class CrossEncoderScorer:
    """A sentence-transformers `CrossEncoder` from a local folder (no packaged weights exist here).

    Raises FileNotFoundError up front when the folder is missing and downloads are off.
    """

    def __init__(self, model_path: str, *, max_length: int = 128, batch_size: int = 32,
                 device: str = "cpu", name: str | None = None) -> None:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
        if not Path(model_path).is_dir() and offline:
            raise FileNotFoundError(f"cross-encoder {model_path!r} is not a local folder and downloads are "
                                    "off (HF_HUB_OFFLINE=1); no cross-encoder ships with lmrec's packages, "
                                    "train or copy one into a folder and pass its path")
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(model_path, max_length=max_length, device=device)
        self.batch_size, self.name = batch_size, name or f"ce:{Path(model_path).name}"

    def __call__(self, query: str, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros(0, np.float32)
        pairs = [(query, t) for t in texts]
        return np.asarray(self.model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False),
                          dtype=np.float32).reshape(-1)


class SecondStage(Retriever):
    """A retriever over another one's candidates: the catalog lives in `self.first` (set by
    the subclass), and fit / add / remove delegate to it."""

    first: Retriever

    def fit(self, item_texts: Sequence[str], items: Sequence[int] | np.ndarray | None = None) -> Self:
        self.first.fit(item_texts, items)
        self.texts = self.first.texts
        return self

    def add(self, item_index: int, text: str) -> None:
        self.first.add(item_index, text)

    def remove(self, item_index: int) -> None:
        self.first.remove(item_index)

    def _rebuild(self, items: np.ndarray, texts: list[str]) -> None: ...  # pragma: no cover
    def _add(self, item_index: int, text: str) -> None: ...  # pragma: no cover
    def _remove(self, item_index: int) -> None: ...  # pragma: no cover


class RerankRetriever(SecondStage):
    """Re-scores the first stage's top `top_n` with `scorer`; the rest keep their order below.

    `mix` in [0, 1] blends in the first stage (min-max normalised per query):
    final = mix * first + (1 - mix) * scorer; 0 (default) is a pure re-rank.
    """

    def __init__(self, first_stage: Retriever, scorer: PairScorer, top_n: int = 30, *, mix: float = 0.0,
                 name: str | None = None) -> None:
        super().__init__()
        self.first, self.scorer, self.top_n, self.mix = first_stage, scorer, top_n, mix
        self.name = name or f"rerank:{scorer.name}"
        self.texts = first_stage.texts  # one catalog, owned by the first stage

    def _final(self, query: str, items: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        new = np.asarray(self.scorer(query, [self.first.texts[int(i)] for i in items]), np.float32)
        if self.mix <= 0:
            return new, new
        return (self.mix * normalise(first) + (1 - self.mix) * normalise(new)).astype(np.float32), new

    def score_items(self, query: str, items: np.ndarray) -> np.ndarray:
        items = np.asarray(items, np.int64)
        return self._final(query, items, self.first.score_items(query, items))[0]

    def _search(self, query: str, k: int) -> Candidates:
        c = self.first(query, max(k, self.top_n))
        n = min(self.top_n, len(c))
        final, new = self._final(query, c.items[:n], c.scores[:n])
        order = np.lexsort((np.arange(n), -final))
        # items past top_n keep their first-stage order, scored below every re-scored item
        tail = (final.min() if n else 0.0) - 1.0 - np.arange(len(c) - n, dtype=np.float32)
        perm = np.concatenate([order, np.arange(n, len(c))])
        out = Candidates(c.items[perm], np.concatenate([final[order], tail]),
                         None if c.sources is None else [c.sources[i] for i in perm],
                         {key: v[perm] for key, v in c.stage_scores.items()})
        out.stage_scores[self.scorer.name] = np.concatenate([new[order], np.full(len(c) - n, np.nan, np.float32)])
        return out.top(k)

