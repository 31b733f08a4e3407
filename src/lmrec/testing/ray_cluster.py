"""A throw-away local Ray cluster for tests: 2 CPUs, its own temporary folder and no auth token
(so two pytest-xdist workers never share, or race for, one token file)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["local_ray_cluster"]


@contextmanager
def local_ray_cluster(prefix: str = "lmrec-ray-test-", *, num_cpus: int = 2, object_store_mb: int = 256) -> Iterator[Any]:
    """Start a local cluster (`lmrec.distributed.ray_session`) and remove its folder after."""
    from lmrec.distributed import ray_session

    before = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    temp = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    try:
        with ray_session(num_cpus=num_cpus, object_store_mb=object_store_mb, temp_dir=temp) as r:
            yield r
    finally:
        shutil.rmtree(temp, ignore_errors=True)
        if before is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = before
