"""BM25 keyword retrieval (bm25s) with English or Chinese (character n-gram) tokenisation.

bm25s builds a static index, so the catalog stays live this way: removed items are masked at
once; added items go to a small *delta* that is scored with the same BM25 formula (Lucene
variant) and the index's statistics (N, document frequencies and mean length of the indexed
documents; a term only the delta has gets its delta document frequency), so delta and index
scores are comparable, and merged with the index's results. When the delta holds more than
`rebuild_fraction` of the catalog (or `rebuild_min` items, whichever is larger), the next query
rebuilds the index from scratch, so delta scores never drift far from a fresh index.

Example:
    >>> r = BM25Retriever().fit(["cordless drill", "garden hose 50 ft", "drill bit set"])
    >>> int(r("hose", k=1).items[0])
    1
    >>> r.add(9, "expandable hose"); int(r("expandable hose", k=1).items[0])
    9
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Callable, Literal, Sequence

import numpy as np

from lmrec.recall.search import Retriever
from lmrec.types import Candidates

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[^\W_]+", re.UNICODE)


def is_mostly_cjk(texts: Sequence[str], threshold: float = 0.3, sample: int = 2000) -> bool:
    """True when at least `threshold` of the word characters in (a sample of) `texts` are CJK."""
    chars = "".join(texts[:sample])
    letters = sum(c.isalnum() for c in chars)
    return letters > 0 and len(_CJK.findall(chars)) / letters >= threshold


def char_tokenize(text: str) -> list[str]:
    """Chinese-friendly tokens: each CJK character and each adjacent pair, plus lower-cased
    non-CJK words. `char_tokenize("跑步鞋 Nike")` -> ['跑', '步', '鞋', '跑步', '步鞋', 'nike']."""
    out: list[str] = []
    for run in _CJK_RUN.findall(text.lower()):
        if _CJK.match(run):
            out.extend(run)
            out.extend(run[i:i + 2] for i in range(len(run) - 1))
        else:
            out.append(run)
    return out


def english_tokenizer(stem: bool = True) -> Callable[[str], list[str]]:
    """bm25s' tokenizer (lower-case, English stop words), stemmed with PyStemmer when installed."""
    import bm25s

    stemmer = None
    if stem:
        try:
            import Stemmer  # PyStemmer: optional

            stemmer = Stemmer.Stemmer("english").stemWords
        except ImportError:
            pass

    def tokenize(text: str) -> list[str]:
        return bm25s.tokenize([text], return_ids=False, stopwords="en", stemmer=stemmer,
                              show_progress=False)[0]

    return tokenize


