"""Redis Streams with a consumer group.

A consumer first re-reads the entries it was given but never acknowledged (its own pending
list: what it had in hand when it was killed), then claims entries another consumer left
pending for longer than `claim_idle_ms` (a consumer that is gone), then reads new entries.
"""

from __future__ import annotations

import socket
from typing import Any

from lmrec.streams.base import BrokerUnavailable, Message, StreamURL

__all__ = ["RedisBroker"]

FIELD = b"event"


class RedisBroker:
    """One stream key. Options: `group` (default "lmrec"), `consumer` (default the host name),
    `claim_idle_ms` (default 30000), `dlq` (dead-letter stream, default `<key>.dlq`), `maxlen`
    (approximate cap on the stream's length when publishing)."""

    def __init__(self, target: StreamURL, *, connect_timeout_s: float = 2.0) -> None:
        try:
            import redis  # noqa: F401
        except ImportError:
            raise ImportError("Redis streams need redis-py: pip install 'lmrec[serve]'") from None
        self.target = target
        o = target.options
        self.key = target.name
        self.group = o.get("group") or "lmrec"
        self.consumer = o.get("consumer") or socket.gethostname()
        self.claim_idle_ms = int(float(o.get("claim_idle_ms", 30000)))
        self.maxlen = int(float(o["maxlen"])) if "maxlen" in o else None
        self.connect_timeout_s = connect_timeout_s
        self._r: Any = None
        self._own_pending = True       # after a (re)connect, first re-read what this consumer holds

    def connect(self) -> None:
        import redis

        self.close()
        try:
            r = redis.Redis.from_url(self.target.url, socket_connect_timeout=self.connect_timeout_s,
                                     socket_timeout=max(10.0, self.connect_timeout_s))
            r.ping()
            try:
                r.xgroup_create(self.key, self.group, id="0", mkstream=True)
            except redis.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise
        except redis.RedisError as e:
            raise BrokerUnavailable(f"cannot reach Redis at {self.target}: {type(e).__name__}: {e}") from None
        self._r = r
        self._own_pending = True

    def _client(self) -> Any:
        if self._r is None:
            raise BrokerUnavailable(f"not connected to Redis at {self.target}")
        return self._r

    def fetch(self, n: int, timeout_s: float) -> list[Message]:
        import redis

        r = self._client()
        try:
            if self._own_pending:
                entries = _entries(r.xreadgroup(self.group, self.consumer, {self.key: "0"}, count=n))
                if entries:
                    return [self._message(e, redelivered=True) for e in entries]
                self._own_pending = False
            claimed = r.xautoclaim(self.key, self.group, self.consumer, self.claim_idle_ms, "0-0", count=n)
            entries = [e for e in claimed[1] if e and e[1] is not None]
            if entries:
                return [self._message(e, redelivered=True) for e in entries]
            got = r.xreadgroup(self.group, self.consumer, {self.key: ">"}, count=n,
                               block=max(1, int(timeout_s * 1000)))
            return [self._message(e, redelivered=False) for e in _entries(got)]
        except redis.RedisError as e:
            self._r = None
            raise BrokerUnavailable(f"Redis at {self.target}: {type(e).__name__}: {e}") from None

    def _message(self, entry: Any, *, redelivered: bool) -> Message:
        entry_id, fields = entry
        eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        data = fields.get(FIELD, fields.get(b"data", b"")) if fields else b""
        return Message(data if isinstance(data, bytes) else str(data).encode(), f"{self.key}:{eid}", redelivered,
                       eid)

    def ack(self, messages: list[Message]) -> None:
        import redis

        if not messages:
            return
        try:
            self._client().xack(self.key, self.group, *[m.handle for m in messages])
        except redis.RedisError as e:
            self._r = None
            raise BrokerUnavailable(f"Redis at {self.target}: {type(e).__name__}: {e}") from None

    def nak(self, messages: list[Message]) -> None:
        """Their ingest failed: the next fetch re-reads this consumer's pending entries."""
        if messages:
            self._own_pending = True

    def dead_letter(self, message: Message, reason: str, detail: str) -> None:
        import redis

        try:
            pipe = self._client().pipeline(transaction=True)
            pipe.xadd(self.target.dead_letter, {FIELD: message.data, b"reason": reason.encode(),
                                                b"detail": detail[:500].encode(), b"source": message.position.encode()})
            pipe.xack(self.key, self.group, message.handle)
            pipe.execute()
        except redis.RedisError as e:
            self._r = None
            raise BrokerUnavailable(f"Redis at {self.target}: {type(e).__name__}: {e}") from None

    def lag(self) -> int | None:
        """Entries of the stream this group has not acknowledged: never delivered + pending."""
        if self._r is None:
            return None
        try:
            for g in self._r.xinfo_groups(self.key):
                name = g.get("name")
                if (name.decode() if isinstance(name, bytes) else name) == self.group:
                    lag = g.get("lag")
                    if lag is None:   # Redis cannot tell (entries were deleted): count what is after the group
                        last = g.get("last-delivered-id")
                        lag = len(self._r.xrange(self.key, min=f"({_text(last)}", count=100_000))
                    return int(lag) + int(g.get("pending") or 0)
        except Exception:  # noqa: BLE001 - lag is informative
            return None
        return None

    def publish(self, payloads: list[tuple[str, bytes]]) -> None:
        import redis

        try:
            pipe = self._client().pipeline(transaction=False)
            for _, body in payloads:
                pipe.xadd(self.key, {FIELD: body}, maxlen=self.maxlen, approximate=True)
            pipe.execute()
        except redis.RedisError as e:
            self._r = None
            raise BrokerUnavailable(f"Redis at {self.target}: {type(e).__name__}: {e}") from None

    def close(self) -> None:
        r, self._r = self._r, None
        if r is not None:
            try:
                r.close()
            except Exception:  # noqa: BLE001
                pass


def _entries(reply: Any) -> list[Any]:
    """The entries of an XREADGROUP reply for one stream (RESP2 list or RESP3 dict)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [e for v in reply.values() for e in (v[0] if v and isinstance(v[0], list) else v)]
    return [e for _, entries in reply for e in entries if e and e[1] is not None]


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
