"""Event streams (lmrec.streams) against the real NATS JetStream and Redis servers.

Each backend test is skipped, with the reason, when its server is unreachable
(LMREC_TEST_NATS_URL, default nats://127.0.0.1:4222; LMREC_TEST_REDIS_URL, default
redis://127.0.0.1:6379/0). Every test uses a stream of its own and deletes it afterwards.

The SIGKILL test runs consumers as child processes (this file run as a script): the first kills
itself right after committing a batch and before acknowledging it (the window where at-least-
once delivery redelivers), the second is killed from outside mid-stream, the third finishes.
The store then holds every published event exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from lmrec.stores.records import EventRecord
from lmrec.streams import BadMessage, StreamConsumer, decode_event, encode_event, open_broker, parse_stream_url
from lmrec.streams.publish import publish_events

NATS = os.environ.get("LMREC_TEST_NATS_URL", "nats://127.0.0.1:4222")
REDIS = os.environ.get("LMREC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get("LMREC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REPO = Path(__file__).resolve().parents[2]


@cache
def unreachable(kind: str) -> str | None:
    """Why the `kind` server cannot be used (None when it can)."""
    if kind == "nats":
        try:
            import nats  # noqa: F401
        except ImportError:
            return "nats-py is not installed (pip install 'lmrec[stream]')"
    base = NATS if kind == "nats" else REDIS
    parts = urlsplit(base)
    try:
        socket.create_connection((parts.hostname, parts.port or (4222 if kind == "nats" else 6379)), 2).close()
    except OSError as e:
        var = "LMREC_TEST_NATS_URL" if kind == "nats" else "LMREC_TEST_REDIS_URL"
        return f"{kind} unreachable at {base} (set {var}): {e}"
    return None


def stream_url(kind: str, **options: str) -> str:
    name = f"lmrec-test.{uuid.uuid4().hex[:10]}"
    query = "&".join(f"{k}={v}" for k, v in options.items())
    if kind == "nats":
        return f"{NATS.rstrip('/')}/{name}" + (f"?{query}" if query else "")
    return f"{REDIS}?stream={name}" + (f"&{query}" if query else "")


def delete_stream(url: str) -> None:
    """Remove a test stream and its dead-letter stream from the server."""
    broker = open_broker(url)
    try:
        broker.connect()
        if broker.target.kind == "nats":
            for name in (broker.stream, broker.dlq_stream):
                try:
                    broker._run(broker._js.delete_stream(name))
                except Exception:  # noqa: BLE001 - already gone
                    pass
        else:
            broker._client().delete(broker.key, broker.target.dead_letter)
    finally:
        broker.close()


@pytest.fixture(params=["nats", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    reason = unreachable(request.param)
    if reason:
        pytest.skip(reason)
    return request.param


@pytest.fixture
def url(kind: str) -> Iterator[str]:
    u = stream_url(kind, **({"ack_wait": "1"} if kind == "nats" else {"claim_idle_ms": "1000"}))
    yield u
    delete_stream(u)


def dead_letters(url: str) -> list[dict[str, str]]:
    """The dead-letter stream's messages: body and reason."""
    broker = open_broker(url)
    broker.connect()
    try:
        if broker.target.kind == "redis":
            return [{"body": f[b"event"].decode("utf-8", "replace"), "reason": f[b"reason"].decode()}
                    for _, f in broker._client().xrange(broker.target.dead_letter)]

        async def read() -> list[dict[str, str]]:
            sub = await broker._js.pull_subscribe(broker.target.dead_letter, stream=broker.dlq_stream)
            out = []
            try:
                for m in await sub.fetch(100, timeout=1):
                    out.append({"body": m.data.decode("utf-8", "replace"), "reason": m.headers["Lmrec-Reason"]})
            except Exception:  # noqa: BLE001 - timeout: no (more) messages
                pass
            return out

        return broker._run(read())
    finally:
        broker.close()


def events(n: int, prefix: str = "e") -> list[dict[str, Any]]:
    return [{"event_id": f"{prefix}{i}", "user_id": f"u{i % 7}", "item_id": f"i{i}", "kind": "click",
             "timestamp": 1_700_000_000.0 + i} for i in range(n)]


