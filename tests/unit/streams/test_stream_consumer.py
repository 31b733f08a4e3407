"""StreamConsumer's loop over an in-memory broker: what is acked when, what is dead-lettered,
how failures are retried. (The real NATS / Redis servers: tests/integration/test_streams.py.)"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest

from lmrec.serving.metrics import ServiceMetrics
from lmrec.stores.records import EventRecord
from lmrec.streams import BrokerUnavailable, StreamConsumer, encode_event, parse_stream_url
from lmrec.streams.base import Message


class MemoryBroker:
    """A queue with at-least-once semantics: fetched messages stay pending until acked, and
    `redeliver()` hands the unacked ones out again (what a broker does after a crash)."""

    def __init__(self, bodies: list[bytes], fail_connects: int = 0) -> None:
        self.target = parse_stream_url("redis://memory:1/0?stream=mem")
        self.queue = [Message(b, f"mem:{i}") for i, b in enumerate(bodies)]
        self.pending: dict[str, Message] = {}
        self.acked: list[str] = []
        self.dlq: list[tuple[bytes, str, str]] = []
        self.fail_connects = fail_connects
        self.connects = 0

    def connect(self) -> None:
        self.connects += 1
        if self.connects <= self.fail_connects:
            raise BrokerUnavailable("cannot reach the memory broker: refused")

    def fetch(self, n: int, timeout_s: float) -> list[Message]:
        out, self.queue = self.queue[:n], self.queue[n:]
        self.pending.update({m.position: m for m in out})
        return out

    def ack(self, messages: list[Message]) -> None:
        for m in messages:
            self.pending.pop(m.position)
            self.acked.append(m.position)

    def dead_letter(self, message: Message, reason: str, detail: str) -> None:
        self.dlq.append((message.data, reason, detail))
        self.ack([message])

    def nak(self, messages: list[Message]) -> None:
        for m in messages:
            self.pending.pop(m.position)
        self.queue = [Message(m.data, m.position, True) for m in messages] + self.queue

    def redeliver(self) -> None:
        self.queue = [Message(m.data, m.position, True) for m in self.pending.values()] + self.queue
        self.pending.clear()

    def lag(self) -> int:
        return len(self.queue) + len(self.pending)

    def publish(self, payloads: list[tuple[str, bytes]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Store:
    """`ingest` with the store's semantics: an id is committed once."""

    def __init__(self) -> None:
        self.ids: dict[str, EventRecord] = {}
        self.calls = 0
        self.down = False

    def ingest(self, events: Sequence[EventRecord], ids: Sequence[str]) -> list[int | None]:
        self.calls += 1
        if self.down:
            raise ConnectionError("the store is down")
        for e in events:
            if e.item_id == "forbidden":
                raise ValueError("events[0].item_id: refused by the engine")
            if e.item_id == "poison":
                raise KeyError("a bug the event triggers")
        out: list[int | None] = []
        for e, i in zip(events, ids):
            out.append(None if i in self.ids else len(self.ids) + 1)
            self.ids.setdefault(i, e)
        return out


def body(i: int, **kw: Any) -> bytes:
    return encode_event({"event_id": f"e{i}", "user_id": "u", "item_id": f"i{i}", **kw})


def consumer(broker: MemoryBroker, store: Store, **kw: Any) -> StreamConsumer:
    return StreamConsumer("redis://memory:1/0?stream=mem", store.ingest, broker=broker, **kw)


def test_a_batch_is_acked_after_its_commit_and_a_redelivery_is_counted_once() -> None:
    broker, store = MemoryBroker([body(i) for i in range(10)]), Store()
    seen: list[int] = []
    c = consumer(broker, store, batch=4, after_commit=lambda n: seen.append(len(broker.acked)))
    c.step()
    assert seen == [0] and len(broker.acked) == 4     # committed before acked
    c.step()
    broker.redeliver()          # a crash after the second batch's commit: nothing of it acked ... (simulated)
    broker.acked.clear()
    while c.step():
        pass
    assert len(store.ids) == 10 and c.consumed == 10
    assert c.duplicates == 0    # the second batch was acked before the redelivery: nothing came back
    # now a real gap: commit, crash before the ack, redelivery
    broker2, store2 = MemoryBroker([body(i) for i in range(6)]), Store()
    c2 = consumer(broker2, store2, batch=3)
    c2.broker.ack = lambda msgs: (_ for _ in ()).throw(BrokerUnavailable("connection lost"))  # type: ignore
    with pytest.raises(BrokerUnavailable):
        c2.step()
    assert len(store2.ids) == 3 and not broker2.acked
    del c2.broker.ack           # back to the broker's own ack
    broker2.redeliver()
    while c2.step():
        pass
    assert len(store2.ids) == 6 and c2.consumed == 6 and c2.duplicates == 3 and broker2.lag() == 0


