"""The service's durable records and the `RecordStore` protocol its backends implement.

A record store holds what a running service must never lose: the event log, the item catalog,
user attributes, API keys (hashed) and the rankings it served (so later clicks join them).
Backends are chosen by URL with `open_store(url)` (in `lmrec.stores.sql`):

- `sqlite:///path/to/lmrec.db` (embedded default, WAL), `sqlite://` (in memory, tests)
- `postgresql://user@host:port/db` (scale-out; psycopg 3)

Ids are the platform's own strings. Times are float seconds since the epoch (UTC).
Every write method commits before it returns: an acknowledged write survives a crash.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from lmrec.types import EventKind  # noqa: E402  (one definition of the event kinds)

EVENT_KINDS = EventKind.names()
SCOPES = ("read", "write", "admin")


@dataclass(frozen=True)
class EventRecord:
    user_id: str
    item_id: str
    kind: str = "view"                # one of EVENT_KINDS
    value: float = 1.0                # rating value, quantity, or 1
    timestamp: float = 0.0            # event time (client's), epoch seconds
    ranking_id: str | None = None     # the ranking this event answers (clicks on a served list)
    seq: int | None = None            # assigned by the store: strictly increasing commit order


@dataclass(frozen=True)
class ItemRecord:
    item_id: str
    title: str = ""
    text: str = ""                    # description and other free text
    categories: tuple[str, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)   # brand, price, language, ...
    available: bool = True
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class UserRecord:
    user_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    updated_at: float = 0.0


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str                        # public prefix of the key, used to look it up
    name: str
    scopes: tuple[str, ...]            # subset of SCOPES
    key_hash: str                      # hash of the secret; the secret itself is never stored
    created_at: float = 0.0
    revoked: bool = False


@dataclass(frozen=True)
class RankingRecord:
    ranking_id: str
    user_id: str | None
    endpoint: str                      # "recommend" | "search" | "similar"
    item_ids: tuple[str, ...]
    created_at: float = 0.0
    context: dict[str, Any] = field(default_factory=dict)   # model version, query hash, ...


@runtime_checkable
class RecordStore(Protocol):
    """Durable store for events, items, users, API keys and served rankings."""

    url: str

    # events: append-only log
    def append_events(self, events: Sequence[EventRecord]) -> list[int]:
        """Commit the events in one transaction; return their seq numbers (in order)."""
        ...

    def events(self, *, after_seq: int = 0, user_id: str | None = None,
               limit: int | None = None) -> Iterator[EventRecord]:
        """Events with seq > after_seq in seq order (optionally one user's, at most `limit`)."""
        ...

    def count_events(self, user_id: str | None = None) -> int:
        """Events in the log (one user's when `user_id` is given)."""
        ...

    def latest_events(self, user_id: str, *, before_seq: int | None = None, limit: int = 100) -> list[EventRecord]:
        """One user's events with seq < before_seq (all when None), newest first, at most `limit`."""
        ...

    def last_seq(self) -> int:
        """The highest committed seq, 0 for an empty log."""
        ...

    # items
    def upsert_items(self, items: Sequence[ItemRecord]) -> None:
        """Insert or replace the items in one transaction. A live item keeps its first
        `created_at`; a deleted one that is upserted again comes back as new."""
        ...

    def get_item(self, item_id: str) -> ItemRecord | None: ...
    def delete_item(self, item_id: str) -> bool:
        """Remove the item from the catalog; True when it existed."""
        ...

    def items(self) -> Iterator[ItemRecord]:
        """Live items in item_id order (byte order of the UTF-8 ids)."""
        ...

    def count_items(self) -> int: ...
    def item_page(self, *, after: str = "", limit: int = 100) -> list[ItemRecord]:
        """At most `limit` live items with item_id > `after`, in item_id order (a cursor page)."""
        ...

    # users
    def upsert_user(self, user: UserRecord) -> None: ...
    def get_user(self, user_id: str) -> UserRecord | None: ...
    def delete_user(self, user_id: str) -> dict[str, int]:
        """Erase the user's events, record and logged rankings; rows removed per table."""
        ...
    def user_page(self, *, after: str = "", limit: int = 100) -> list[tuple[str, UserRecord | None]]:
        """At most `limit` users (with events or a stored record) with user_id > `after`, in
        user_id order, each with its record (None for a user known only from events)."""
        ...

    # API keys
    def add_api_key(self, key: ApiKeyRecord) -> None: ...
    def get_api_key(self, key_id: str) -> ApiKeyRecord | None: ...
    def api_keys(self) -> list[ApiKeyRecord]: ...
    def revoke_api_key(self, key_id: str) -> bool:
        """Mark the key revoked; True when a live key was revoked, False when unknown or
        already revoked."""
        ...

    # served rankings
    def log_ranking(self, ranking: RankingRecord) -> None:
        """Store a served ranking; a ranking_id already stored is a ValueError."""
        ...

    def get_ranking(self, ranking_id: str) -> RankingRecord | None: ...

    def rankings(self, *, since: float = 0.0) -> list[RankingRecord]:
        """Rankings served at `since` (epoch seconds) or later, oldest first."""
        ...

    def close(self) -> None: ...


# Validation shared by every backend: the API validates requests too, but a store must never
# accept a record it could not give back intact. Each error names the offending field.

def _check_id(value: object, field_name: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field_name}: must be a non-empty string, got {value!r}")
    _check_text(value, field_name)


def _check_number(value: object, field_name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{field_name}: must be a finite number, got {value!r}")


def _check_strings(values: object, field_name: str, *, allowed: Sequence[str] | None = None) -> None:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise ValueError(f"{field_name}: must be a sequence of strings, got {values!r}")
    for i, v in enumerate(values):
        _check_id(v, f"{field_name}[{i}]")
        if allowed is not None and v not in allowed:
            raise ValueError(f"{field_name}[{i}]: unknown value {v!r}; expected one of {', '.join(allowed)}")


def _check_mapping(value: object, field_name: str) -> None:
    if not isinstance(value, Mapping):
        raise ValueError(f"{field_name}: must be a mapping, got {type(value).__name__}")
    _check_json(value, field_name)


def _check_text(value: object, field_name: str) -> None:
    # PostgreSQL cannot store U+0000 in text or JSON; SQLite can. Every backend refuses it, so
    # what is valid does not depend on the backend.
    if isinstance(value, str) and "\x00" in value:
        raise ValueError(f"{field_name}: must not contain NUL characters (U+0000)")


def _check_json(value: object, field_name: str, depth: int = 0) -> None:
    """A value stored as JSON: finite numbers, no NUL in strings or keys, bounded nesting."""
    if depth > 64:
        raise ValueError(f"{field_name}: nested deeper than 64 levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{field_name}: must be a finite number, got {value!r}")
    if isinstance(value, str):
        _check_text(value, field_name)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _check_text(str(k), f"{field_name} (a key)")
            _check_json(v, f"{field_name}.{k}", depth + 1)
    elif isinstance(value, (list, tuple)):
        for j, v in enumerate(value):
            _check_json(v, f"{field_name}[{j}]", depth + 1)


def check_event(event: EventRecord, where: str = "event") -> None:
    """Raise ValueError naming the field (e.g. "events[3].kind") when `event` is malformed."""
    if not isinstance(event, EventRecord):
        raise ValueError(f"{where}: expected an EventRecord, got {type(event).__name__}")
    _check_id(event.user_id, f"{where}.user_id")
    _check_id(event.item_id, f"{where}.item_id")
    if event.kind not in EVENT_KINDS:
        raise ValueError(f"{where}.kind: unknown event kind {event.kind!r}; expected one of {', '.join(EVENT_KINDS)}")
    _check_number(event.value, f"{where}.value")
    _check_number(event.timestamp, f"{where}.timestamp")
    if event.ranking_id is not None:
        _check_id(event.ranking_id, f"{where}.ranking_id")


def check_item(item: ItemRecord, where: str = "item") -> None:
    """Raise ValueError naming the field when `item` is malformed."""
    if not isinstance(item, ItemRecord):
        raise ValueError(f"{where}: expected an ItemRecord, got {type(item).__name__}")
    _check_id(item.item_id, f"{where}.item_id")
    for name in ("title", "text"):
        if not isinstance(getattr(item, name), str):
            raise ValueError(f"{where}.{name}: must be a string, got {getattr(item, name)!r}")
        _check_text(getattr(item, name), f"{where}.{name}")
    _check_strings(item.categories, f"{where}.categories")
    _check_mapping(item.attributes, f"{where}.attributes")
    if not isinstance(item.available, bool):
        raise ValueError(f"{where}.available: must be a bool, got {item.available!r}")
    _check_number(item.created_at, f"{where}.created_at")
    _check_number(item.updated_at, f"{where}.updated_at")


def check_user(user: UserRecord, where: str = "user") -> None:
    """Raise ValueError naming the field when `user` is malformed."""
    if not isinstance(user, UserRecord):
        raise ValueError(f"{where}: expected a UserRecord, got {type(user).__name__}")
    _check_id(user.user_id, f"{where}.user_id")
    _check_mapping(user.attributes, f"{where}.attributes")
    _check_number(user.updated_at, f"{where}.updated_at")


def check_api_key(key: ApiKeyRecord, where: str = "api_key") -> None:
    """Raise ValueError naming the field when `key` is malformed (scopes must be in SCOPES)."""
    if not isinstance(key, ApiKeyRecord):
        raise ValueError(f"{where}: expected an ApiKeyRecord, got {type(key).__name__}")
    _check_id(key.key_id, f"{where}.key_id")
    if not isinstance(key.name, str):
        raise ValueError(f"{where}.name: must be a string, got {key.name!r}")
    _check_strings(key.scopes, f"{where}.scopes", allowed=SCOPES)
    _check_id(key.key_hash, f"{where}.key_hash")
    _check_number(key.created_at, f"{where}.created_at")
    if not isinstance(key.revoked, bool):
        raise ValueError(f"{where}.revoked: must be a bool, got {key.revoked!r}")


def check_ranking(ranking: RankingRecord, where: str = "ranking") -> None:
    """Raise ValueError naming the field when `ranking` is malformed."""
    if not isinstance(ranking, RankingRecord):
        raise ValueError(f"{where}: expected a RankingRecord, got {type(ranking).__name__}")
    _check_id(ranking.ranking_id, f"{where}.ranking_id")
    if ranking.user_id is not None:
        _check_id(ranking.user_id, f"{where}.user_id")
    _check_id(ranking.endpoint, f"{where}.endpoint")
    _check_strings(ranking.item_ids, f"{where}.item_ids")
    _check_number(ranking.created_at, f"{where}.created_at")
    _check_mapping(ranking.context, f"{where}.context")
