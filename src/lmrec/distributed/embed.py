"""Batch embedding of a catalog with Ray Data.

`embed_catalog(dataset_or_texts, "minilm", num_workers=4)` embeds every item text that the
embedding cache does not hold yet: the missing texts become a Ray dataset, `map_batches`
runs them through at most `num_workers` concurrent tasks (each Ray worker process loads the
registered encoder once and keeps it), and the vectors are written into the same SQLite embedding cache (`lmrec.text.cache`) that
the single-process path reads, so a later `lmrec eval`, `lmrec serve` or `embed_catalog` run
reuses them. The result equals the single-process `encode_texts_cached` output (normalised
rows in item order).

Example (needs `lmrec[ray]`):
    >>> from lmrec.testing.toy import toy_dataset
    >>> res = embed_catalog(toy_dataset(), "fake", num_workers=2)   # doctest: +SKIP
    >>> res.vectors.shape, res.encoded                                 # doctest: +SKIP
    ((40, 64), 40)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmrec.data.dataset import Dataset
from lmrec.text.base import normalize

__all__ = ["EmbedResult", "embed_catalog"]


@dataclass
class EmbedResult:
    """Normalised vectors (one row per text, float32), how many distinct texts were encoded by the
    workers and how many rows came from the cache, and the seconds it took."""

    vectors: np.ndarray
    encoded: int
    reused: int
    seconds: float


_LOADED: dict[tuple[str, int], Any] = {}  # encoders loaded in this (worker) process


def _encode_batch(batch: dict[str, np.ndarray], encoder: str, threads: int, batch_size: int) -> dict[str, np.ndarray]:
    """A Ray Data task: encode one batch of texts. The encoder is loaded once per worker process
    (Ray reuses its worker processes, so a warm worker never loads it again)."""
    key = (encoder, threads)
    if key not in _LOADED:
        from lmrec.text.registry import get_encoder

        _LOADED[key] = get_encoder(encoder, threads=threads or None)
    texts = [str(t) for t in batch["text"]]
    vecs = np.asarray(_LOADED[key].encode_items(texts, batch_size=batch_size), dtype=np.float32)
    return {"row": np.asarray(batch["row"], dtype=np.int64), "vector": vecs}


def embed_catalog(dataset_or_texts: Dataset | Sequence[str], encoder: str, num_workers: int = 2, *,
                  cache: bool | str | Path | None = None, batch_size: int = 256, threads: int = 1,
                  report: Callable[[str], None] | None = None) -> EmbedResult:
    """Embed a catalog's item texts (a `Dataset`: `dataset_item_texts`; or a list of texts) with
    the registered `encoder` in at most `num_workers` concurrent Ray Data tasks.

    `cache`: None uses the default embedding cache for language models and none for the fake
    test encoders (as `resolve_encoder` does); True the default cache; a path that cache folder;
    False none. Texts found in the cache are not encoded again; new vectors are stored in it
    (under the same keys as `CachedEncoder`, so the single-process path finds them).
    `batch_size` texts go to a task at a time, each task uses `threads` intra-op threads.
    `report` receives progress lines. Needs a Ray cluster: inside `ray_session()` or after
    `ray.init`.
    """
    from lmrec.distributed.runtime import require_ray
    from lmrec.recall.item2item import dataset_item_texts
    from lmrec.text.cache import EmbeddingCache, text_key
    from lmrec.text.registry import check_encoder_name, get_encoder

    ray = require_ray()
    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}")
    check_encoder_name(encoder)
    say = report or (lambda line: None)
    t0 = time.perf_counter()
    texts = dataset_item_texts(dataset_or_texts) if isinstance(dataset_or_texts, Dataset) \
        else [str(t) for t in dataset_or_texts]
    # loaded here once for its cache name and dimension (and so an ONNX export happens once, not
    # in every worker at the same time)
    loaded = get_encoder(encoder)
    name, dim = loaded.name, int(loaded.dim)
    if cache is None:
        cache = not encoder.startswith("fake")
    store = None if cache is False else EmbeddingCache(None if cache is True else Path(cache))
    try:
        keys = [text_key(name, "item", t) for t in texts]
        found = store.get_many(keys) if store is not None else {}
        found = {k: v for k, v in found.items() if v.shape == (dim,)}
        reused = sum(k in found for k in keys)
        todo = list(dict.fromkeys(k for k in keys if k not in found))  # distinct missing texts
        text_of = dict(zip(keys, texts))
        say(f"{len(texts)} texts, {reused} from the cache, {len(todo)} distinct texts to encode "
            f"with {encoder!r} in {num_workers} workers")
        if todo:
            import pandas as pd

            frame = pd.DataFrame({"row": np.arange(len(todo), dtype=np.int64),
                                  "text": [text_of[k] for k in todo]})
            # enough blocks that every worker gets work, none larger than a few batches
            n_blocks = max(num_workers, -(-len(todo) // max(batch_size, 1)))
            bounds = np.linspace(0, len(todo), min(n_blocks, len(todo)) + 1).astype(int)
            ds = ray.data.from_pandas([frame.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:])])
            out = ds.map_batches(_encode_batch, fn_kwargs={"encoder": encoder, "threads": threads,
                                                           "batch_size": batch_size},
                                 batch_size=batch_size, batch_format="numpy", num_cpus=1,
                                 compute=ray.data.TaskPoolStrategy(size=num_workers))
            done = 0
            for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
                rows, vecs = batch["row"], np.asarray(batch["vector"], dtype=np.float32)
                if vecs.shape != (len(rows), dim):
                    raise RuntimeError(f"{encoder!r} returned vectors of shape {vecs.shape} in a worker, "
                                       f"expected {(len(rows), dim)}")
                chunk_keys = [todo[r] for r in rows.tolist()]
                if store is not None:
                    store.put_many(chunk_keys, vecs)
                found.update(zip(chunk_keys, vecs))
                done += len(rows)
                say(f"encoded {done}/{len(todo)}")
            if done != len(todo):
                raise RuntimeError(f"Ray Data returned {done} vectors for {len(todo)} texts")
        matrix = np.zeros((len(texts), dim), np.float32)
        for r, k in enumerate(keys):
            matrix[r] = found[k]
    finally:
        if store is not None:
            store.close()
    seconds = time.perf_counter() - t0
    say(f"done: {len(texts)} vectors of dim {matrix.shape[1]} in {seconds:.1f} s")
    return EmbedResult(normalize(matrix), encoded=len(todo), reused=reused, seconds=seconds)
