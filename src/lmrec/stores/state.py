"""Hot per-user state for the real-time path: each user's most recent interactions.

The record store's event log is the durable truth; this is the fast, bounded copy the
online recommenders read on every request ("what did this user just do?"). It can be
rebuilt from the log, so it trades durability for speed:

- `MemoryUserState`: the embedded default, one bounded deque per user in this process
  (least-recently-active users are evicted past `max_users`);
- `RedisUserState`: `redis://host:port/db`, shared by every server process; one Redis list
  per user (LPUSH + LTRIM, newest first), batches sent in one pipeline round trip, idle users
  optionally expired after `ttl_s`.

Entries come back oldest first, most recent last, in the order they were pushed (the
event log's commit order), not re-sorted by the client's timestamp.

Example:
    >>> state = open_user_state(None)
    >>> state.push("u1", "i1", "view", 1.0, 100.0, maxlen=2)
    >>> state.push("u1", "i2", "click", 1.0, 101.0, maxlen=2)
    >>> state.push("u1", "i3", "view", 1.0, 102.0, maxlen=2)
    >>> [e.item_id for e in state.history("u1", 10)]
    ['i2', 'i3']
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from lmrec.stores.records import EVENT_KINDS
from lmrec.stores.sql import redact_url

__all__ = ["HistoryEntry", "StateEvent", "UserStateStore", "MemoryUserState", "RedisUserState", "open_user_state",
           "DEFAULT_MAXLEN"]

#: history length kept per user when the caller does not say
DEFAULT_MAXLEN = 200


class HistoryEntry(NamedTuple):
    """One remembered interaction (a plain tuple: item_id, kind, value, timestamp)."""

    item_id: str
    kind: str
    value: float
    timestamp: float


class StateEvent(NamedTuple):
    """One interaction to push in a batch."""

    user_id: str
    item_id: str
    kind: str
    value: float
    timestamp: float


@runtime_checkable
class UserStateStore(Protocol):
    """Bounded recent history per user."""

    url: str

    def push(self, user_id: str, item_id: str, kind: str, value: float, timestamp: float,
             maxlen: int = DEFAULT_MAXLEN) -> None:
        """Append one interaction to the user's history, keeping its last `maxlen` entries."""
        ...

    def push_many(self, events: Iterable[StateEvent | Sequence[Any]], maxlen: int = DEFAULT_MAXLEN) -> None:
        """`push` for each (user_id, item_id, kind, value, timestamp), in order, in one go."""
        ...

    def history(self, user_id: str, n: int) -> list[HistoryEntry]:
        """The user's last `n` interactions, most recent last ([] for an unknown user)."""
        ...

    def forget(self, user_id: str) -> bool:
        """Drop the user's history (erasure requests, tests); True when there was one."""
        ...

    def close(self) -> None: ...


def _check(user_id: object, item_id: object, kind: object, value: object, timestamp: object,
           where: str = "event") -> StateEvent:
    """The validated event; ValueError naming the bad field otherwise."""
    for name, v in (("user_id", user_id), ("item_id", item_id)):
        if not isinstance(v, str) or not v.strip():
            raise ValueError(f"{where}.{name}: must be a non-empty string, got {v!r}")
    if kind not in EVENT_KINDS:
        raise ValueError(f"{where}.kind: unknown event kind {kind!r}; expected one of {', '.join(EVENT_KINDS)}")
    nums = []
    for name, v in (("value", value), ("timestamp", timestamp)):
        try:
            x = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            x = math.nan
        if isinstance(v, (bool, str)) or not math.isfinite(x):
            raise ValueError(f"{where}.{name}: must be a finite number, got {v!r}")
        nums.append(x)
    return StateEvent(user_id, item_id, kind, nums[0], nums[1])  # type: ignore[arg-type]


def _batch(events: Iterable[StateEvent | Sequence[Any]]) -> list[StateEvent]:
    out = []
    for i, e in enumerate(events):
        if isinstance(e, str) or not isinstance(e, Sequence) or len(e) != 5:
            raise ValueError(f"events[{i}]: expected (user_id, item_id, kind, value, timestamp), got {e!r}")
        out.append(_check(*e, where=f"events[{i}]"))
    return out


def _check_maxlen(maxlen: int) -> int:
    if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1:
        raise ValueError(f"maxlen: must be a positive integer, got {maxlen!r}")
    return maxlen


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n: must be a non-negative integer, got {n!r}")
    return n


