"""What a request returns (`Ranking` of `RankedItem`s), per-stage timing, and the background
writer that logs served rankings to the record store.

Rankings are logged so that later events carrying a `ranking_id` join the list the user was
shown (impressions -> clicks for learning to rank, offline replay). Logging happens on a
background thread that drains a bounded queue in batches: a request never waits for a
commit, and when the store falls far behind, rankings are dropped (with a warning) rather
than slowing down serving. A crash can lose the last rankings in the queue, never events.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from typing import Any

from lmrec.stores.records import RankingRecord, RecordStore

__all__ = ["RankedItem", "Ranking", "StageTimer", "RankingLog"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RankedItem:
    """One returned item: its id, the fused score, the channels that proposed it ("lm", "cf",
    "popular", "newest", "dense", "bm25", "similar") and, on request, why."""

    item_id: str
    score: float
    sources: tuple[str, ...]
    explanation: dict[str, Any] | None = None


@dataclasses.dataclass
class Ranking:
    """A served list: `ranking_id` (events may cite it), the model version that produced it and
    per-stage wall times in ms ("encode", "recall_*", "merge", "filter", "explain", "total")."""

    ranking_id: str
    items: list[RankedItem]
    model_version: str
    timings_ms: dict[str, float]


class StageTimer:
    """Per-stage wall times in milliseconds."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self._t0 = self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.ms[stage] = self.ms.get(stage, 0.0) + (now - self._last) * 1000.0
        self._last = now

    def done(self) -> dict[str, float]:
        self.ms["total"] = (time.perf_counter() - self._t0) * 1000.0
        return {k: round(v, 4) for k, v in self.ms.items()}


class RankingLog:
    """A bounded queue of `RankingRecord`s written to `store` by one daemon thread: every
    `linger_s` it takes what is queued (`batch` at a time) and writes it in one transaction when
    the store has `log_rankings`, else with one `log_ranking` call each."""

    def __init__(self, store: RecordStore, *, maxsize: int = 100_000, batch: int = 500, linger_s: float = 0.05) -> None:
        self.store, self.batch, self.linger_s = store, batch, linger_s
        self._q: queue.Queue[RankingRecord | None] = queue.Queue(maxsize=maxsize)
        self.dropped = 0
        self._thread = threading.Thread(target=self._loop, name="lmrec-ranking-log", daemon=True)
        self._thread.start()

    def put(self, rec: RankingRecord) -> None:
        """Queue one ranking; never blocks (drops and counts when the queue is full)."""
        try:
            self._q.put_nowait(rec)
        except queue.Full:
            self.dropped += 1
            log.warning("ranking log queue full; ranking %s not logged", rec.ranking_id)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._q.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the thread."""
        self._q.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        write_many = getattr(self.store, "log_rankings", None)
        stop = full = False
        while not stop:
            # wake on a timer and drain, rather than wake on every put: a request then never
            # hands the GIL to this thread, and a busy server commits a few times a second
            # instead of once per request (each commit is an fsync)
            if not full:
                time.sleep(self.linger_s)
            batch: list[RankingRecord | None] = []
            while len(batch) < self.batch:
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            recs = [r for r in batch if r is not None]
            stop, full = len(recs) < len(batch), len(batch) == self.batch
            try:
                if recs and write_many is not None:
                    write_many(recs)
                else:
                    for rec in recs:
                        self.store.log_ranking(rec)
            except Exception:  # logging must never take the thread down
                log.exception("logging %d rankings failed", len(recs))
            finally:
                for _ in batch:
                    self._q.task_done()
