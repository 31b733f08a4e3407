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

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

EVENT_KINDS = ("view", "click", "cart", "purchase", "rating", "impression")
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

    def count_events(self) -> int: ...
    def last_seq(self) -> int: ...

    # items
    def upsert_items(self, items: Sequence[ItemRecord]) -> None: ...
    def get_item(self, item_id: str) -> ItemRecord | None: ...
    def delete_item(self, item_id: str) -> bool:
        """Remove the item from the catalog; True when it existed."""
        ...

    def items(self) -> Iterator[ItemRecord]: ...
    def count_items(self) -> int: ...

    # users
    def upsert_user(self, user: UserRecord) -> None: ...
    def get_user(self, user_id: str) -> UserRecord | None: ...

    # API keys
    def add_api_key(self, key: ApiKeyRecord) -> None: ...
    def get_api_key(self, key_id: str) -> ApiKeyRecord | None: ...
    def api_keys(self) -> list[ApiKeyRecord]: ...
    def revoke_api_key(self, key_id: str) -> bool: ...

    # served rankings
    def log_ranking(self, ranking: RankingRecord) -> None: ...
    def get_ranking(self, ranking_id: str) -> RankingRecord | None: ...

    def close(self) -> None: ...
