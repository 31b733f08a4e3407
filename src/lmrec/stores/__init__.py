"""Stores: vector indexes (exact numpy, faiss flat, faiss HNSW) over external int64 ids.

faiss-backed classes load on first use, so `import lmrec.stores` works without faiss.

Example:
    >>> from lmrec.stores import build_index, load_index
    >>> index = build_index("exact", dim=384)
"""

from __future__ import annotations

from typing import Any

from lmrec.stores.vector_index import (INDEX_KINDS, BaseVectorIndex, ExactIndex, VectorIndex, build_index,
                                       load_index)

__all__ = ["INDEX_KINDS", "BaseVectorIndex", "ExactIndex", "FaissFlatIndex", "HNSWIndex", "VectorIndex",
           "build_index", "load_index"]


def __getattr__(name: str) -> Any:
    if name in ("FaissFlatIndex", "HNSWIndex"):
        from lmrec.stores import faiss_index

        return getattr(faiss_index, name)
    raise AttributeError(f"module 'lmrec.stores' has no attribute {name!r}")