def wait_for(cond: Any, timeout_s: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def open_engine(home: Path, n_items: int = 0) -> Any:
    from lmrec.serving.engine import Engine, EngineConfig
    from lmrec.stores.records import ItemRecord

    engine = Engine.open(EngineConfig(home=home, store_url=f"sqlite:///{home}/lmrec.db", encoder="fake",
                                      index="flat"))
    if n_items:
        engine.upsert_items([ItemRecord(f"i{i}", title=f"item {i}") for i in range(n_items)])
    return engine


# ---- no server needed ------------------------------------------------------------------------
def test_stream_urls() -> None:
    t = parse_stream_url("nats://127.0.0.1:4222/lmrec.events?ack_wait=5")
    assert (t.kind, t.url, t.name, t.dead_letter, t.options) == ("nats", "nats://127.0.0.1:4222", "lmrec.events",
                                                                 "lmrec.events.dlq", {"ack_wait": "5"})
    t = parse_stream_url("redis://:pw@127.0.0.1:6379/0?stream=lmrec.events&group=g&socket_timeout=3")
    assert (t.kind, t.name, t.options, t.url) == ("redis", "lmrec.events", {"group": "g"},
                                                  "redis://:pw@127.0.0.1:6379/0?socket_timeout=3")
    assert "pw" not in str(t)
    for bad, why in [("kafka://h/x", "unsupported stream URL scheme"), ("nats://127.0.0.1:4222", "name the subject"),
                     ("redis://127.0.0.1:6379/0", "name the stream key"), ("nats://h/x?acks=1", "unknown option"),
                     ("nats://h/x?ack_wait=-1", "ack_wait must be a positive number"),
                     ("nats://h/a b", "may hold letters")]:
        with pytest.raises(ValueError, match=why):
            parse_stream_url(bad)


def test_messages_decode_or_say_why() -> None:
    eid, e = decode_event(encode_event({"user_id": "u", "item_id": "i", "kind": "cart", "value": 2}), "s:7")
    assert eid == "s:7" and e == EventRecord("u", "i", "cart", 2.0, 0.0)
    assert decode_event(encode_event({"event_id": "x1", "user_id": "u", "item_id": "i"}), "s:8")[0] == "x1"
    for body, reason, detail in [(b"{oops", "invalid_json", ""), (b"\xff\xfe", "invalid_json", ""),
                                 (b"[1]", "invalid_event", "JSON object"),
                                 (b'{"user_id": "u", "item_id": "i", "colour": 1}', "invalid_event", "colour"),
                                 (b'{"user_id": "u", "item_id": "i", "kind": "nope"}', "invalid_event", "kind"),
                                 (b'{"item_id": "i"}', "invalid_event", "user_id"),
                                 (b'{"user_id": "u", "item_id": "i", "value": "NaN"}', "invalid_event", "value"),
                                 (b'{"user_id": "u", "item_id": "i", "event_id": ""}', "invalid_event", "event_id"),
                                 (b" " * 70_000, "too_large", "")]:
        with pytest.raises(BadMessage) as info:
            decode_event(body, "s:1")
        assert info.value.reason == reason and detail in info.value.detail


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_store_commits_an_event_id_once(backend: str, tmp_path: Path) -> None:
    from lmrec.stores.sql import open_store

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/db.sqlite"
    else:
        try:
            import psycopg

            psycopg.connect(PG_URL, connect_timeout=3).close()
        except Exception as e:  # noqa: BLE001
            pytest.skip(f"PostgreSQL unreachable at {PG_URL} (set LMREC_TEST_POSTGRES_URL): {e}")
        url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema=lmrec_streams_{uuid.uuid4().hex[:10]}"
    store = open_store(url)
    try:
        a, b, c = (EventRecord("u", f"i{k}", "click", 1.0, 1.0) for k in range(3))
        first = store.append_events_once([a, b], ["x", "y"])
        assert all(isinstance(s, int) for s in first)
        again = store.append_events_once([b, c, c], ["y", "z", "z"])     # y seen, z twice in one batch
        assert again[0] is None and isinstance(again[1], int) and again[2] is None
        assert [e.item_id for e in store.events()] == ["i0", "i1", "i2"]
        with pytest.raises(ValueError, match=r"events\[0\].event_id"):
            store.append_events_once([a], [""])
        with pytest.raises(ValueError, match="2 events but 1 event ids"):
            store.append_events_once([a, b], ["q"])
        assert store.count_events() == 3
    finally:
        if backend == "postgresql":
            schema = url.rsplit("schema=", 1)[1]
            store.close()
            import psycopg

            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        else:
            store.close()


def test_engine_ingest_with_ids_folds_each_event_once(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "home", n_items=5)
    try:
        evs = [EventRecord("u1", f"i{k}", "click", 1.0, 100.0 + k) for k in range(3)]
        seqs = engine.ingest(evs, ["a", "b", "c"])
        assert None not in seqs and engine.stats()["n_events"] == 3
        seqs = engine.ingest(evs[1:] + [EventRecord("u1", "i4", "click", 1.0, 200.0)], ["b", "c", "d"])
        assert seqs[:2] == [None, None] and isinstance(seqs[2], int)
        assert engine.stats()["n_events"] == 4 and engine.store.count_events() == 4
    finally:
        engine.close()


@pytest.mark.parametrize("bad", ["nats://127.0.0.1:1/lmrec.events", "redis://127.0.0.1:1/0?stream=lmrec.events"])
def test_unreachable_broker_is_logged_and_retried_with_backoff(bad: str, caplog: pytest.LogCaptureFixture) -> None:
    if bad.startswith("nats") and unreachable("nats") and "nats-py" in (unreachable("nats") or ""):
        pytest.skip("nats-py is not installed")
    from lmrec.serving.metrics import ServiceMetrics

    metrics = ServiceMetrics()
    got: list[Any] = []
    consumer = StreamConsumer(bad, lambda e, i: got.append(e) or [], metrics=metrics, backoff_s=0.05,
                              max_backoff_s=0.2)
    with caplog.at_level("ERROR", logger="lmrec.streams"):
        consumer.start()
        wait_for(lambda: consumer.connect_failures >= 4, 15, "four connection attempts")
        assert consumer._thread is not None and consumer._thread.is_alive()   # it keeps trying
        consumer.stop()
    assert not consumer.connected and not got
    assert "cannot reach" in (consumer.last_error or "") and "127.0.0.1:1" in consumer.last_error
    errors = [r.getMessage() for r in caplog.records if "cannot reach" in r.getMessage()]
    assert errors and "retrying in" in errors[0]
    assert len(errors) < consumer.connect_failures, "the same error is logged once, not once per attempt"
    assert metrics.stream_connected.labels(consumer.target.name)._value.get() == 0


# ---- against the servers ---------------------------------------------------------------------
def test_each_event_counted_once_bad_messages_dead_lettered(url: str, tmp_path: Path) -> None:
    from lmrec.serving.metrics import ServiceMetrics

    engine = open_engine(tmp_path / "home", n_items=20)
    producer = open_broker(url)
    producer.connect()
    try:
        evs = events(20)
        publish_events(producer, evs)
        # redeliveries the broker cannot recognise (another message id): the store must
        producer.publish([(f"again-{e['event_id']}", encode_event(e)) for e in evs[:5]])
        producer.publish([("bad-1", b"{not json"), ("bad-2", encode_event({"user_id": "u", "item_id": "i",
                                                                             "kind": "teleport"}))])
        metrics = ServiceMetrics()
        consumer = StreamConsumer(url, engine.ingest, metrics=metrics, batch=8, fetch_timeout_s=0.2).start()
        try:
            wait_for(lambda: consumer.consumed + consumer.duplicates + consumer.dead_letters >= 27, 30,
                     "every message handled")
            wait_for(lambda: consumer.broker.lag() == 0, 10, "the stream acknowledged")
        finally:
            consumer.stop()
        assert (consumer.consumed, consumer.duplicates, consumer.dead_letters) == (20, 5, 2)
        assert engine.store.count_events() == 20 and engine.stats()["n_events"] == 20
        assert sorted(e.item_id for e in engine.store.events()) == sorted(e["item_id"] for e in evs)
        letters = dead_letters(url)
        assert sorted(d["reason"] for d in letters) == ["invalid_event", "invalid_json"]
        assert any("teleport" in d["body"] for d in letters)
        name = consumer.target.name
        assert metrics.stream_consumed.labels(name)._value.get() == 20
        assert metrics.stream_duplicates.labels(name)._value.get() == 5
        assert metrics.stream_dead_letters.labels(name, "invalid_json")._value.get() == 1
        assert metrics.events_ingested.labels("click")._value.get() == 20
    finally:
        producer.close()
        engine.close()


def test_a_batch_that_fails_to_commit_comes_back_at_once(kind: str, tmp_path: Path) -> None:
    # redelivery by timeout would take a minute here: the consumer hands the batch back (nak)
    url = stream_url(kind, **({"ack_wait": "60"} if kind == "nats" else {"claim_idle_ms": "60000"}))
    from lmrec.stores.sql import open_store

    store = open_store(f"sqlite:///{tmp_path}/db.sqlite")
    calls = []

    def flaky_ingest(evs: Any, ids: Any) -> Any:
        calls.append(len(evs))
        if len(calls) <= 2:
            raise ConnectionError("the store is down")
        return store.append_events_once(evs, ids)

    producer = open_broker(url)
    producer.connect()
    consumer = StreamConsumer(url, flaky_ingest, batch=50, fetch_timeout_s=0.2, backoff_s=0.1)
    try:
        publish_events(producer, events(8))
        t = time.monotonic()
        consumer.start()
        wait_for(lambda: store.count_events() == 8 and consumer.broker.lag() == 0, 15, "the batch committed")
        assert time.monotonic() - t < 15 and len(calls) >= 3 and consumer.consumed == 8
    finally:
        consumer.stop()
        producer.close()
        store.close()
        delete_stream(url)


def test_events_publish_cli_replays_a_file_once(url: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lmrec.cli.main import app

    f = tmp_path / "events.jsonl"
    f.write_text("\n".join(json.dumps({k: v for k, v in e.items() if k != "event_id"}) for e in events(12)) + "\n")
    runner = CliRunner()
    for _ in range(2):   # the same file twice: ids from the file's hash and line, so it counts once
        r = runner.invoke(app, ["events", "publish", str(f), "--to", url])
        assert r.exit_code == 0 and "published 12 events" in r.output, r.output
    engine = open_engine(tmp_path / "home")
    consumer = StreamConsumer(url, engine.ingest, batch=50, fetch_timeout_s=0.2).start()
    try:
        wait_for(lambda: consumer.consumed == 12 and consumer.broker.lag() == 0, 20, "the file consumed")
        time.sleep(0.3)
    finally:
        consumer.stop()
    assert engine.store.count_events() == 12
    engine.close()

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"user_id": "u", "item_id": "i"}\n{"user_id": "u", "kind": "click"}\n')
    r = runner.invoke(app, ["events", "publish", str(bad), "--to", url])
    assert r.exit_code == 1 and "line 2" in r.output and "item_id" in r.output and "Traceback" not in r.output


def test_events_publish_cli_to_an_unreachable_broker(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lmrec.cli.main import app

    f = tmp_path / "events.jsonl"
    f.write_text(json.dumps({"user_id": "u", "item_id": "i"}) + "\n")
    r = CliRunner().invoke(app, ["events", "publish", str(f), "--to", "redis://127.0.0.1:1/0?stream=x"])
    assert r.exit_code == 1 and "cannot reach Redis" in r.output and "Traceback" not in r.output


def test_the_service_consumes_its_stream(url: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from lmrec.serving.app import create_app
    from lmrec.serving.config import ServiceConfig

    engine = open_engine(tmp_path / "home", n_items=6)
    producer = open_broker(url)
    producer.connect()
    try:
        app = create_app(ServiceConfig(engine=engine.config, events_url=url), engine=engine)
        with TestClient(app) as client:
            publish_events(producer, events(6))
            wait_for(lambda: engine.stats()["n_events"] == 6, 20, "the service to ingest the stream")
            wait_for(lambda: "lmrec_stream_connected" in client.get("/metrics").text, 5, "metrics")
            text = client.get("/metrics").text
            name = parse_stream_url(url).name
            assert f'lmrec_stream_events_consumed_total{{stream="{name}"}} 6.0' in text
            assert f'lmrec_stream_connected{{stream="{name}"}} 1.0' in text
    finally:
        producer.close()
        engine.close()


def test_post_events_can_publish_to_the_stream(url: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from lmrec.serving.app import create_app
    from lmrec.serving.config import ServiceConfig

    engine = open_engine(tmp_path / "home", n_items=6)
    try:
        app = create_app(ServiceConfig(engine=engine.config, events_url=url, events_publish=True,
                                       auth_enabled=False), engine=engine)
        with TestClient(app) as client:
            body = [{"user_id": "u1", "item_id": f"i{k}", "kind": "click"} for k in range(3)] + \
                [{"user_id": "u1", "item_id": "i0", "kind": "teleport"}]
            r = client.post("/events", json=body)
            assert r.status_code == 202, r.text
            out = r.json()
            assert out["published"] and out["accepted"] == 3 and len(set(out["event_ids"])) == 3
            assert [b["field"] for b in out["rejected"]] == ["kind"]
            # the service's own consumer commits them, once
            wait_for(lambda: engine.stats()["n_events"] == 3, 20, "the published events ingested")
            text = client.get("/metrics").text
            assert 'lmrec_events_ingested_total{kind="click"} 3.0' in text
    finally:
        engine.close()


def test_post_events_to_an_unreachable_stream_is_a_503(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from lmrec.serving.app import create_app
    from lmrec.serving.config import ServiceConfig

    engine = open_engine(tmp_path / "home", n_items=2)
    try:
        app = create_app(ServiceConfig(engine=engine.config, events_url="redis://127.0.0.1:1/0?stream=x",
                                       events_publish=True, auth_enabled=False), engine=engine)
        with TestClient(app) as client:
            r = client.post("/events", json={"user_id": "u1", "item_id": "i0", "kind": "click"})
            assert r.status_code == 503 and r.json()["error"] == "stream_unavailable"
            assert "cannot reach Redis" in r.json()["detail"] and r.headers["Retry-After"]
            assert engine.store.count_events() == 0
    finally:
        engine.close()


def test_a_bad_events_url_is_a_settings_error(tmp_path: Path) -> None:
    from lmrec.serving.config import ServiceConfig
    from lmrec.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="events_url.*unsupported stream URL scheme"):
        load_settings(ServiceConfig, engine={"home": tmp_path, "encoder": "fake"}, events_url="kafka://h/x")
    with pytest.raises(SettingsError, match="events_publish: set events_url"):
        load_settings(ServiceConfig, engine={"home": tmp_path, "encoder": "fake"}, events_publish=True)


# ---- SIGKILL mid-stream ------------------------------------------------------------------------
N_EVENTS = 300
BATCH = 10


def consumer_child(url: str, home: str, crash_after: int) -> None:
    """The child: consume `url` into an engine in `home`, printing a line per batch; with
    `crash_after` > 0 it SIGKILLs itself right after committing that batch, before the ack."""
    def after_commit(n: int) -> None:
        print(f"batch {n} {consumer.consumed} {consumer.duplicates}", flush=True)
        if crash_after and n == crash_after:
            os.kill(os.getpid(), signal.SIGKILL)

    engine = open_engine(Path(home), n_items=N_EVENTS)
    consumer = StreamConsumer(url, engine.ingest, batch=BATCH, fetch_timeout_s=0.2, after_commit=after_commit)
    print("ready", flush=True)
    consumer.run()


def _spawn(url: str, home: Path, crash_after: int = 0) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, url, str(home), str(crash_after)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=REPO)


def _read_until(proc: subprocess.Popen[str], stop: Any, timeout_s: float = 60.0) -> list[str]:
    """Lines of the child until `stop(lines)` or it exits."""
    lines: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    for line in proc.stdout:
        lines.append(line.strip())
        if stop(lines) or time.monotonic() > deadline:
            break
    return lines


@pytest.mark.slow
def test_consumer_killed_mid_stream_loses_nothing_and_counts_nothing_twice(url: str, tmp_path: Path) -> None:
    from lmrec.stores.sql import open_store

    home = tmp_path / "home"
    producer = open_broker(url)
    producer.connect()
    try:
        publish_events(producer, events(N_EVENTS))
    finally:
        producer.close()

    def stats(lines: list[str]) -> tuple[int, int]:
        """(consumed, duplicates) of a child's last batch line."""
        last = [ln.split() for ln in lines if ln.startswith("batch")]
        return (int(last[-1][2]), int(last[-1][3])) if last else (0, 0)

    # 1: dies by SIGKILL right after committing its 5th batch, before acknowledging it
    proc = _spawn(url, home, crash_after=5)
    lines = _read_until(proc, lambda ls: False)
    assert proc.wait(30) == -signal.SIGKILL
    assert stats(lines) == (5 * BATCH, 0)

    # 2: killed from outside once it has handled a third of the stream
    proc = _spawn(url, home)
    lines = _read_until(proc, lambda ls: stats(ls)[0] >= 100)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    consumed2, dups2 = stats(lines)
    assert dups2 >= BATCH, "the batch committed but not acknowledged in round 1 came back and was skipped"

    # 3: runs until the stream is drained
    proc = _spawn(url, home)
    try:
        with open_store(f"sqlite:///{home}/lmrec.db") as store:
            wait_for(lambda: store.count_events() >= N_EVENTS, 60, "every event stored")
        lag = open_broker(url)
        lag.connect()
        try:
            wait_for(lambda: lag.lag() == 0, 30, "the stream acknowledged")
        finally:
            lag.close()
    finally:
        proc.send_signal(signal.SIGKILL)
        lines = _read_until(proc, lambda ls: False, 10)
        proc.wait(30)

    with open_store(f"sqlite:///{home}/lmrec.db") as store:
        stored = list(store.events())
    assert len(stored) == N_EVENTS, f"{len(stored)} events stored for {N_EVENTS} published"
    assert sorted(e.item_id for e in stored) == sorted(f"i{i}" for i in range(N_EVENTS))
    # and an engine opened on that store counts each once
    engine = open_engine(home)
    try:
        assert engine.stats()["n_events"] == N_EVENTS
    finally:
        engine.close()


if __name__ == "__main__":
    consumer_child(sys.argv[1], sys.argv[2], int(sys.argv[3]))
