"""`StreamConsumer`: the loop that feeds the engine from a stream, in a background thread."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from lmrec.stores.records import EventRecord
from lmrec.streams.base import BadMessage, Broker, BrokerUnavailable, Message, parse_stream_url
from lmrec.streams.messages import decode_event

__all__ = ["StreamConsumer", "open_broker"]

log = logging.getLogger("lmrec.streams")

#: ingest(events, event_ids) -> seqs, None for an id committed before (`Engine.ingest`)
Ingest = Callable[[Sequence[EventRecord], Sequence[str]], Sequence[int | None]]


def open_broker(url: str, **kw: Any) -> Broker:
    """The broker for a stream URL (not yet connected)."""
    target = parse_stream_url(url)
    if target.kind == "nats":
        from lmrec.streams.nats_broker import NatsBroker

        return NatsBroker(target, **kw)
    from lmrec.streams.redis_broker import RedisBroker

    return RedisBroker(target, **kw)


class StreamConsumer:
    """Fetch a batch, commit its events (idempotently), then acknowledge it; repeat.

    `ingest` is `Engine.ingest` (or a function of `() -> engine` given as `engine`, for a
    service whose engine opens later). Malformed messages go to the dead-letter stream. When
    the broker cannot be reached the error is logged and the connection retried with
    exponential back-off (`backoff_s` doubling up to `max_backoff_s`); when the ingest fails
    (the store is down) the batch is handed back and delivered again. A message that fails
    while others commit, or `max_attempts` times, goes to the dead-letter stream.

    `after_commit` is a test hook called after a batch is committed and before it is acked.
    """

    def __init__(self, url: str, ingest: Ingest | None = None, *, engine: Callable[[], Any] | None = None,
                 metrics: Any = None, batch: int = 256, fetch_timeout_s: float = 1.0, backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0, max_attempts: int = 20,
                 after_commit: Callable[[int], None] | None = None, broker: Broker | None = None) -> None:
        if (ingest is None) == (engine is None):
            raise ValueError("give either ingest or engine")
        self.broker = broker if broker is not None else open_broker(url)
        self.target = self.broker.target
        self._ingest = ingest
        self._engine = engine
        self.metrics = metrics
        self.batch = int(batch)
        self.fetch_timeout_s = fetch_timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_attempts = int(max_attempts)
        self.after_commit = after_commit
        self.connected = False
        self.consumed = self.duplicates = self.dead_letters = self.connect_failures = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._batches = 0
        self._lag_at = 0.0
        self._logged_at = 0.0
        self._failures: dict[str, int] = {}   # message position -> failed ingest attempts
        self._failures_at_log = 0
        if metrics is not None:   # series exist at 0 from the start (alerts compare rates)
            name = self.target.name
            metrics.stream_consumed.labels(name)
            metrics.stream_duplicates.labels(name)
            metrics.stream_connected.labels(name).set(0)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> StreamConsumer:
        self._thread = threading.Thread(target=self.run, name="lmrec-stream", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.broker.close()

    def run(self) -> None:
        """Consume until `stop()`; never raises for broker or store trouble."""
        backoff = self.backoff_s
        while not self._stop.is_set():
            try:
                if not self.connected:
                    self.broker.connect()
                    self._set_connected(True)
                    log.info("consuming events from %s", self.target)
                    backoff = self.backoff_s
                self.step()
            except BrokerUnavailable as e:
                self.connect_failures += 1
                if self.connected or self.last_error != str(e):
                    log.error("%s; retrying in %.1f s", e, backoff)
                    self._logged_at, self._failures_at_log = time.monotonic(), self.connect_failures
                elif time.monotonic() - self._logged_at > 60:   # the same error: a reminder a minute
                    log.error("still %s (%d attempts); retrying in %.1f s", e,
                              self.connect_failures - self._failures_at_log + 1, backoff)
                    self._logged_at = time.monotonic()
                self.last_error = str(e)
                self._set_connected(False)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
            except Exception as e:  # noqa: BLE001 - e.g. the store is down: deliver the batch again later
                self.last_error = f"{type(e).__name__}: {e}"
                log.error("cannot ingest events from %s (%s); the batch will be delivered again, retrying in "
                          "%.1f s", self.target, self.last_error, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
            else:
                backoff = self.backoff_s

    def _set_connected(self, up: bool) -> None:
        self.connected = up
        if self.metrics is not None:
            self.metrics.stream_connected.labels(self.target.name).set(1 if up else 0)

    # -- one batch ---------------------------------------------------------------------------
    def step(self) -> int:
        """Fetch and handle one batch; the number of messages handled."""
        ingest = self._ingest
        if ingest is None:
            engine = self._engine() if self._engine is not None else None
            if engine is None:            # the service's engine is still opening
                self._stop.wait(0.2)
                return 0
            ingest = engine.ingest
        messages = self.broker.fetch(self.batch, self.fetch_timeout_s)
        if not messages:
            self._update_lag(force=True)
            return 0
        good: list[tuple[Message, str, EventRecord]] = []
        for m in messages:
            try:
                event_id, event = decode_event(m.data, m.position)
            except BadMessage as e:
                self._dead_letter(m, e.reason, e.detail)
                continue
            good.append((m, event_id, event))
        if good:
            try:
                seqs = list(ingest([e for _, _, e in good], [i for _, i, _ in good]))
            except Exception as exc:  # noqa: BLE001 - sorted out event by event
                log.warning("a batch from %s failed (%s: %s): ingesting its events one by one", self.target,
                            type(exc).__name__, exc)
                good, seqs = self._one_by_one(ingest, good)
            new = sum(s is not None for s in seqs)
            self.consumed += new
            self.duplicates += len(seqs) - new
            if self.metrics is not None:
                self.metrics.stream_consumed.labels(self.target.name).inc(new)
                self.metrics.stream_duplicates.labels(self.target.name).inc(len(seqs) - new)
                self.metrics.observe_events([e.kind for (_, _, e), s in zip(good, seqs) if s is not None], [])
            self._batches += 1
            if self.after_commit is not None:
                self.after_commit(self._batches)
            self.broker.ack([m for m, _, _ in good])
        self._update_lag()
        return len(messages)

    def _one_by_one(self, ingest: Ingest, good: list[tuple[Message, str, EventRecord]]
                    ) -> tuple[list[tuple[Message, str, EventRecord]], list[int | None]]:
        """The batch failed: each event alone. One the engine refuses (ValueError) is
        dead-lettered ("rejected"); one that fails twice while others commit is a poison
        message, dead-lettered ("ingest_failed"). When none commits the store is taken to be down: the
        batch is handed back and the error raised (retried with back-off), unless a message has
        failed `max_attempts` times (then it is dead-lettered, so it cannot block the stream)."""
        kept: list[tuple[Message, str, EventRecord]] = []
        seqs: list[int | None] = []
        failed: list[tuple[Message, BaseException]] = []
        pending = good
        for _ in range(2):   # a second pass over the failures: the store may have been back by then
            failed, retry_later = [], []
            for g in pending:
                m, eid, e = g
                try:
                    seqs += list(ingest([e], [eid]))
                    kept.append(g)
                    self._failures.pop(m.position, None)
                except ValueError as err:
                    self._dead_letter(m, "rejected", str(err))
                except Exception as err:  # noqa: BLE001
                    failed.append((m, err))
                    retry_later.append(g)
            if not failed or not kept:
                break
            pending = retry_later
        store_down = bool(failed) and not kept
        retry = []
        for m, err in failed:
            n = self._failures[m.position] = self._failures.get(m.position, 0) + 1
            if store_down and n < self.max_attempts:
                retry.append(m)
            else:
                self._failures.pop(m.position, None)
                self._dead_letter(m, "ingest_failed", f"{type(err).__name__}: {err}"
                                  + (f" ({n} attempts)" if store_down else ""))
        if retry:
            self.broker.nak(retry)
            raise failed[0][1]
        return kept, seqs

    def _dead_letter(self, m: Message, reason: str, detail: str) -> None:
        self.broker.dead_letter(m, reason, detail)
        self.dead_letters += 1
        log.warning("message %s sent to the dead-letter stream %s: %s: %s", m.position, self.target.dead_letter,
                    reason, detail[:200])
        if self.metrics is not None:
            self.metrics.stream_dead_letters.labels(self.target.name, reason).inc()

    def _update_lag(self, force: bool = False) -> None:
        if self.metrics is None or (not force and time.monotonic() - self._lag_at < 5.0):
            return
        self._lag_at = time.monotonic()
        lag = self.broker.lag()
        if lag is not None:
            self.metrics.stream_lag.labels(self.target.name).set(lag)