def test_malformed_and_refused_messages_go_to_the_dead_letter_stream() -> None:
    broker, store = MemoryBroker([body(0), b"{broken", body(1, kind="teleport"), body(2, item_id="forbidden"),
                                  body(3)]), Store()
    metrics = ServiceMetrics()
    c = consumer(broker, store, batch=10, metrics=metrics)
    c.step()
    assert sorted(store.ids) == ["e0", "e3"]
    assert [r for _, r, _ in broker.dlq] == ["invalid_json", "invalid_event", "rejected"]
    assert "forbidden" not in str(store.ids.values()) and "refused by the engine" in broker.dlq[2][2]
    assert broker.lag() == 0, "every message acked: a bad one never blocks the stream"
    assert metrics.stream_dead_letters.labels("mem", "rejected")._value.get() == 1
    assert metrics.stream_consumed.labels("mem")._value.get() == 2


def test_a_failing_store_leaves_the_batch_unacked_and_it_is_retried() -> None:
    broker, store = MemoryBroker([body(i) for i in range(5)]), Store()
    store.down = True
    c = consumer(broker, store, batch=5, backoff_s=0.01, max_backoff_s=0.02)
    c.start()
    try:
        deadline = time.monotonic() + 5
        while store.calls < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        # each failure handed the batch back (nak), so each retry got it again
        assert store.calls >= 3 and not broker.acked and "the store is down" in (c.last_error or "")
        store.down = False
        while broker.lag() and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        c.stop()
    assert len(store.ids) == 5 and broker.lag() == 0


def test_a_poison_message_is_dead_lettered_and_the_rest_committed() -> None:
    broker, store = MemoryBroker([body(0), body(1, item_id="poison"), body(2)]), Store()
    c = consumer(broker, store, batch=10)
    c.step()
    assert sorted(store.ids) == ["e0", "e2"] and broker.lag() == 0
    assert [(r, "a bug the event triggers" in d) for _, r, d in broker.dlq] == [("ingest_failed", True)]


def test_a_lone_poison_message_is_retried_then_dead_lettered() -> None:
    # alone, it cannot be told from a store that is down: retried, and after max_attempts let go
    broker, store = MemoryBroker([body(1, item_id="poison"), body(2)]), Store()
    c = consumer(broker, store, batch=1, max_attempts=3)
    for _ in range(2):
        with pytest.raises(KeyError):
            c.step()
        assert not broker.dlq and broker.lag() == 2
    c.step()
    assert [r for _, r, _ in broker.dlq] == ["ingest_failed"] and "3 attempts" in broker.dlq[0][2]
    c.step()
    assert list(store.ids) == ["e2"] and broker.lag() == 0


def test_a_store_that_is_down_dead_letters_nothing() -> None:
    broker, store = MemoryBroker([body(i) for i in range(4)]), Store()
    store.down = True
    c = consumer(broker, store, batch=4)
    for _ in range(5):
        with pytest.raises(ConnectionError):
            c.step()
    assert not broker.dlq and broker.lag() == 4
    store.down = False
    c.step()
    assert len(store.ids) == 4 and broker.lag() == 0


def test_connection_failures_back_off_then_consume() -> None:
    broker, store = MemoryBroker([body(0)], fail_connects=3), Store()
    metrics = ServiceMetrics()
    c = consumer(broker, store, backoff_s=0.02, max_backoff_s=1.0, metrics=metrics)
    t = time.monotonic()
    c.start()
    try:
        deadline = t + 5
        while not store.ids and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        c.stop()
    # waits of 0.02, 0.04, 0.08 s before the fourth attempt succeeds
    assert time.monotonic() - t >= 0.14 and broker.connects == 4 and c.connect_failures == 3
    assert list(store.ids) == ["e0"] and c.connected
    assert metrics.stream_connected.labels("mem")._value.get() == 1


def test_a_service_engine_that_is_still_opening_is_waited_for() -> None:
    broker, store = MemoryBroker([body(0)]), Store()
    engine: list[Any] = []
    c = StreamConsumer("redis://memory:1/0?stream=mem", engine=lambda: engine[0] if engine else None, broker=broker)
    assert c.step() == 0 and broker.lag() == 1      # nothing fetched while there is no engine
    engine.append(type("E", (), {"ingest": staticmethod(store.ingest)})())
    assert c.step() == 1 and list(store.ids) == ["e0"]
