"""What every broker shares: the parsed URL, the message type, the errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit, urlunsplit

__all__ = ["StreamURL", "parse_stream_url", "Message", "Broker", "BadMessage", "BrokerUnavailable", "redact"]

SCHEMES = ("nats", "tls", "redis", "rediss")


class BrokerUnavailable(RuntimeError):
    """The broker cannot be reached (or dropped the connection): retried with back-off."""


class BadMessage(ValueError):
    """A message lmrec cannot ingest; `reason` is a short label (metrics, dead-letter header)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class StreamURL:
    """A parsed stream URL: `kind` is "nats" or "redis"; `name` names the stream in metrics."""

    kind: str
    url: str                    # the broker's own URL (no path/query of ours)
    name: str                   # NATS subject or Redis stream key
    options: dict[str, str] = field(default_factory=dict)

    @property
    def dead_letter(self) -> str:
        return self.options.get("dlq") or f"{self.name}.dlq"

    def __str__(self) -> str:
        return f"{redact(self.url)}/{self.name}"


_NAME = re.compile(r"^[A-Za-z0-9_\-.:]+$")
_OPTIONS = {"nats": {"stream", "durable", "ack_wait", "dlq", "create"},
            "redis": {"stream", "group", "consumer", "claim_idle_ms", "dlq", "maxlen"}}


def parse_stream_url(url: str) -> StreamURL:
    """`nats://host:port/SUBJECT?...` or `redis://host:port/DB?stream=KEY&...`; ValueError naming
    what is wrong otherwise."""
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"not a stream URL: {url!r} (expected nats://host:4222/SUBJECT or "
                         f"redis://host:6379/0?stream=KEY)")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported stream URL scheme {scheme!r} in {redact(url)}: use nats:// or redis://")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    kind = "nats" if scheme in ("nats", "tls") else "redis"
    unknown = sorted(set(query) - _OPTIONS[kind]) if kind == "nats" else []
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} in {redact(url)}; known: {sorted(_OPTIONS[kind])}")
    if kind == "nats":
        name = parts.path.strip("/")
        if not name:
            raise ValueError(f"{redact(url)}: name the subject, e.g. nats://127.0.0.1:4222/lmrec.events")
        broker = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        options = query
    else:
        name = query.pop("stream", "")
        if not name:
            raise ValueError(f"{redact(url)}: name the stream key, e.g. redis://127.0.0.1:6379/0?stream=lmrec.events")
        options = {k: query.pop(k) for k in list(query) if k in _OPTIONS["redis"]}
        # what remains (e.g. socket_timeout) goes to redis-py
        from urllib.parse import urlencode

        broker = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
    if not _NAME.match(name):
        raise ValueError(f"{redact(url)}: stream name {name!r} may hold letters, digits and _-.: only")
    for key in ("ack_wait", "claim_idle_ms", "maxlen"):
        if key in options:
            try:
                if float(options[key]) <= 0:
                    raise ValueError
            except ValueError:
                raise ValueError(f"{redact(url)}: {key} must be a positive number, got {options[key]!r}") from None
    return StreamURL(kind, broker, name, options)


def redact(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


@dataclass
class Message:
    """One delivered message: its payload, where it came from, and the broker's handle to ack it."""

    data: bytes
    position: str               # stream sequence (NATS) or entry id (Redis): the fallback event id
    redelivered: bool = False
    handle: Any = None


class Broker(Protocol):
    """The sync interface the consumer drives (one thread)."""

    target: StreamURL

    def connect(self) -> None: ...
    def fetch(self, n: int, timeout_s: float) -> list[Message]: ...
    def ack(self, messages: list[Message]) -> None: ...
    def nak(self, messages: list[Message]) -> None: ...
    def dead_letter(self, message: Message, reason: str, detail: str) -> None: ...
    def publish(self, payloads: list[tuple[str, bytes]]) -> None: ...
    def lag(self) -> int | None: ...
    def close(self) -> None: ...
