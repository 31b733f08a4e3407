"""A readers-writer lock: many concurrent readers, one writer, writers preferred.

The engine's reads (recommend, search, similar) run from a thread pool and must not wait for
each other; its in-memory writes (folding in an event, adding an item to the index) are short
and must not interleave with a read that walks the same structures (faiss indexes and Python
dicts are not safe to mutate under a concurrent reader). Writers are preferred so a steady
stream of reads cannot starve ingestion.

Example:
    >>> lock = RWLock()
    >>> with lock.read():
    ...     pass
    >>> with lock.write():
    ...     pass
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["RWLock"]


class RWLock:
    """Shared (`read`) / exclusive (`write`) lock. Not re-entrant: a thread holding `write`
    must not ask for `read` (or `write`) again."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()
