"""NATS JetStream: a durable pull consumer with explicit acks.

nats-py is asyncio; the consumer is a thread. The broker runs its own event loop in a helper
thread and the sync methods wait on coroutines submitted to it.
"""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

from lmrec.streams.base import BrokerUnavailable, Message, StreamURL

__all__ = ["NatsBroker"]


def _stream_name(subject: str) -> str:
    """A JetStream stream name for a subject (names may not hold dots): lmrec.events -> LMREC_EVENTS."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", subject).upper()


class NatsBroker:
    """One subject on JetStream. Options: `stream` (default from the subject), `durable`
    (consumer name, default "lmrec"), `ack_wait` (seconds before an unacked message is
    redelivered, default 30), `dlq` (dead-letter subject, default `<subject>.dlq`), `create`
    ("false": do not create missing streams)."""

    def __init__(self, target: StreamURL, *, connect_timeout_s: float = 2.0) -> None:
        try:
            import nats  # noqa: F401
        except ImportError:
            raise ImportError("NATS streams need nats-py: pip install 'lmrec[stream]'") from None
        self.target = target
        o = target.options
        self.stream = o.get("stream") or _stream_name(target.name)
        self.dlq_stream = f"{self.stream}_DLQ"
        self.durable = o.get("durable") or "lmrec"
        self.ack_wait = float(o.get("ack_wait", 30))
        self.create = o.get("create", "true").lower() != "false"
        self.connect_timeout_s = connect_timeout_s
        self._nc: Any = None
        self._js: Any = None
        self._sub: Any = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="lmrec-nats", daemon=True)
        self._thread.start()

    def _run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- connection -------------------------------------------------------------------------
    def connect(self) -> None:
        try:
            self._run(self._connect(), timeout=self.connect_timeout_s * 3 + 10)
        except BrokerUnavailable:
            raise
        except Exception as e:  # noqa: BLE001 - nats-py raises many kinds for "cannot reach it"
            self._run(self._drop())
            raise BrokerUnavailable(f"cannot reach NATS at {self.target}: {_reason(e)}") from None

    async def _connect(self) -> None:
        import nats
        from nats.js.api import RetentionPolicy, StreamConfig
        from nats.js.errors import NotFoundError

        await self._drop()

        async def note(e: Any = None) -> None:   # nats-py prints errors otherwise; the consumer logs them
            if isinstance(e, BaseException):
                self._last_error = e

        async def quiet(*_: Any) -> None:
            return None

        self._last_error: BaseException | None = None
        try:
            # no reconnection inside nats-py (max_reconnect_attempts=0 would retry forever): the
            # consumer reconnects with its own back-off and reports each failure
            self._nc = await nats.connect(self.target.url, connect_timeout=self.connect_timeout_s,
                                          allow_reconnect=False, max_reconnect_attempts=1, reconnect_time_wait=0.1,
                                          error_cb=note, disconnected_cb=quiet, closed_cb=quiet)
        except Exception as e:  # noqa: BLE001 - "no servers available": say why
            raise BrokerUnavailable(f"cannot reach NATS at {self.target}: {_reason(self._last_error or e)}") from None
        self._js = self._nc.jetstream()
        for stream, subject in ((self.stream, self.target.name), (self.dlq_stream, self.target.dead_letter)):
            try:
                await self._js.stream_info(stream)
            except NotFoundError:
                if not self.create:
                    raise BrokerUnavailable(f"JetStream has no stream {stream!r} (create it, or drop create=false)")
                await self._js.add_stream(StreamConfig(name=stream, subjects=[subject],
                                                       retention=RetentionPolicy.LIMITS))

    async def _subscribe(self) -> Any:
        if self._sub is None:
            from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

            config = ConsumerConfig(durable_name=self.durable, ack_policy=AckPolicy.EXPLICIT,
                                    deliver_policy=DeliverPolicy.ALL, ack_wait=self.ack_wait, max_deliver=-1)
            self._sub = await self._js.pull_subscribe(self.target.name, durable=self.durable, stream=self.stream,
                                                      config=config)
        return self._sub

    async def _drop(self) -> None:
        nc, self._nc, self._js, self._sub = self._nc, None, None, None
        if nc is not None:
            try:
                await nc.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass

    def _check(self) -> None:
        if self._nc is None or not self._nc.is_connected:
            raise BrokerUnavailable(f"not connected to NATS at {self.target}")

    # -- consuming ---------------------------------------------------------------------------
    def fetch(self, n: int, timeout_s: float) -> list[Message]:
        self._check()
        try:
            return self._run(self._fetch(n, timeout_s), timeout=timeout_s + 10)
        except BrokerUnavailable:
            raise
        except Exception as e:  # noqa: BLE001
            raise BrokerUnavailable(f"NATS at {self.target}: {_reason(e)}") from None

    async def _fetch(self, n: int, timeout_s: float) -> list[Message]:
        import nats.errors

        sub = await self._subscribe()
        try:
            msgs = await sub.fetch(n, timeout=timeout_s)
        except (nats.errors.TimeoutError, asyncio.TimeoutError):   # nothing arrived within the timeout
            return []
        out = []
        for m in msgs:
            meta = m.metadata
            out.append(Message(m.data, f"{self.stream}:{meta.sequence.stream}", meta.num_delivered > 1, m))
        return out

    def ack(self, messages: list[Message]) -> None:
        if messages:
            self._check()
            try:
                self._run(self._ack(messages))
            except Exception as e:  # noqa: BLE001
                raise BrokerUnavailable(f"NATS at {self.target}: {_reason(e)}") from None

    async def _ack(self, messages: list[Message]) -> None:
        for m in messages:
            await m.handle.ack()
        await self._nc.flush()

    def nak(self, messages: list[Message]) -> None:
        """Ask for these messages again (their ingest failed), without waiting for ack_wait."""
        if messages and self._nc is not None and self._nc.is_connected:
            try:
                self._run(self._nak(messages))
            except Exception:  # noqa: BLE001 - unacked messages come back after ack_wait anyway
                pass

    async def _nak(self, messages: list[Message]) -> None:
        for m in messages:
            await m.handle.nak(delay=1.0)
        await self._nc.flush()

    def dead_letter(self, message: Message, reason: str, detail: str) -> None:
        self._check()
        headers = {"Lmrec-Reason": reason, "Lmrec-Detail": detail[:500], "Lmrec-Source": message.position}
        try:
            self._run(self._dead_letter(message, headers))
        except Exception as e:  # noqa: BLE001
            raise BrokerUnavailable(f"NATS at {self.target}: {_reason(e)}") from None

    async def _dead_letter(self, message: Message, headers: dict[str, str]) -> None:
        await self._js.publish(self.target.dead_letter, message.data, headers=headers)   # acked by JetStream
        await message.handle.ack()
        await self._nc.flush()

    def lag(self) -> int | None:
        """Messages not yet acknowledged by this durable consumer (pending + in flight)."""
        if self._nc is None or not self._nc.is_connected:
            return None
        try:
            info = self._run(self._js.consumer_info(self.stream, self.durable), timeout=5)
        except Exception:  # noqa: BLE001 - lag is informative
            return None
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    # -- producing ---------------------------------------------------------------------------
    def publish(self, payloads: list[tuple[str, bytes]]) -> None:
        """Publish (event id, body) pairs; each waits for JetStream's ack. The event id is also
        the Nats-Msg-Id, so JetStream drops a re-publish within its duplicate window."""
        self._check()
        try:
            self._run(self._publish(payloads), timeout=60 + len(payloads) * 0.05)
        except Exception as e:  # noqa: BLE001
            raise BrokerUnavailable(f"NATS at {self.target}: {_reason(e)}") from None

    async def _publish(self, payloads: list[tuple[str, bytes]]) -> None:
        futures = [await self._js.publish_async(self.target.name, body, headers={"Nats-Msg-Id": eid})
                   for eid, body in payloads]
        await asyncio.gather(*futures)

    def close(self) -> None:
        try:
            self._run(self._drop(), timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


def _reason(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return f"{type(e).__name__}: {text}" if type(e).__name__ not in text else text
