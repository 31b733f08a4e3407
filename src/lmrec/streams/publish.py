"""Producing: replay a file of events into a stream (`lmrec events publish FILE --to URL`)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lmrec.streams.base import BrokerUnavailable
from lmrec.streams.messages import decode_event, encode_event

__all__ = ["read_event_file", "publish_events", "connect_with_retry", "StreamPublisher"]


def read_event_file(path: Path) -> Iterator[dict[str, Any]]:
    """Events of a JSON-lines file (one object a line) or a JSON array. An event without an
    `event_id` gets `<file hash>:<line>`: replaying the same file twice ingests it once.
    ValueError naming the line for anything that is not an event."""
    raw = Path(path).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()[:16]
    text = raw.decode("utf-8")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except ValueError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        items = [(i + 1, r) for i, r in enumerate(rows)]
        where = "element"
    else:
        items = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append((n, json.loads(line)))
                except ValueError as e:
                    raise ValueError(f"{path}, line {n}: not valid JSON ({e})") from None
        where = "line"
    for n, obj in items:
        if not isinstance(obj, dict):
            raise ValueError(f"{path}, {where} {n}: expected a JSON object, got {type(obj).__name__}")
        obj = {"event_id": f"{digest}:{n}", **obj}
        try:
            decode_event(encode_event(obj), obj["event_id"])
        except ValueError as e:
            raise ValueError(f"{path}, {where} {n}: {e}") from None
        yield obj


def publish_events(broker: Any, events: list[dict[str, Any]], *, batch: int = 500, attempts: int = 5,
                   backoff_s: float = 0.5) -> int:
    """Publish events (the broker connected) in batches; a batch the broker does not take is
    retried after reconnecting, with back-off (the event ids make a retried batch harmless),
    and after `attempts` BrokerUnavailable is raised. Returns the count."""
    sent = 0
    for start in range(0, len(events), batch):
        chunk = [(e["event_id"], encode_event(e)) for e in events[start:start + batch]]
        for attempt in range(attempts):
            try:
                if attempt:
                    broker.connect()
                broker.publish(chunk)
                break
            except BrokerUnavailable:
                if attempt == attempts - 1:
                    raise
                time.sleep(backoff_s * 2 ** attempt)
        sent += len(chunk)
    return sent


def connect_with_retry(broker: Any, *, attempts: int = 4, backoff_s: float = 0.5) -> None:
    """`broker.connect()`, retried with back-off; the last BrokerUnavailable is raised."""
    for attempt in range(attempts):
        try:
            broker.connect()
            return
        except BrokerUnavailable:
            if attempt == attempts - 1:
                raise
            time.sleep(backoff_s * 2 ** attempt)


class StreamPublisher:
    """POST /events in publish mode (`events_publish`): validated events go to the stream, each
    with a fresh event id, and the consumers commit them. Thread-safe; connects on first use and
    reconnects once per call; BrokerUnavailable when the broker does not take them (the caller
    answers 503: an event is never dropped silently)."""

    def __init__(self, url: str) -> None:
        import threading

        from lmrec.streams.consumer import open_broker

        self.broker = open_broker(url)
        self.target = self.broker.target
        self._lock = threading.Lock()
        self._connected = False

    def publish_records(self, records: list[Any]) -> list[str]:
        """Publish EventRecords; their event ids, in order."""
        import uuid

        events = [{"event_id": uuid.uuid4().hex, "user_id": r.user_id, "item_id": r.item_id, "kind": r.kind,
                   "value": r.value, "timestamp": r.timestamp, "ranking_id": r.ranking_id} for r in records]
        with self._lock:
            for attempt in range(2):
                try:
                    if not self._connected:
                        self.broker.connect()
                        self._connected = True
                    publish_events(self.broker, events, attempts=1)
                    return [e["event_id"] for e in events]
                except BrokerUnavailable:
                    self._connected = False
                    if attempt:
                        raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.broker.close()