class BM25Retriever(Retriever):
    """Okapi BM25 (Lucene variant, via bm25s) over item texts.

    `tokenizer`: "auto" (Chinese character n-grams when the catalog is mostly CJK, else English),
    "english", "char", or any callable `str -> list[str]`.
    """

    def __init__(self, tokenizer: Literal["auto", "english", "char"] | Callable[[str], list[str]] = "auto", *,
                 k1: float = 1.5, b: float = 0.75, stem: bool = True, rebuild_fraction: float = 0.05,
                 rebuild_min: int = 256, name: str = "bm25") -> None:
        super().__init__()
        self.tokenizer_spec, self.k1, self.b, self.stem = tokenizer, k1, b, stem
        self.rebuild_fraction, self.rebuild_min, self.name = rebuild_fraction, rebuild_min, name
        self._tok: Callable[[str], list[str]] | None = None if tokenizer == "auto" else self._make(tokenizer)
        self._index = None
        self._items = np.zeros(0, np.int64)   # index row -> item index
        self._live = np.zeros(0, bool)
        self._row: dict[int, int] = {}
        self._df: Counter[str] = Counter()     # document frequencies of the indexed documents
        self._delta_df: Counter[str] = Counter()
        self._n_docs, self._total_len = 0, 0
        self._delta: dict[int, Counter[str]] = {}

    def _make(self, spec: str | Callable[[str], list[str]]) -> Callable[[str], list[str]]:
        if callable(spec):
            return spec
        if spec == "char":
            return char_tokenize
        if spec == "english":
            return english_tokenizer(self.stem)
        raise ValueError(f"tokenizer must be 'auto', 'english', 'char' or a callable, got {spec!r}")

    @property
    def tokenize(self) -> Callable[[str], list[str]]:
        """The tokenizer in use (chosen at the first `fit` when "auto")."""
        if self._tok is None:
            self._tok = self._make("char" if is_mostly_cjk(list(self.texts.values())) else "english")
        return self._tok

    # --- index maintenance ------------------------------------------------------------------
    def _rebuild(self, items: np.ndarray, texts: list[str]) -> None:
        import bm25s

        if self.tokenizer_spec == "auto":
            self._tok = None
        tokens = [self.tokenize(t) for t in texts]
        self._items, self._live = items.copy(), np.ones(len(items), bool)
        self._row = {int(i): r for r, i in enumerate(items)}
        self._df = Counter(t for toks in tokens for t in set(toks))
        self._n_docs, self._total_len = len(tokens), sum(len(t) for t in tokens)
        self._delta, self._delta_df = {}, Counter()
        self._index = None
        if tokens:
            self._index = bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
            self._index.index(tokens, show_progress=False)

    def _add(self, item_index: int, text: str) -> None:
        tf = Counter(self.tokenize(text))
        self._delta[item_index] = tf
        self._delta_df.update(tf.keys())

    def _remove(self, item_index: int) -> None:
        if item_index in self._delta:
            self._delta_df.subtract(self._delta.pop(item_index).keys())
        else:
            self._live[self._row.pop(item_index)] = False

    def _maybe_rebuild(self) -> None:
        stale = len(self._delta) + int((~self._live).sum())
        if stale and stale > max(self.rebuild_min, self.rebuild_fraction * max(len(self.texts), 1)):
            self._rebuild(np.fromiter(self.texts, np.int64, len(self.texts)), list(self.texts.values()))

    # --- scoring ----------------------------------------------------------------------------
    def _index_scores(self, tokens: list[str]) -> np.ndarray:
        """BM25 of the query against every index row (removed rows = -inf)."""
        if self._index is None:
            return np.zeros(0, np.float32)
        known = [t for t in tokens if t in self._index.vocab_dict]
        s = (np.asarray(self._index.get_scores(known), np.float32) if known
             else np.zeros(len(self._items), np.float32))
        s[~self._live] = -np.inf
        return s

    def _delta_scores(self, tokens: list[str], items: list[int]) -> np.ndarray:
        avg = self._total_len / self._n_docs if self._n_docs else 1.0
        out = np.zeros(len(items), np.float32)
        for j, item in enumerate(items):
            tf = self._delta[item]
            norm = self.k1 * (1 - self.b + self.b * sum(tf.values()) / max(avg, 1e-9))
            for t in tokens:
                if tf[t]:
                    df = self._df[t] or self._delta_df[t]
                    idf = math.log(1 + (max(self._n_docs, df) - df + 0.5) / (df + 0.5))
                    out[j] += idf * tf[t] / (tf[t] + norm)
        return out

    def score_items(self, query: str, items: np.ndarray) -> np.ndarray:
        self._maybe_rebuild()
        tokens = self.tokenize(query)
        items = np.asarray(items, np.int64)
        full = self._index_scores(tokens)
        out = np.zeros(len(items), np.float32)
        in_delta = [j for j, i in enumerate(items) if int(i) in self._delta]
        if in_delta:
            out[in_delta] = self._delta_scores(tokens, [int(items[j]) for j in in_delta])
        rest = [j for j, i in enumerate(items) if int(i) not in self._delta]
        if rest:
            out[rest] = full[[self._row[int(items[j])] for j in rest]]
        return out

    def _search(self, query: str, k: int) -> Candidates:
        self._maybe_rebuild()
        tokens = self.tokenize(query)
        full = self._index_scores(tokens)
        delta_items = list(self._delta)
        items = np.concatenate([self._items, np.asarray(delta_items, np.int64)])
        scores = np.concatenate([full, self._delta_scores(tokens, delta_items)])
        # only items sharing a term with the query are retrieved (score > 0)
        keep = np.flatnonzero(scores > 0)
        top = keep[np.lexsort((items[keep], -scores[keep]))[:k]]
        return self._named(items[top], scores[top])
