"""Erasing a user from a running service (`Engine.delete_user`, `DELETE /users/{id}`).

The record store drops the user's events, attribute record and logged rankings
(`store.delete_user`). The served pipeline version was fitted on an older snapshot and keeps
the user in memory, so `forget_user` takes them out of it: the user id is unmapped (the next
request for it is a new user's: the fallback list), their events leave the shared history and
the pipeline's copy of the training events and attributes, and every stage that can un-count
them does (`RecPipeline.forget_user`).

A saved version folder still holds the state its fit computed from the user's events. So that a
restart, `POST /admin/reload` or an experiment serving such a version does not bring them back,
`ErasureLog` keeps, per erasure, a salted SHA-256 of the user id and the store's last event seq
at the time (`<home>/erasures.json`, mode 0600, never the raw id); a version fitted before that
seq has the user forgotten again as it is loaded, before the events after its fit are folded in.
A version fitted after the erasure never saw the user and is left alone.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> log = ErasureLog(Path(tempfile.mkdtemp()))
    >>> log.add("alice", seq=12)
    >>> log.erased_before(12) == {log.digest("alice")}, log.erased_before(13)
    (True, set())
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["ErasureLog", "forget_user", "ERASURES"]

ERASURES = "erasures.json"


class ErasureLog:
    """Salted digests of erased user ids with the store seq at their erasure (see the module
    docstring). Thread-safe; the file is re-read before each use and rewritten whole (temp file
    + rename), so erasures recorded by another process (`lmrec users delete`) are kept."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / ERASURES
        self._lock = threading.Lock()
        self.salt = ""
        self.entries: list[dict[str, Any]] = []
        self._load()

    def _load(self) -> None:
        data: dict[str, Any] = {}
        if self.path.is_file():
            data = json.loads(self.path.read_text(encoding="utf-8"))
        self.salt = str(data.get("salt") or self.salt or secrets.token_hex(16))
        self.entries = list(data.get("entries", []))

    def digest(self, user_id: str) -> str:
        return hashlib.sha256(f"{self.salt}\x00{user_id}".encode()).hexdigest()

    def add(self, user_id: str, seq: int) -> None:
        """Record that `user_id` was erased when the store's last event seq was `seq`."""
        with self._lock:
            self._load()
            self.entries.append({"digest": self.digest(user_id), "seq": int(seq), "at": round(time.time(), 3)})
            self._save()

    def erased_before(self, last_seq: int) -> set[str]:
        """Digests of the users erased at or after a fit that read events up to `last_seq` (a fit
        at the same seq may have run before the erasure: it is treated as older)."""
        with self._lock:
            self._load()
            return {e["digest"] for e in self.entries if int(e["seq"]) >= last_seq}

    def apply(self, version: Any) -> int:
        """Forget, in a loaded `Version`, every user erased after its fit; returns how many."""
        wanted = self.erased_before(version.last_seq)
        if not wanted:
            return 0
        ids = [u for u in version.pipeline.dataset.users.ids if not u.startswith("\x00")]
        hits = [u for u in ids if self.digest(u) in wanted]
        for user_id in hits:
            forget_user(version, user_id)
        return len(hits)

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"salt": self.salt, "entries": self.entries}, f)
        os.replace(tmp, self.path)


def forget_user(version: Any, user_id: str) -> dict[str, Any] | None:
    """Take `user_id` out of a served version in memory (see the module docstring); None when
    the version does not know the user. The caller holds the engine's write lock."""
    pipe = version.pipeline
    ds = pipe.dataset
    u = ds.users.get(user_id)
    if u < 0:
        return None
    report = pipe.forget_user(u)
    ds.users.forget(user_id)
    return report
