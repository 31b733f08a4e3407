"""An on-disk embedding cache and a `CachedEncoder` that encodes only texts it has not seen.

Vectors are keyed by (encoder name, role, sha256 of the text), so changing the model (its
`name`) or the text invalidates exactly the affected entries. Storage is one SQLite file
(WAL mode) per cache folder: safe within one process (a lock serialises access across
threads) and fast for tens of thousands of texts (lookups and inserts go in chunks).

Example:
    >>> import tempfile
    >>> from lmrec.text.base import FakeEncoder
    >>> enc = CachedEncoder(FakeEncoder(dim=8), EmbeddingCache(tempfile.mkdtemp()))
    >>> enc.encode_items(["a", "b"]).shape
    (2, 8)
    >>> enc.cache.count(enc.name)
    2
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np

from lmrec.text.base import TextEncoder

Role = Literal["query", "item"]
_CHUNK = 500  # keys per IN (...) query: below SQLite's bound-variable limit on every version


def batches(n: int, batch_size: int, *, progress: bool = False,
            description: str = "encoding") -> Iterator[tuple[int, int]]:
    """(start, end) pairs covering range(n) in steps of `batch_size`, counting texts in a
    `lmrec.cli.progress.Reporter`: a bar in a terminal, log lines with counts and time left
    elsewhere, once the loop has run for a second (bar) or ten (log lines); LMREC_PROGRESS=off
    silences it. `progress` is kept for callers; the reporter decides what to show."""
    step = max(1, int(batch_size))
    spans = [(s, min(s + step, n)) for s in range(0, n, step)]
    if n == 0:
        return
    from lmrec.cli.progress import Reporter

    with Reporter(description, total=n, unit="texts") as rep:
        for s, e in spans:
            yield s, e
            rep.advance(e - s)


def default_cache_folder() -> Path:
    """`<settings.cache_dir>/embeddings` (LMREC_CACHE_DIR or lmrec.toml override cache_dir)."""
    from lmrec.settings import get_settings

    return Path(get_settings().cache_dir).expanduser() / "embeddings"


def text_key(encoder_name: str, role: Role, text: str) -> str:
    """The cache key of one text: encoder name, role and the text's sha256."""
    return f"{encoder_name}\t{role}\t{hashlib.sha256(text.encode('utf-8')).hexdigest()}"


class EmbeddingCache:
    """Float32 vectors on disk in `folder/embeddings.sqlite`, keyed by `text_key`.

    The default folder is `default_cache_folder()`. Use as a context manager or call
    `close()`; reopening the same folder sees everything stored before.
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder).expanduser() if folder is not None else default_cache_folder()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "embeddings.sqlite"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")
        self._db.commit()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.folder)!r})"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of those `keys` that are present."""
        found: dict[str, np.ndarray] = {}
        uniq = list(dict.fromkeys(keys))
        with self._lock:
            for s in range(0, len(uniq), _CHUNK):
                chunk = uniq[s:s + _CHUNK]
                sql = f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(chunk))})"
                for k, blob in self._db.execute(sql, chunk):
                    found[k] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store (or replace) one float32 vector per key."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(keys) != len(vectors):
            raise ValueError(f"put_many: {len(keys)} keys but {len(vectors)} vectors")
        rows = [(k, np.ascontiguousarray(v).tobytes()) for k, v in zip(keys, vectors)]
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)", rows)
            self._db.commit()

    def count(self, encoder_name: str | None = None) -> int:
        """Number of stored vectors, all or of one encoder."""
        with self._lock:
            if encoder_name is None:
                return int(self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
            # keys start with "<name>\t": a range scan on the primary key
            lo, hi = f"{encoder_name}\t", f"{encoder_name}\t\uffff"
            return int(self._db.execute("SELECT COUNT(*) FROM vectors WHERE key >= ? AND key < ?",
                                        (lo, hi)).fetchone()[0])

    def clear(self, encoder_name: str | None = None) -> None:
        """Delete all vectors, or those of one encoder."""
        with self._lock:
            if encoder_name is None:
                self._db.execute("DELETE FROM vectors")
            else:
                self._db.execute("DELETE FROM vectors WHERE key >= ? AND key < ?",
                                 (f"{encoder_name}\t", f"{encoder_name}\t\uffff"))
            self._db.commit()


class CachedEncoder:
    """Wraps any `TextEncoder`: texts found in the cache are not encoded again.

    Misses are de-duplicated, encoded in chunks (stored after each chunk, so an interrupted
    run keeps its progress) and returned with the hits in the original order.
    """

    def __init__(self, encoder: TextEncoder, cache: EmbeddingCache | str | Path | None = None,
                 *, chunk_size: int = 512) -> None:
        self.encoder = encoder
        self.cache = cache if isinstance(cache, EmbeddingCache) else EmbeddingCache(cache)
        self.name: str = encoder.name
        self.dim: int = encoder.dim
        self.chunk_size = chunk_size

    def __repr__(self) -> str:
        return f"CachedEncoder({self.name!r}, {self.cache!r})"

    def _encode(self, texts: Sequence[str], role: Role, batch_size: int, progress: bool) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        keys = [text_key(self.name, role, t) for t in texts]
        found = {k: v for k, v in self.cache.get_many(keys).items() if v.shape == (self.dim,)}
        missing = list(dict.fromkeys((k, t) for k, t in zip(keys, texts) if k not in found))
        encode = self.encoder.encode_queries if role == "query" else self.encoder.encode_items
        step = max(self.chunk_size, batch_size)
        from lmrec.cli.progress import quiet

        what = f"encode {'queries' if role == 'query' else 'items'} ({self.name})"
        for s, e in batches(len(missing), step, progress=progress, description=what):
            chunk_keys = [k for k, _ in missing[s:e]]
            with quiet():  # this loop reports; the wrapped encoder's own batches stay silent
                vecs = encode([t for _, t in missing[s:e]], batch_size=batch_size, progress=False)
            self.cache.put_many(chunk_keys, vecs)
            found.update(zip(chunk_keys, np.asarray(vecs, dtype=np.float32)))
        for r, k in enumerate(keys):
            out[r] = found[k]
        return out

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self._encode(texts, "query", batch_size, progress)

    def encode_items(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self._encode(texts, "item", batch_size, progress)
