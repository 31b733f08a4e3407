"""Distributed batch jobs on Ray (the optional extra `lmrec[ray]`).

- `embed_catalog`: embed a catalog's item texts with Ray Data into the embedding cache;
- `evaluate_sharded`: the full-ranking evaluation over user shards in Ray tasks;
- `train_sasrec_ddp`: data-parallel training of SASRec (torch DDP, gloo) in Ray Train workers
  or plain processes;
- `ray_session`: start or join a cluster for the duration of a block;
- `lmrec.distributed.serve`: the HTTP service as Ray Serve replicas over a shared store, with an
  autoscaling config (`lmrec ray serve`).

Each job's result equals the single-process path's (tests/integration/test_ray.py). Importing
this package does not import Ray; calling a job without it raises an ImportError naming the
extra.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ray_session", "require_ray", "embed_catalog", "EmbedResult", "evaluate_sharded", "merge_shards",
           "shard_split", "train_sasrec_ddp"]

_WHERE = {
    "ray_session": "runtime", "require_ray": "runtime",
    "embed_catalog": "embed", "EmbedResult": "embed",
    "evaluate_sharded": "evaluate", "merge_shards": "evaluate", "shard_split": "evaluate",
    "train_sasrec_ddp": "train",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"lmrec.distributed.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'lmrec.distributed' has no attribute {name!r}")
