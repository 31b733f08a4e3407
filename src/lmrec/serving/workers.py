"""`lmrec serve --workers N`: N uvicorn worker processes, each with its own engine, over one
shared store and home folder (see `lmrec.serving.follower` for how they stay in step).

The parent process binds the socket and supervises the workers (uvicorn's `Multiprocess`);
each worker builds its app with `app_factory`, from the service config the parent wrote to a
private file named by `LMREC_SERVE_CONFIG_FILE`.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

__all__ = ["app_factory", "check_shared_store", "write_worker_config", "CONFIG_ENV", "DEFAULT_FOLLOW_S"]

CONFIG_ENV = "LMREC_SERVE_CONFIG_FILE"
LOG_LEVEL_ENV = "LMREC_SERVE_LOG_LEVEL"
#: how often each worker polls the shared store when none is configured
DEFAULT_FOLLOW_S = 0.25


def check_shared_store(url: str) -> None:
    """ValueError when the store cannot be shared by several processes (an in-memory SQLite)."""
    rest = url.split("://", 1)[1] if "://" in url else ""
    if url.lower().startswith("sqlite:") and rest in ("", "/:memory:"):
        raise ValueError("--workers needs a store the workers share: an in-memory SQLite store is private to one "
                         "process (use a SQLite file on this machine or postgresql://...)")


def write_worker_config(config: Any, log_level: str) -> Path:
    """Write the workers' service config to a file only this user can read (it may hold the
    log hash key) in the home folder; the workers find it through the environment."""
    path = Path(config.engine.home) / f".lmrec-serve-{os.getpid()}.config"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        pickle.dump(config, f)
    os.environ[CONFIG_ENV] = str(path)
    os.environ[LOG_LEVEL_ENV] = log_level
    return path


def app_factory() -> Any:
    """The app of one worker (uvicorn calls it in each worker process)."""
    from lmrec.cli.service_cmd import configure_logging
    from lmrec.serving.app import create_app

    with open(os.environ[CONFIG_ENV], "rb") as f:
        config = pickle.load(f)  # noqa: S301 - written by the parent process, readable by this user only
    configure_logging(os.environ.get(LOG_LEVEL_ENV, "info"))
    return create_app(config)
