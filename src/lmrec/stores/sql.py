"""SQL record stores: SQLite (the embedded default) and PostgreSQL (scale-out), chosen by URL.

Both backends share one schema and one set of statements (written once, rendered per SQL
dialect), so they behave the same way:

- events: an append-only log; `seq` is assigned in commit order (a reader tailing
  `events(after_seq=...)` never misses an event that commits later with a lower seq);
- items: soft delete (`deleted` flag), so a delete is one cheap update and a re-upsert
  brings the item back; ids sort in byte order (`COLLATE "C"` on PostgreSQL);
- JSON columns (TEXT on SQLite, JSONB on PostgreSQL) for attributes, categories, scopes,
  ranked item ids and ranking context; NaN / infinity are rejected before writing;
- user attributes sealed at rest (Fernet) when LMREC_ENCRYPTION_KEY is set
  (`lmrec.privacy.crypto`; `reencrypt_users()` after a key rotation);
- a `schema_version` table, checked on open, so a database written by a newer lmrec is
  refused rather than misread.

Every write commits before it returns, and one lock serialises the single connection, so a
store can be shared by the threads of a FastAPI server. Readers page through large tables
(`PAGE_SIZE` rows per query) and release the lock between pages, so a slow consumer of
`events()` or `items()` never blocks writers.

Example:
    >>> store = open_store("sqlite://")
    >>> store.append_events([EventRecord("u1", "i1", "click"), EventRecord("u2", "i1")])
    [1, 2]
    >>> [e.user_id for e in store.events(after_seq=1)]
    ['u2']
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from lmrec.stores.records import (ApiKeyRecord, EventRecord, ItemRecord, RankingRecord, RecordStore, UserRecord,
                                  check_api_key, check_event, check_item, check_ranking, check_user)

__all__ = ["open_store", "redact_url", "SQLStore", "SQLiteStore", "PostgresStore", "SCHEMA_VERSION",
           "SUPPORTED_SCHEMES", "PAGE_SIZE"]

SCHEMA_VERSION = 1
SUPPORTED_SCHEMES = ("sqlite://", "postgresql://")
#: rows fetched per query when iterating events or items
PAGE_SIZE = 1000

# {serial}: the event seq column; {float}/{bool}/{json}: column types; {C}: byte-order collation.
# user/item ids may not be empty even if a caller skips the Python-side checks.
_DDL = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq {serial},
    user_id TEXT{C} NOT NULL CHECK (user_id <> ''),
    item_id TEXT{C} NOT NULL CHECK (item_id <> ''),
    kind TEXT NOT NULL,
    value {float} NOT NULL,
    ts {float} NOT NULL,
    ranking_id TEXT
);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id, seq);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT{C} PRIMARY KEY CHECK (item_id <> ''),
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    categories {json} NOT NULL,
    attributes {json} NOT NULL,
    available {bool} NOT NULL,
    created_at {float} NOT NULL,
    updated_at {float} NOT NULL,
    deleted {bool} NOT NULL DEFAULT FALSE
);
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT{C} PRIMARY KEY CHECK (user_id <> ''),
    attributes {json} NOT NULL,
    updated_at {float} NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT{C} PRIMARY KEY CHECK (key_id <> ''),
    name TEXT NOT NULL,
    scopes {json} NOT NULL,
    key_hash TEXT NOT NULL,
    created_at {float} NOT NULL,
    revoked {bool} NOT NULL
);
CREATE TABLE IF NOT EXISTS event_ids (
    event_id TEXT{C} PRIMARY KEY CHECK (event_id <> ''),
    seq BIGINT
);
CREATE TABLE IF NOT EXISTS rankings (
    ranking_id TEXT{C} PRIMARY KEY CHECK (ranking_id <> ''),
    user_id TEXT,
    endpoint TEXT NOT NULL,
    item_ids {json} NOT NULL,
    created_at {float} NOT NULL,
    context {json} NOT NULL
);
CREATE TABLE IF NOT EXISTS changes (
    seq {serial},
    kind TEXT NOT NULL,
    key TEXT{C} NOT NULL,
    origin TEXT NOT NULL,
    at {float} NOT NULL
)
"""

_EVENT_COLS = "seq, user_id, item_id, kind, value, ts, ranking_id"
_ITEM_COLS = "item_id, title, text, categories, attributes, available, created_at, updated_at"

