"""API keys: creation, hashing, verification and scopes.

A key looks like `lmr_<key_id>_<secret>`. The key id is public (it names the key in logs and
in `lmrec keys list`) and is how the record is found; only a SHA-256 hash of the secret is
stored. The secret is 256 random bits, so a fast hash is as safe as a slow password hash here
(there is no dictionary to guess from) and keeps verification cheap on every request.
Hashes are compared in constant time.

Scopes: `read` (recommend, search, similar), `write` (events, items, users) and `admin`
(the admin routes and everything else).

Example:
    >>> key, record = new_api_key("ci", ["read"], now=0.0)
    >>> key.startswith("lmr_" + record.key_id + "_"), verify_secret(record, parse_key(key)[1])
    (True, True)
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from lmrec.stores.records import SCOPES, ApiKeyRecord, RecordStore

__all__ = ["KEY_PREFIX", "Principal", "ApiKeyVerifier", "AuthError", "new_api_key", "create_api_key",
           "parse_key", "hash_secret", "verify_secret", "check_scopes", "has_scope"]

KEY_PREFIX = "lmr"
_KEY_ID_BYTES = 6        # 12 hex characters: unique enough for key ids, short enough to read
_SECRET_BYTES = 32
_KEY_RE = re.compile(r"^lmr_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")
_HASH_SCHEME = "sha256"


class AuthError(Exception):
    """Authentication failed (HTTP 401): `reason` is safe to show to the client."""

    def __init__(self, reason: str, *, code: str = "invalid_token") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key id (or 'anonymous' with auth off) and its scopes."""

    key_id: str
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return has_scope(self.scopes, scope)


ANONYMOUS = Principal(key_id="anonymous", name="auth disabled", scopes=frozenset({"admin"}))


def has_scope(granted: Iterable[str], needed: str) -> bool:
    """`admin` grants everything; otherwise the scope itself is needed."""
    granted = set(granted)
    return needed in granted or "admin" in granted


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Validated, de-duplicated scopes in canonical order; ValueError naming a bad one."""
    wanted = [s.strip() for s in scopes if s.strip()]
    if not wanted:
        raise ValueError(f"scopes: give at least one of {', '.join(SCOPES)}")
    for s in wanted:
        if s not in SCOPES:
            raise ValueError(f"scopes: unknown scope {s!r}; known: {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in wanted)


def hash_secret(key_id: str, secret: str) -> str:
    """'sha256$<hex>' of the secret, salted with the key id (so equal secrets never share a hash)."""
    digest = hashlib.sha256(f"{key_id}:{secret}".encode("utf-8")).hexdigest()
    return f"{_HASH_SCHEME}${digest}"


def verify_secret(record: ApiKeyRecord, secret: str) -> bool:
    """Constant-time check of `secret` against the record's stored hash."""
    return hmac.compare_digest(hash_secret(record.key_id, secret).encode(), record.key_hash.encode())


def parse_key(key: str) -> tuple[str, str]:
    """(key_id, secret) of a well-formed key; AuthError otherwise."""
    m = _KEY_RE.match(key.strip())
    if m is None:
        raise AuthError("malformed API key: expected lmr_<key id>_<secret>")
    return m.group(1), m.group(2)


def new_api_key(name: str, scopes: Iterable[str], *, now: float | None = None) -> tuple[str, ApiKeyRecord]:
    """A fresh key and its record (holding only the hash). The key is shown to the user once."""
    if not name or not name.strip():
        raise ValueError("name: an API key needs a non-empty name")
    key_id = secrets.token_hex(_KEY_ID_BYTES)
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    record = ApiKeyRecord(key_id=key_id, name=name.strip(), scopes=check_scopes(scopes),
                          key_hash=hash_secret(key_id, secret), created_at=time.time() if now is None else now)
    return f"{KEY_PREFIX}_{key_id}_{secret}", record


def create_api_key(store: RecordStore, name: str, scopes: Iterable[str]) -> tuple[str, ApiKeyRecord]:
    """Create a key, store its record and return (key, record)."""
    key, record = new_api_key(name, scopes)
    store.add_api_key(record)
    return key, record


class ApiKeyVerifier:
    """Turns a presented key into a `Principal`, reading records from the store.

    Records are cached for `cache_seconds` (0 = read the store on every request): a revocation
    made by another process (`lmrec keys revoke`) takes effect within that time. Only verified
    records are cached, so a flood of random keys cannot fill the cache.
    """

    def __init__(self, store: RecordStore, *, cache_seconds: float = 5.0) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, ApiKeyRecord]] = {}
        self._lock = threading.Lock()

    def _cached(self, key_id: str) -> ApiKeyRecord | None:
        if self.cache_seconds <= 0:
            return None
        with self._lock:
            hit = self._cache.get(key_id)
        if hit is not None and time.monotonic() - hit[0] < self.cache_seconds:
            return hit[1]
        return None

    def verify_cached(self, key: str) -> Principal | None:
        """The caller behind `key` when its record is cached and the secret matches; None
        otherwise (then `verify`, which may read the store, decides). Never touches the store,
        so it can run on the event loop."""
        m = _KEY_RE.match(key.strip())
        record = self._cached(m.group(1)) if m else None
        if record is None or not verify_secret(record, m.group(2)):
            return None
        return Principal(key_id=record.key_id, name=record.name, scopes=frozenset(record.scopes))

    def verify(self, key: str) -> Principal:
        """The caller behind `key`; AuthError for a malformed, unknown, wrong or revoked key."""
        key_id, secret = parse_key(key)
        record = self._cached(key_id)
        from_store = record is None
        if from_store:
            record = self.store.get_api_key(key_id)
        # the same message for an unknown id and a wrong secret: do not reveal which ids exist
        if record is None or not verify_secret(record, secret):
            raise AuthError("invalid API key")
        if record.revoked:
            raise AuthError("API key has been revoked")
        if from_store and self.cache_seconds > 0:
            # cached from the time it was read, so a revocation is seen within cache_seconds
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key_id] = (time.monotonic(), record)
        return Principal(key_id=record.key_id, name=record.name, scopes=frozenset(record.scopes))

    def forget(self, key_id: str | None = None) -> None:
        """Drop cached records (one key's, or all): e.g. right after revoking in-process."""
        with self._lock:
            if key_id is None:
                self._cache.clear()
            else:
                self._cache.pop(key_id, None)
