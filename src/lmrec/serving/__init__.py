"""The service: an in-process engine (`lmrec.serving.engine`) and the HTTP layer over it.

`Engine`, `EngineConfig`, `Ranking` and `RankedItem` load on first use, so importing a light
module of this package (schemas, auth) does not import faiss, bm25s or an encoder.

Example:
    >>> from lmrec.serving import EngineConfig
    >>> EngineConfig(home="/tmp/lmrec-home", encoder="fake").index
    'hnsw'
"""

from __future__ import annotations

from typing import Any

__all__ = ["Engine", "EngineConfig", "RankedItem", "Ranking", "seed_demo", "demo_catalog"]

_LAZY = {"Engine": "engine", "EngineConfig": "engine", "RankedItem": "engine",
         "Ranking": "engine", "seed_demo": "demo", "demo_catalog": "demo"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"lmrec.serving.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'lmrec.serving' has no attribute {name!r}")
