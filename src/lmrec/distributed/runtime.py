"""Starting or joining a Ray cluster for lmrec's batch jobs.

`ray_session(address, num_cpus)` is a context manager: inside a process that already called
`ray.init` it uses that cluster and leaves it running; otherwise it starts a local one
(`address=None`) or connects to one (`"auto"`, `"ray://host:10001"`, ...) and shuts it
down on exit. Ray is an optional dependency: `pip install 'lmrec[ray]'`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any

__all__ = ["require_ray", "ray_session", "cluster_cpus"]


def require_ray() -> Any:
    """The ray module, or an ImportError naming the extra that installs it."""
    try:
        import ray
    except ImportError as e:
        raise ImportError("distributed batch jobs need Ray: pip install 'lmrec[ray]'") from e
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None,
                object_store_mb: int | None = None, temp_dir: str | None = None) -> Iterator[Any]:
    """Yield the ray module with a connected cluster (see the module docstring).

    A local cluster gets `num_cpus` CPUs (default: all), no dashboard, its own temporary folder
    (two processes on one machine never share one by accident) and, when given, an object store
    of `object_store_mb` MiB."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address is None:
        kwargs.update(address="local", num_cpus=num_cpus,
                      _temp_dir=temp_dir or tempfile.mkdtemp(prefix="lmrec-ray-", dir=_short_tmp()))
        if object_store_mb:
            kwargs["object_store_memory"] = int(object_store_mb) * 1024 * 1024
    else:
        kwargs["address"] = address
    ray.init(**kwargs)
    try:
        yield ray
    finally:
        ray.shutdown()


def _short_tmp() -> str:
    """A temporary folder with a short path: Ray's unix sockets live under it (108-byte limit)."""
    return "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()


def cluster_cpus() -> int:
    """CPUs of the connected cluster (at least 1)."""
    ray = require_ray()
    return max(int(ray.cluster_resources().get("CPU", 1)), 1)
