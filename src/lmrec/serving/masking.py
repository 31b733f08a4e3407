"""Pseudonymous logging: user ids and query text appear in logs only as keyed hashes.

Logs travel further than the database (log shippers, dashboards, support tickets), so the
service never writes a raw user id or search query to them unless the operator opts in with
`log_raw_ids=True`. A keyed hash (HMAC-SHA256, truncated) still lets an operator follow one
user's requests through the logs, and, given the key, check whether a known id produced a
given line; without the key a hash cannot be reversed by enumerating likely ids.

Example:
    >>> m = Masker(b"k" * 32)
    >>> m.mask("user-42") == m.mask("user-42") != m.mask("user-43")
    True
    >>> m.mask("user-42").startswith("h:"), Masker(b"k", raw=True).mask("user-42")
    (True, 'user-42')
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import traceback

__all__ = ["Masker", "exception_summary", "ACCESS_LOGGER", "APP_LOGGER"]

#: one line per request: method, route template, status, duration, key id, masked ids
ACCESS_LOGGER = "lmrec.access"
#: application events: start-up, reloads, training, errors
APP_LOGGER = "lmrec.service"

_DIGEST_CHARS = 16   # 64 bits: collisions are irrelevant at log-correlation scale


class Masker:
    """Turns identifying strings into stable, keyed pseudonyms for logs.

    `key` is the HMAC key (random per process when None, so hashes only correlate lines of
    one process; configure `log_hash_key` to correlate across restarts and replicas).
    `raw=True` passes values through unchanged (for local debugging only).
    """

    def __init__(self, key: bytes | str | None = None, *, raw: bool = False) -> None:
        if key is None:
            key = secrets.token_bytes(32)
        self._key = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        if not self._key:
            raise ValueError("log_hash_key must not be empty")
        self.raw = raw

    def mask(self, value: str | None) -> str | None:
        """'h:<16 hex>' for a value, the value itself when raw, None for None."""
        if value is None:
            return None
        if self.raw:
            return value
        digest = hmac.new(self._key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
        return "h:" + digest[:_DIGEST_CHARS]


def exception_summary(exc: BaseException, *, raw: bool) -> str:
    """An exception for the log: type and stack frames always, the message only when raw.

    Exception messages routinely quote their inputs (`KeyError('user-42')`), so with masking
    on only the type and the code locations are logged: enough to find the bug, without the
    identifiers that triggered it.
    """
    frames = "".join(traceback.format_tb(exc.__traceback__))
    message = f"{type(exc).__name__}: {exc}" if raw else f"{type(exc).__name__} (message withheld: log_raw_ids=False)"
    return f"{message}\nTraceback (most recent call last):\n{frames}".rstrip()