# {p}: a parameter; {j}: a parameter holding JSON text
_STATEMENTS = {
    "events": f"SELECT {_EVENT_COLS} FROM events WHERE seq > {{p}} ORDER BY seq LIMIT {{p}}",
    "user_events": f"SELECT {_EVENT_COLS} FROM events WHERE user_id = {{p}} AND seq > {{p}} ORDER BY seq LIMIT {{p}}",
    "user_events_desc": (f"SELECT {_EVENT_COLS} FROM events WHERE user_id = {{p}} AND seq < {{p}} "
                         "ORDER BY seq DESC LIMIT {p}"),
    "count_user_events": "SELECT COUNT(*) FROM events WHERE user_id = {p}",
    # listing users: those with events (read along the (user_id, seq) index) and those with a record
    "event_users": "SELECT DISTINCT user_id FROM events WHERE user_id > {p} ORDER BY user_id LIMIT {p}",
    "user_records": "SELECT user_id, attributes, updated_at FROM users WHERE user_id > {p} ORDER BY user_id LIMIT {p}",
    "count_events": "SELECT COUNT(*) FROM events",
    # idempotent ingest (an event stream redelivers): the first commit of an id claims it
    "claim_event_id": "INSERT INTO event_ids (event_id, seq) VALUES ({p}, NULL) ON CONFLICT (event_id) DO NOTHING",
    "set_event_id_seq": "UPDATE event_ids SET seq = {p} WHERE event_id = {p}",
    "last_seq": "SELECT COALESCE(MAX(seq), 0) FROM events",
    # a live item keeps its creation time; a deleted one that comes back is new again
    "upsert_item": (
        f"INSERT INTO items ({_ITEM_COLS}, deleted) "
        "VALUES ({p}, {p}, {p}, {j}, {j}, {p}, {p}, {p}, FALSE) "
        "ON CONFLICT (item_id) DO UPDATE SET title = excluded.title, text = excluded.text, "
        "categories = excluded.categories, attributes = excluded.attributes, available = excluded.available, "
        "created_at = CASE WHEN items.deleted THEN excluded.created_at ELSE items.created_at END, "
        "updated_at = excluded.updated_at, deleted = FALSE"),
    "get_item": f"SELECT {_ITEM_COLS} FROM items WHERE item_id = {{p}} AND NOT deleted",
    "delete_item": "UPDATE items SET deleted = TRUE WHERE item_id = {p} AND NOT deleted",
    "items": f"SELECT {_ITEM_COLS} FROM items WHERE NOT deleted AND item_id > {{p}} ORDER BY item_id LIMIT {{p}}",
    "count_items": "SELECT COUNT(*) FROM items WHERE NOT deleted",
    "upsert_user": ("INSERT INTO users (user_id, attributes, updated_at) VALUES ({p}, {j}, {p}) "
                    "ON CONFLICT (user_id) DO UPDATE SET attributes = excluded.attributes, "
                    "updated_at = excluded.updated_at"),
    "get_user": "SELECT user_id, attributes, updated_at FROM users WHERE user_id = {p}",
    # erasure: event ids stay claimed (opaque, no personal data) so a redelivery cannot bring them back
    "delete_user_events": "DELETE FROM events WHERE user_id = {p}",
    "delete_user_record": "DELETE FROM users WHERE user_id = {p}",
    "delete_user_rankings": "DELETE FROM rankings WHERE user_id = {p}",
    "add_api_key": ("INSERT INTO api_keys (key_id, name, scopes, key_hash, created_at, revoked) "
                    "VALUES ({p}, {p}, {j}, {p}, {p}, {p}) ON CONFLICT (key_id) DO NOTHING"),
    "get_api_key": "SELECT key_id, name, scopes, key_hash, created_at, revoked FROM api_keys WHERE key_id = {p}",
    "api_keys": ("SELECT key_id, name, scopes, key_hash, created_at, revoked FROM api_keys "
                 "ORDER BY created_at, key_id"),
    "revoke_api_key": "UPDATE api_keys SET revoked = TRUE WHERE key_id = {p} AND NOT revoked",
    "log_ranking": ("INSERT INTO rankings (ranking_id, user_id, endpoint, item_ids, created_at, context) "
                    "VALUES ({p}, {p}, {p}, {j}, {p}, {j}) ON CONFLICT (ranking_id) DO NOTHING"),
    "get_ranking": ("SELECT ranking_id, user_id, endpoint, item_ids, created_at, context FROM rankings "
                    "WHERE ranking_id = {p}"),
    "rankings_since": ("SELECT ranking_id, user_id, endpoint, item_ids, created_at, context FROM rankings "
                       "WHERE created_at >= {p} ORDER BY created_at, ranking_id"),
    # the change feed: which item / user / served version changed, by which process (`origin`)
    "log_change": "INSERT INTO changes (kind, key, origin, at) VALUES ({p}, {p}, {p}, {p})",
    "changes": "SELECT seq, kind, key, origin FROM changes WHERE seq > {p} ORDER BY seq LIMIT {p}",
    "last_change_seq": "SELECT COALESCE(MAX(seq), 0) FROM changes",
    "prune_changes": "DELETE FROM changes WHERE at < {p}",
    "schema_version": "SELECT MAX(version) FROM schema_version",
    "set_schema_version": "INSERT INTO schema_version (version) VALUES ({p})",
}


