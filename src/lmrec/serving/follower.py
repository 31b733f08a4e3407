"""Several processes serving one store: each engine follows what the others write.

`lmrec serve --workers N` (or N replicas behind any proxy) runs N engines over one shared
record store (PostgreSQL; SQLite works the same on one machine) and one shared home folder
(saved versions, the saved index, the erasure log). Each engine keeps its own in-memory state
(the pipeline's histories and online statistics, the catalog's vectors and BM25), so a write
made through one worker must reach the others. A `Follower` thread in each engine polls the
store every `follow_interval_s` and folds in, with the code paths of a local write:

- events with seq > the engine's `applied_seq` (`Engine.sync`; the store numbers events in
  commit order, so none is skipped and none is applied twice);
- the change feed (`changes` table, written by the store in the same transaction as the
  change itself): item upserts and deletions are re-read from the store and applied to the
  catalog and the served pipeline; user erasures are forgotten in memory; a version activated
  elsewhere (training, /admin/reload) is loaded from the shared `models/` folder and served.
  Changes a worker made itself (`origin` = its worker id) are skipped: it applied them when
  it made them.

Guarantees: a worker reads its own writes at once; the other workers see them after their
next poll (default 0.25 s, so well within a second; a version switch also takes the load
time of the version). Opening (index build, the first fit) and training take a file lock
in the home folder, so N workers starting together build the index and fit the first
version once, and one scheduled training runs at a time across workers.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["Follower", "HomeLock"]

log = logging.getLogger(__name__)


class HomeLock:
    """An exclusive lock on `<home>/<name>` between processes (flock); also excludes a second
    holder in the same process (each holder opens its own file description)."""

    def __init__(self, home: Path, name: str) -> None:
        self.path = Path(home) / name
        self._fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> HomeLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Follower:
    """The thread that calls `engine.follow()` every `interval` seconds until `stop`."""

    def __init__(self, engine: Any, interval: float) -> None:
        self.engine = engine
        self.interval = float(interval)
        self.rounds = 0
        self.errors = 0
        self.last_error: str | None = None
        self.last_ok = 0.0
        self.applied = {"events": 0, "items": 0, "users": 0, "versions": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lmrec-follow", daemon=True)

    def start(self) -> Follower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.interval):
            try:
                done = self.engine.follow()
            except Exception as exc:  # noqa: BLE001 - a store outage: logged once, retried next round
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                if not failing:
                    log.exception("following the shared store failed (retrying every %.2f s)", self.interval)
                failing = True
                continue
            if failing:
                log.info("following the shared store again")
            failing = False
            self.rounds += 1
            self.last_ok = time.time()
            for key, n in done.items():
                self.applied[key] = self.applied.get(key, 0) + n

    def info(self) -> dict[str, Any]:
        return {"interval_s": self.interval, "rounds": self.rounds, "errors": self.errors,
                "last_error": self.last_error, "last_ok_at": self.last_ok or None,
                "lag_s": round(time.time() - self.last_ok, 3) if self.last_ok else None,
                "applied": dict(self.applied)}
