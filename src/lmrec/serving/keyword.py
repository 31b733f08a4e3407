"""Keyword search over the live catalog: BM25 with a delta for new items and background rebuilds.

bm25s builds a static index. `lmrec.recall.bm25.BM25Retriever` already keeps it live: removed
items are masked at once and new items go to a small *delta* scored with the same BM25 formula
and the index's statistics, merged at query time. What it would also do is rebuild the index
inside the query that finds the delta too large; a service cannot afford that (seconds for a
large catalog), so here the retriever never rebuilds on the query path. Instead, once the delta
(plus masked rows) passes `rebuild_fraction` of the catalog (at least `rebuild_min` items), a
background thread fits a fresh retriever on a snapshot of the texts, then, under the caller's
write lock, replays the additions and removals made since the snapshot and swaps it in. Queries
keep using the old index, delta included, until the swap: a new item is findable by keyword
from the moment it is added.

Tokens: CJK runs become characters and character bigrams (`char_tokenize`), other words are
lower-cased, stripped of English stop words and stemmed (PyStemmer when installed), so one
index serves a mixed English / Chinese catalog.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from lmrec.recall.bm25 import BM25Retriever, char_tokenize
from lmrec.types import Candidates

__all__ = ["LiveBM25", "mixed_tokenize"]

log = logging.getLogger(__name__)

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_RUNS = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[^\W_]+", re.UNICODE)
_NEVER = 1 << 62  # BM25Retriever's own rebuild threshold: never, on the query path


def _english_parts() -> tuple[frozenset[str], Callable[[list[str]], list[str]]]:
    from bm25s.stopwords import STOPWORDS_EN

    try:
        import Stemmer  # PyStemmer: optional

        stem: Callable[[list[str]], list[str]] = Stemmer.Stemmer("english").stemWords
    except ImportError:  # pragma: no cover - depends on the environment
        stem = list
    return frozenset(STOPWORDS_EN), stem


_STOP, _STEM = _english_parts()


def mixed_tokenize(text: str) -> list[str]:
    """Tokens of English and Chinese text alike.

    >>> mixed_tokenize("Men's running shoes 男士跑步鞋")
    ['男', '士', '跑', '步', '鞋', '男士', '士跑', '跑步', '步鞋', 'men', 's', 'run', 'shoe']
    """
    cjk: list[str] = []
    words: list[str] = []
    for run in _RUNS.findall(text.lower()):
        if _CJK.match(run):
            cjk.extend(char_tokenize(run))
        elif run not in _STOP:
            words.append(run)
    return cjk + _STEM(words)


class LiveBM25:
    """A `BM25Retriever` over (item index, text) that is rebuilt off the query path.

    `add` / `remove` / `search` must be called under the engine's lock (write for the first
    two, read for search); `lock` is that lock's write context, taken by the background
    rebuild for the final swap.
    """

    def __init__(self, lock: Callable[[], AbstractContextManager[Any]], *, rebuild_fraction: float = 0.05,
                 rebuild_min: int = 256, k1: float = 1.5, b: float = 0.75, background: bool = True) -> None:
        self._lock = lock
        self.rebuild_fraction, self.rebuild_min = rebuild_fraction, rebuild_min
        self.k1, self.b, self.background = k1, b, background
        self._r = self._new()
        self._ops: list[tuple[str, int, str]] | None = None  # changes made while a rebuild runs
        self._thread: threading.Thread | None = None
        self.rebuilds = 0

    def _new(self) -> BM25Retriever:
        return BM25Retriever(mixed_tokenize, k1=self.k1, b=self.b, rebuild_min=_NEVER, rebuild_fraction=1.0,
                             name="bm25")

    def __len__(self) -> int:
        return len(self._r.texts)

    @property
    def delta_size(self) -> int:
        """Items scored from the delta (added since the last build)."""
        return len(self._r._delta)

    def fit(self, items: np.ndarray, texts: list[str]) -> None:
        """Build from scratch (call before serving, or under the write lock)."""
        r = self._new()
        if len(items):
            r.fit(texts, items)
        self._r = r

    def add(self, item: int, text: str) -> None:
        self._r.add(item, text)
        if self._ops is not None:
            self._ops.append(("add", item, text))
        self._maybe_rebuild()

    def remove(self, item: int) -> None:
        if item in self._r.texts:
            self._r.remove(item)
        if self._ops is not None:
            self._ops.append(("remove", item, ""))
        self._maybe_rebuild()

    def search(self, query: str, k: int) -> Candidates:
        """Top-k items sharing a term with the query (BM25 score > 0), best first."""
        if not self._r.texts:
            return Candidates.empty()
        return self._r(query, k)

    def _stale(self) -> int:
        r = self._r
        masked = int((~r._live).sum()) if len(r._live) else 0
        return len(r._delta) + masked

    def _maybe_rebuild(self) -> None:
        """Start a rebuild when the delta is too large (caller holds the write lock)."""
        stale = self._stale()
        if self._ops is not None or stale <= max(self.rebuild_min, self.rebuild_fraction * max(len(self), 1)):
            return
        snapshot = dict(self._r.texts)
        self._ops = []
        if not self.background:
            self._finish(self._build(snapshot))
            return
        self._thread = threading.Thread(target=self._rebuild, args=(snapshot,), name="lmrec-bm25-rebuild",
                                        daemon=True)
        self._thread.start()

    def _build(self, snapshot: dict[int, str]) -> BM25Retriever:
        r = self._new()
        if snapshot:
            r.fit(list(snapshot.values()), np.fromiter(snapshot, np.int64, len(snapshot)))
        return r

    def _rebuild(self, snapshot: dict[int, str]) -> None:
        try:
            fresh = self._build(snapshot)
        except Exception:  # pragma: no cover - keep serving from the old index
            log.exception("background BM25 rebuild failed; the delta index stays in use")
            with self._lock():
                self._ops = None
            return
        with self._lock():
            self._finish(fresh)

    def _finish(self, fresh: BM25Retriever) -> None:
        for op, item, text in self._ops or ():
            if op == "add":
                fresh.add(item, text)
            elif item in fresh.texts:
                fresh.remove(item)
        self._r, self._ops = fresh, None
        self.rebuilds += 1

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a running background rebuild (tests, shutdown)."""
        t = self._thread
        if t is not None and t.is_alive():
            t.join(timeout)