def redact_url(url: str) -> str:
    """`url` with any password replaced by ***, for messages and reprs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _to_json(value: Any, field: str) -> str:
    """Compact JSON text; a value JSON cannot hold faithfully is a ValueError naming `field`."""
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{field}: not JSON-serialisable ({e})") from None


class SQLStore(ABC):
    """The backend-independent half: validation, statements, row decoding and paging.

    Subclasses provide the connection (`_tx` for a write transaction, `_fetch` for a read)
    and `_insert_events`, the one statement whose seq assignment differs per database.
    """

    #: per-dialect tokens for `_DDL` and `_STATEMENTS`
    DIALECT: ClassVar[dict[str, str]]

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()
        self._closed = False
        self._sql = {name: sql.format(**self.DIALECT) for name, sql in _STATEMENTS.items()}
        # user attributes sealed at rest when LMREC_ENCRYPTION_KEY is set (lmrec.privacy.crypto)
        from lmrec.privacy.crypto import cipher_from_env

        self.cipher = cipher_from_env()
        #: who writes through this store, in the change feed (an engine sets its worker id)
        self.origin = ""

    # -- backend hooks -------------------------------------------------------------------
    @abstractmethod
    def _tx(self) -> Any:
        """Context manager: a cursor inside one committed-on-exit transaction, lock held."""

    @abstractmethod
    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of one read-only statement (lock held while it runs)."""

    @abstractmethod
    def _insert_events(self, cur: Any, rows: list[tuple[Any, ...]]) -> list[int]:
        """Insert event rows (user, item, kind, value, ts, ranking) inside `cur`'s transaction;
        return their seqs, increasing in row order."""

    @abstractmethod
    def _from_json(self, value: Any) -> Any:
        """A JSON column as Python values."""

    def _lock_changes(self, cur: Any) -> None:
        """Make change seqs commit in order within the caller's transaction (SQLite: BEGIN
        IMMEDIATE already does)."""

    def _log_changes(self, cur: Any, kind: str, keys: Sequence[str]) -> None:
        """Append `keys` to the change feed inside the caller's transaction."""
        if not keys:
            return
        self._lock_changes(cur)
        now = time.time()
        cur.executemany(self._sql["log_change"], [(kind, k, self.origin, now) for k in keys])

    # -- change feed (several processes serving one store: lmrec.serving.follower) ---------
    def log_change(self, kind: str, key: str) -> None:
        """Record that `key` of `kind` ("item", "user", "version") changed, by `origin`."""
        with self._tx() as cur:
            self._log_changes(cur, kind, [key])

    def changes(self, *, after_seq: int = 0, limit: int = 1000) -> list[tuple[int, str, str, str]]:
        """(seq, kind, key, origin) of the changes after `after_seq`, in commit order."""
        return [(int(a), b, c, d) for a, b, c, d in self._fetch(self._sql["changes"], (int(after_seq), int(limit)))]

    def last_change_seq(self) -> int:
        return int(self._fetch(self._sql["last_change_seq"])[0][0])

    def prune_changes(self, before: float) -> int:
        """Forget changes recorded before `before` (epoch seconds); how many went."""
        return self._write("prune_changes", [(float(before),)])

    def _write(self, name: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run statement `name` once per row in one transaction; the number of rows changed."""
        if not rows:
            return 0
        with self._tx() as cur:
            if len(rows) == 1:
                cur.execute(self._sql[name], rows[0])
            else:
                cur.executemany(self._sql[name], rows)
            return int(cur.rowcount)

    def _create_schema(self, cur: Any) -> None:
        """Create missing tables and check `schema_version` (inside the caller's transaction)."""
        for stmt in _DDL.format(**self.DIALECT).split(";"):
            if stmt.strip():
                cur.execute(stmt)
        cur.execute(self._sql["schema_version"])
        found = cur.fetchone()[0]
        if found is None:
            cur.execute(self._sql["set_schema_version"], (SCHEMA_VERSION,))
        elif int(found) > SCHEMA_VERSION:
            raise RuntimeError(f"{redact_url(self.url)}: schema version {found} was written by a newer lmrec "
                               f"(this one reads version {SCHEMA_VERSION}); upgrade lmrec")

    # -- events --------------------------------------------------------------------------
    def append_events(self, events: Sequence[EventRecord]) -> list[int]:
        """Commit the events in one transaction; return their seq numbers (in order).
        Any malformed event fails the whole batch before anything is written."""
        rows = []
        for i, e in enumerate(events):
            check_event(e, f"events[{i}]")
            rows.append((e.user_id, e.item_id, e.kind, float(e.value), float(e.timestamp), e.ranking_id))
        if not rows:
            return []
        with self._tx() as cur:
            return self._insert_events(cur, rows)

    def append_events_once(self, events: Sequence[EventRecord], event_ids: Sequence[str]) -> list[int | None]:
        """`append_events` for events that carry an id (a stream's at-least-once delivery): in
        one transaction, each event whose id was never committed is appended; a repeated id
        (committed before, or earlier in this batch) is skipped. Returns the seqs, None for a
        skipped event. Two processes committing the same id: the first one's wins."""
        if len(events) != len(event_ids):
            raise ValueError(f"{len(events)} events but {len(event_ids)} event ids")
        rows = []
        for i, (e, eid) in enumerate(zip(events, event_ids)):
            check_event(e, f"events[{i}]")
            if not isinstance(eid, str) or not eid.strip() or len(eid) > 256:
                raise ValueError(f"events[{i}].event_id must be a non-empty string of at most 256 characters, "
                                 f"got {eid!r}")
            rows.append((e.user_id, e.item_id, e.kind, float(e.value), float(e.timestamp), e.ranking_id))
        out: list[int | None] = [None] * len(rows)
        if not rows:
            return out
        with self._tx() as cur:
            fresh = []
            # claimed in id order: two processes claiming overlapping ids never wait on each other in a cycle
            for i in sorted(range(len(rows)), key=lambda i: event_ids[i]):
                cur.execute(self._sql["claim_event_id"], (event_ids[i],))
                if cur.rowcount == 1:
                    fresh.append(i)
            fresh.sort()
            seqs = self._insert_events(cur, [rows[i] for i in fresh]) if fresh else []
            for i, seq in zip(fresh, seqs):
                cur.execute(self._sql["set_event_id_seq"], (seq, event_ids[i]))
                out[i] = seq
        return out

    def events(self, *, after_seq: int = 0, user_id: str | None = None,
               limit: int | None = None) -> Iterator[EventRecord]:
        """Events with seq > after_seq in seq order (optionally one user's, at most `limit`)."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit: must be >= 0, got {limit}")
        cursor, remaining = int(after_seq), limit
        while remaining is None or remaining > 0:
            page = PAGE_SIZE if remaining is None else min(PAGE_SIZE, remaining)
            if user_id is None:
                rows = self._fetch(self._sql["events"], (cursor, page))
            else:
                rows = self._fetch(self._sql["user_events"], (user_id, cursor, page))
            for seq, user, item, kind, value, ts, ranking in rows:
                yield EventRecord(user, item, kind, value, ts, ranking, seq)
            if len(rows) < page:
                return
            cursor = rows[-1][0]
            if remaining is not None:
                remaining -= len(rows)

    def count_events(self, user_id: str | None = None) -> int:
        """Events in the log (one user's when `user_id` is given)."""
        if user_id is not None:
            return int(self._fetch(self._sql["count_user_events"], (user_id,))[0][0])
        return int(self._fetch(self._sql["count_events"])[0][0])

    def latest_events(self, user_id: str, *, before_seq: int | None = None, limit: int = 100) -> list[EventRecord]:
        """One user's events with seq < before_seq (all when None), newest first, at most `limit`."""
        if limit < 0:
            raise ValueError(f"limit: must be >= 0, got {limit}")
        before = (1 << 62) if before_seq is None else int(before_seq)
        rows = self._fetch(self._sql["user_events_desc"], (user_id, before, limit)) if limit else []
        return [EventRecord(user, item, kind, value, ts, ranking, seq) for seq, user, item, kind, value, ts, ranking
                in rows]

    def last_seq(self) -> int:
        """The highest committed seq, 0 for an empty log."""
        return int(self._fetch(self._sql["last_seq"])[0][0])

    # -- items ---------------------------------------------------------------------------
    def upsert_items(self, items: Sequence[ItemRecord]) -> None:
        """Insert or replace the items in one transaction. A live item keeps its first
        `created_at`; a deleted one that is upserted again comes back as new."""
        rows = []
        for i, it in enumerate(items):
            where = f"items[{i}]"
            check_item(it, where)
            rows.append((it.item_id, it.title, it.text, _to_json(list(it.categories), f"{where}.categories"),
                         _to_json(dict(it.attributes), f"{where}.attributes"), it.available,
                         float(it.created_at), float(it.updated_at)))
        if not rows:
            return
        with self._tx() as cur:
            cur.executemany(self._sql["upsert_item"], rows)
            self._log_changes(cur, "item", list(dict.fromkeys(r[0] for r in rows)))

    def get_item(self, item_id: str) -> ItemRecord | None:
        rows = self._fetch(self._sql["get_item"], (item_id,))
        return self._item(rows[0]) if rows else None

    def delete_item(self, item_id: str) -> bool:
        """Remove the item from the catalog; True when it existed."""
        with self._tx() as cur:
            cur.execute(self._sql["delete_item"], (item_id,))
            existed = int(cur.rowcount) > 0
            if existed:
                self._log_changes(cur, "item", [item_id])
        return existed

    def items(self) -> Iterator[ItemRecord]:
        """Live items in item_id order (byte order of the UTF-8 ids)."""
        after = ""
        while True:
            rows = self._fetch(self._sql["items"], (after, PAGE_SIZE))
            yield from (self._item(r) for r in rows)
            if len(rows) < PAGE_SIZE:
                return
            after = rows[-1][0]

    def count_items(self) -> int:
        return int(self._fetch(self._sql["count_items"])[0][0])

    def item_page(self, *, after: str = "", limit: int = 100) -> list[ItemRecord]:
        """At most `limit` live items with item_id > `after`, in item_id order (a cursor page)."""
        if limit < 0:
            raise ValueError(f"limit: must be >= 0, got {limit}")
        return [self._item(r) for r in self._fetch(self._sql["items"], (after, limit))] if limit else []

    def _item(self, row: tuple[Any, ...]) -> ItemRecord:
        item_id, title, text, categories, attributes, available, created, updated = row
        return ItemRecord(item_id, title, text, tuple(self._from_json(categories)), self._from_json(attributes),
                          bool(available), created, updated)

    # -- users ---------------------------------------------------------------------------
    def upsert_user(self, user: UserRecord) -> None:
        """Insert the user or replace its attributes."""
        check_user(user)
        attrs = _to_json(dict(user.attributes), "user.attributes")
        if self.cipher is not None:
            attrs = self.cipher.seal(attrs)
        self._write("upsert_user", [(user.user_id, attrs, float(user.updated_at))])

    def delete_user(self, user_id: str) -> dict[str, int]:
        """Erase a user: their events, attribute record and logged rankings, in one
        transaction. Returns the rows removed per table (all 0: the user was unknown). The
        idempotency ids of the deleted events stay claimed, so a stream redelivering them
        cannot bring them back; a later training (`store_dataset`) no longer sees the user."""
        if not isinstance(user_id, str) or not user_id:
            raise ValueError(f"user_id: must be a non-empty string, got {user_id!r}")
        out = {}
        with self._tx() as cur:
            for table in ("events", "record", "rankings"):
                cur.execute(self._sql[f"delete_user_{table}"], (user_id,))
                out[table] = max(int(cur.rowcount), 0)
            if any(out.values()):
                self._log_changes(cur, "user", [user_id])
        return out

    def _user_attributes(self, value: Any) -> Any:
        """A users.attributes column as the attribute mapping (opened when sealed)."""
        from lmrec.privacy.crypto import open_without_key

        value = self._from_json(value)
        return self.cipher.open(value) if self.cipher is not None else open_without_key(value)

    def reencrypt_users(self) -> int:
        """Rewrite every stored user record sealed with the current (first) key: key rotation,
        or sealing records written before encryption was on. Returns the records rewritten."""
        if self.cipher is None:
            raise ValueError("reencrypt_users needs LMREC_ENCRYPTION_KEY")
        done, after = 0, ""
        while True:
            rows = self._fetch(self._sql["user_records"], (after, PAGE_SIZE))
            if not rows:
                return done
            for uid, attrs, updated in rows:
                self.upsert_user(UserRecord(uid, self._user_attributes(attrs), updated))
                done += 1
            after = rows[-1][0]

    def get_user(self, user_id: str) -> UserRecord | None:
        rows = self._fetch(self._sql["get_user"], (user_id,))
        if not rows:
            return None
        uid, attributes, updated = rows[0]
        return UserRecord(uid, self._user_attributes(attributes), updated)

    def user_page(self, *, after: str = "", limit: int = 100) -> list[tuple[str, UserRecord | None]]:
        """At most `limit` users with user_id > `after`, in user_id order: every user with an
        event or a stored record, with the record (None for a user known only from events)."""
        if limit < 0:
            raise ValueError(f"limit: must be >= 0, got {limit}")
        if not limit:
            return []
        with_events = [r[0] for r in self._fetch(self._sql["event_users"], (after, limit))]
        records = {uid: UserRecord(uid, self._user_attributes(attrs), updated)
                   for uid, attrs, updated in self._fetch(self._sql["user_records"], (after, limit))}
        # both lists are sorted in the database's order; the union's first `limit` ids are in them
        ids = sorted(set(with_events) | set(records), key=lambda u: u.encode("utf-8"))[:limit]
        return [(uid, records.get(uid)) for uid in ids]

    # -- API keys ------------------------------------------------------------------------
    def add_api_key(self, key: ApiKeyRecord) -> None:
        """Store a new key; a key_id already stored is a ValueError."""
        check_api_key(key)
        row = (key.key_id, key.name, _to_json(list(key.scopes), "api_key.scopes"), key.key_hash,
               float(key.created_at), key.revoked)
        if self._write("add_api_key", [row]) == 0:
            raise ValueError(f"api_key.key_id: {key.key_id!r} already exists")

    def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        rows = self._fetch(self._sql["get_api_key"], (key_id,))
        return self._api_key(rows[0]) if rows else None

    def api_keys(self) -> list[ApiKeyRecord]:
        """Every key, revoked ones included, oldest first."""
        return [self._api_key(r) for r in self._fetch(self._sql["api_keys"])]

    def revoke_api_key(self, key_id: str) -> bool:
        """Mark the key revoked; True when a live key was revoked."""
        return self._write("revoke_api_key", [(key_id,)]) > 0

    def _api_key(self, row: tuple[Any, ...]) -> ApiKeyRecord:
        key_id, name, scopes, key_hash, created, revoked = row
        return ApiKeyRecord(key_id, name, tuple(self._from_json(scopes)), key_hash, created, bool(revoked))

    # -- served rankings -----------------------------------------------------------------
    def log_ranking(self, ranking: RankingRecord) -> None:
        """Store a served ranking; a ranking_id already stored is a ValueError."""
        check_ranking(ranking)
        row = (ranking.ranking_id, ranking.user_id, ranking.endpoint,
               _to_json(list(ranking.item_ids), "ranking.item_ids"), float(ranking.created_at),
               _to_json(dict(ranking.context), "ranking.context"))
        if self._write("log_ranking", [row]) == 0:
            raise ValueError(f"ranking.ranking_id: {ranking.ranking_id!r} already exists")

    def log_rankings(self, rankings: Sequence[RankingRecord]) -> int:
        """Store many served rankings in one transaction (one commit, not one per ranking: the
        serving engine's background logger writes in batches); ranking_ids already stored are
        skipped. Returns how many were stored. Any malformed ranking fails the whole batch."""
        rows = []
        for i, r in enumerate(rankings):
            where = f"rankings[{i}]"
            check_ranking(r, where)
            rows.append((r.ranking_id, r.user_id, r.endpoint, _to_json(list(r.item_ids), f"{where}.item_ids"),
                         float(r.created_at), _to_json(dict(r.context), f"{where}.context")))
        return self._write("log_ranking", rows)

    def get_ranking(self, ranking_id: str) -> RankingRecord | None:
        rows = self._fetch(self._sql["get_ranking"], (ranking_id,))
        if not rows:
            return None
        rid, user, endpoint, item_ids, created, context = rows[0]
        return RankingRecord(rid, user, endpoint, tuple(self._from_json(item_ids)), created,
                             self._from_json(context))

    def rankings(self, *, since: float = 0.0) -> list[RankingRecord]:
        """The rankings served at `since` (epoch seconds) or later, oldest first (an experiment's
        report reads those since it started)."""
        return [RankingRecord(rid, user, endpoint, tuple(self._from_json(item_ids)), created,
                              self._from_json(context))
                for rid, user, endpoint, item_ids, created, context
                in self._fetch(self._sql["rankings_since"], (float(since),))]

    # -- lifecycle -----------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__}({redact_url(self.url)!r}) is closed")

    def __enter__(self) -> SQLStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact_url(self.url)!r})"

    @abstractmethod
    def close(self) -> None:
        """Close the connection; later calls raise RuntimeError. Closing twice is a no-op."""


class SQLiteStore(SQLStore):
    """SQLite record store: `sqlite:///relative.db`, `sqlite:////absolute/path.db` or
    `sqlite://` (in memory).

    WAL journal with `synchronous=FULL`: a commit returns only after the WAL is fsynced, so an
    acknowledged write survives the process being killed and the machine losing power.
    Writers take the database lock up front (BEGIN IMMEDIATE), which also serialises seq
    assignment with any other process writing the same file.
    """

    DIALECT: ClassVar[dict[str, str]] = {
        "serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "float": "REAL", "bool": "INTEGER", "json": "TEXT",
        "C": "", "p": "?", "j": "?"}

    def __init__(self, url: str = "sqlite://", *, timeout_s: float = 30.0) -> None:
        super().__init__(url)
        self.path = self._path(url)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _create_private(self.path)
        # isolation_level=None: no implicit transactions, each write opens its own below;
        # timeout_s: how long a writer waits for another process holding the file's lock
        self._conn = sqlite3.connect(":memory:" if self.path is None else str(self.path), timeout=timeout_s,
                                     isolation_level=None, check_same_thread=False)
        try:
            if self.path is not None:
                mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise RuntimeError(f"{self.path}: SQLite refused WAL journal mode (got {mode!r})")
            self._conn.execute("PRAGMA synchronous=FULL")
            with self._tx() as cur:
                self._create_schema(cur)
        except BaseException:
            self._conn.close()
            raise

    @staticmethod
    def _path(url: str) -> Path | None:
        """The database file of a sqlite URL; None for an in-memory database."""
        if not url.startswith("sqlite://"):
            raise ValueError(f"not a sqlite URL: {url!r} (expected sqlite:///path/file.db or sqlite://)")
        rest = url[len("sqlite://"):]
        if rest in ("", "/:memory:"):
            return None
        if not rest.startswith("/") or rest == "/":
            raise ValueError(f"bad sqlite URL {url!r}: expected sqlite:///relative/file.db, "
                             "sqlite:////absolute/file.db or sqlite:// (in memory)")
        return Path(rest[1:])

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            self._check_open()
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn.cursor()
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            self._check_open()
            return self._conn.execute(sql, params).fetchall()

    def _insert_events(self, cur: sqlite3.Cursor, rows: list[tuple[Any, ...]]) -> list[int]:
        # BEGIN IMMEDIATE holds the write lock, so numbering from the last seq ever handed out
        # (sqlite_sequence survives deletions) is race-free and yields consecutive seqs
        found = cur.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        base = int(found[0]) if found else 0
        seqs = list(range(base + 1, base + 1 + len(rows)))
        cur.executemany(f"INSERT INTO events ({_EVENT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [(s, *r) for s, r in zip(seqs, rows)])
        return seqs

    def _from_json(self, value: Any) -> Any:
        return json.loads(value)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()


class PostgresStore(SQLStore):
    """PostgreSQL record store: `postgresql://user[:password]@host[:port]/db[?schema=NAME&...]`.

    `schema` (lmrec's own query parameter) puts the tables in that schema, created if missing,
    so several stores (or test workers) can share one database; other query parameters go
    to libpq. One connection, serialised by a lock and reopened when it breaks. Appends take a
    transaction-level advisory lock so that seq order is commit order even when several
    processes write the same schema (a BIGSERIAL alone hands out seqs before commit).
    Durability is the server's: with its defaults (fsync, synchronous_commit on) a commit is
    on disk when it returns.
    """

    DIALECT: ClassVar[dict[str, str]] = {
        "serial": "BIGSERIAL PRIMARY KEY", "float": "DOUBLE PRECISION", "bool": "BOOLEAN", "json": "JSONB",
        "C": ' COLLATE "C"', "p": "%s", "j": "%s::jsonb"}

    def __init__(self, url: str, *, connect_timeout_s: int = 10) -> None:
        try:
            import psycopg
            from psycopg import sql as pgsql
        except ImportError:
            raise ImportError("PostgresStore needs psycopg 3: pip install 'lmrec[serve]'") from None
        super().__init__(url)
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError(f"not a postgresql URL: {redact_url(url)!r}")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        self.schema: str | None = query.pop("schema", None)
        if self.schema is not None and not self.schema.strip():
            raise ValueError(f"{redact_url(url)}: the schema query parameter is empty")
        query.setdefault("connect_timeout", str(connect_timeout_s))
        self._conninfo = urlunsplit(parts._replace(query=urlencode(query)))
        self._psycopg = psycopg
        # one key per schema: stores in different schemas never wait for each other
        self._append_lock_key = zlib.crc32(f"lmrec.events:{self.schema or ''}".encode())
        self._change_lock_key = zlib.crc32(f"lmrec.changes:{self.schema or ''}".encode())
        self._conn: Any = None
        with self._tx() as cur:
            # concurrent first opens would race on CREATE ... IF NOT EXISTS (a unique violation)
            cur.execute("SELECT pg_advisory_xact_lock(%s::bigint)", (zlib.crc32(b"lmrec.schema"),))
            if self.schema is not None:
                cur.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pgsql.Identifier(self.schema)))
            self._create_schema(cur)

    def _connection(self) -> Any:
        """The live connection, reconnecting when the previous one broke (server restart)."""
        self._check_open()
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            from psycopg import sql as pgsql

            conn = self._psycopg.connect(self._conninfo, autocommit=True)
            if self.schema is not None:
                conn.execute(pgsql.SQL("SET search_path TO {}").format(pgsql.Identifier(self.schema)))
            self._conn = conn
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN")
            except self._psycopg.OperationalError:
                if not conn.broken:
                    raise
                # the server dropped an idle connection (restart, timeout) before this transaction
                # sent anything: reconnecting and starting over cannot write twice
                conn = self._connection()
                conn.execute("BEGIN")
            try:
                with conn.cursor() as cur:
                    yield cur
                conn.execute("COMMIT")
            except BaseException:
                # a COMMIT lost with the connection has an unknown outcome: the caller sees the
                # error (not acknowledged) and the next call reconnects
                if not conn.broken and conn.info.transaction_status != self._psycopg.pq.TransactionStatus.IDLE:
                    conn.execute("ROLLBACK")
                raise

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            for attempt in (1, 2):
                conn = self._connection()
                try:
                    with conn.cursor() as cur:
                        cur.execute(sql, params)
                        return cur.fetchall()
                except self._psycopg.OperationalError:
                    if attempt == 2 or not conn.broken:
                        raise  # reads are idempotent: retried once on a fresh connection
            raise AssertionError("unreachable")

    def _lock_changes(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s::bigint)", (self._change_lock_key,))

    def _insert_events(self, cur: Any, rows: list[tuple[Any, ...]]) -> list[int]:
        cur.execute("SELECT pg_advisory_xact_lock(%s::bigint)", (self._append_lock_key,))
        cur.executemany("INSERT INTO events (user_id, item_id, kind, value, ts, ranking_id) "
                        "VALUES (%s, %s, %s, %s, %s, %s) RETURNING seq", rows, returning=True)
        seqs = []
        while True:
            seqs.append(int(cur.fetchone()[0]))
            if not cur.nextset():
                return seqs

    def _from_json(self, value: Any) -> Any:
        return value  # psycopg decodes JSONB already

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._conn is not None:
                    self._conn.close()


def open_store(url: str) -> RecordStore:
    """The record store for `url`: `sqlite:///path.db`, `sqlite://` (in memory) or
    `postgresql://user@host:port/db[?schema=NAME]`."""
    if not isinstance(url, str):
        raise ValueError(f"store URL must be a string, got {url!r}")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        return SQLiteStore(url)
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(url)
    raise ValueError(f"unsupported store URL {redact_url(url)!r}: supported schemes are "
                     f"{', '.join(SUPPORTED_SCHEMES)}")


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner only (0600): it holds user ids and
    attributes. SQLite gives its -wal and -shm files the database file's permissions. An
    existing file keeps its permissions."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