class MemoryUserState:
    """Per-user deques in this process, guarded by one lock (the FastAPI thread pool calls
    it concurrently). Past `max_users` users the least recently active one is evicted."""

    url = "memory://"

    def __init__(self, max_users: int = 1_000_000) -> None:
        if max_users < 1:
            raise ValueError(f"max_users: must be >= 1, got {max_users}")
        self.max_users = max_users
        self._users: OrderedDict[str, deque[HistoryEntry]] = OrderedDict()
        self._lock = threading.Lock()

    def push(self, user_id: str, item_id: str, kind: str, value: float, timestamp: float,
             maxlen: int = DEFAULT_MAXLEN) -> None:
        self.push_many([(user_id, item_id, kind, value, timestamp)], maxlen)

    def push_many(self, events: Iterable[StateEvent | Sequence[Any]], maxlen: int = DEFAULT_MAXLEN) -> None:
        batch, maxlen = _batch(events), _check_maxlen(maxlen)
        with self._lock:
            for e in batch:
                hist = self._users.get(e.user_id)
                if hist is None or hist.maxlen != maxlen:
                    hist = deque(hist or (), maxlen=maxlen)
                    self._users[e.user_id] = hist
                hist.append(HistoryEntry(e.item_id, e.kind, e.value, e.timestamp))
                self._users.move_to_end(e.user_id)
            while len(self._users) > self.max_users:
                self._users.popitem(last=False)

    def history(self, user_id: str, n: int) -> list[HistoryEntry]:
        n = _check_n(n)
        with self._lock:
            hist = self._users.get(user_id)
            if not hist or n == 0:
                return []
            return list(hist)[-n:]

    def forget(self, user_id: str) -> bool:
        with self._lock:
            return self._users.pop(user_id, None) is not None

    def __len__(self) -> int:
        """Users with a history."""
        return len(self._users)

    def close(self) -> None:
        with self._lock:
            self._users.clear()


class RedisUserState:
    """One Redis list per user under `prefix`, newest entry first, trimmed to `maxlen` on
    every push. Entries are compact JSON arrays. `ttl_s` expires users idle that long.

    URL: `redis://[:password@]host:port/db[?prefix=NAME&ttl_s=SECONDS]`; other query
    parameters go to redis-py.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str | None = None,
                 ttl_s: float | None = None, socket_timeout_s: float = 5.0) -> None:
        try:
            import redis
        except ImportError:
            raise ImportError("RedisUserState needs redis-py: pip install 'lmrec[serve]'") from None
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"not a redis URL: {redact_url(url)!r}")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        self.prefix = prefix if prefix is not None else query.pop("prefix", "lmrec:hist:")
        query.pop("prefix", None)
        ttl = ttl_s if ttl_s is not None else query.pop("ttl_s", None)
        query.pop("ttl_s", None)
        self.ttl_s = float(ttl) if ttl is not None else None
        if self.ttl_s is not None and self.ttl_s <= 0:
            raise ValueError(f"ttl_s: must be > 0, got {ttl}")
        self.url = url
        self._client = redis.Redis.from_url(urlunsplit(parts._replace(query=urlencode(query))),
                                            socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s)

    def _key(self, user_id: str) -> str:
        return f"{self.prefix}{user_id}"

    def push(self, user_id: str, item_id: str, kind: str, value: float, timestamp: float,
             maxlen: int = DEFAULT_MAXLEN) -> None:
        self.push_many([(user_id, item_id, kind, value, timestamp)], maxlen)

    def push_many(self, events: Iterable[StateEvent | Sequence[Any]], maxlen: int = DEFAULT_MAXLEN) -> None:
        batch, maxlen = _batch(events), _check_maxlen(maxlen)
        if not batch:
            return
        # MULTI/EXEC: a reader never sees a list between its LPUSH and its LTRIM
        pipe = self._client.pipeline(transaction=True)
        for e in batch:
            key = self._key(e.user_id)
            pipe.lpush(key, json.dumps([e.item_id, e.kind, e.value, e.timestamp], separators=(",", ":")))
            pipe.ltrim(key, 0, maxlen - 1)
            if self.ttl_s is not None:
                pipe.expire(key, max(1, math.ceil(self.ttl_s)))
        pipe.execute()

    def history(self, user_id: str, n: int) -> list[HistoryEntry]:
        if _check_n(n) == 0:
            return []
        raw = self._client.lrange(self._key(user_id), 0, n - 1)
        out = []
        for blob in reversed(raw):
            item_id, kind, value, ts = json.loads(blob)
            out.append(HistoryEntry(item_id, kind, float(value), float(ts)))
        return out

    def forget(self, user_id: str) -> bool:
        return bool(self._client.delete(self._key(user_id)))

    def clear(self) -> int:
        """Delete every history under this store's prefix (tests, re-builds); the number deleted."""
        keys = list(self._client.scan_iter(match=f"{_glob_escape(self.prefix)}*", count=1000))
        return int(self._client.delete(*keys)) if keys else 0

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"RedisUserState({redact_url(self.url)!r}, prefix={self.prefix!r})"


def _glob_escape(text: str) -> str:
    """`text` as a literal in a Redis MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def open_user_state(url: str | None = None, **options: Any) -> UserStateStore:
    """The user-state store for `url`: None or `memory://` (in this process) or
    `redis://host:port/db[?prefix=...]`."""
    if url is None or url == "memory://":
        return MemoryUserState(**options)
    if not isinstance(url, str):
        raise ValueError(f"user-state URL must be a string or None, got {url!r}")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("redis", "rediss", "unix"):
        return RedisUserState(url, **options)
    raise ValueError(f"unsupported user-state URL {redact_url(url)!r}: supported are memory:// (or None) and redis://")
