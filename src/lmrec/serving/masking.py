"""Pseudonymous logging: user ids and query text appear in logs only as keyed hashes.

Logs travel further than the database (log shippers, dashboards, support tickets), so the
service never writes a raw user id or search query to them unless the operator opts in with
`log_raw_ids=True`. A keyed hash (HMAC-SHA256, truncated) still lets an operator follow one
user's requests through the logs, and, given the key, check whether a known id produced a
given line; without the key a hash cannot be reversed by enumerating likely ids.

Every other value written to a log line (an item id from the path, a key id) goes through
`Masker.clean`: control characters are escaped (`\\n`, `\\x1b`, ...), so a value can never start
a new line, move the cursor or hide text in a terminal, and e-mail addresses and phone numbers
inside it are replaced by their keyed hash.

Example:
    >>> m = Masker(b"k" * 32)
    >>> m.mask("user-42") == m.mask("user-42") != m.mask("user-43")
    True
    >>> m.mask("user-42").startswith("h:"), Masker(b"k", raw=True).mask("user-42")
    (True, 'user-42')
    >>> escape_control("a\\nDELETE /items/x 200")
    'a\\\\nDELETE /items/x 200'
    >>> m.clean("sku-1 ann@example.com").startswith("sku-1 <email h:")
    True
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import traceback

__all__ = ["Masker", "escape_control", "exception_summary", "ACCESS_LOGGER", "APP_LOGGER"]

#: one line per request: method, route template, status, duration, key id, masked ids
ACCESS_LOGGER = "lmrec.access"
#: application events: start-up, reloads, training, errors
APP_LOGGER = "lmrec.service"

_DIGEST_CHARS = 16   # 64 bits: collisions are irrelevant at log-correlation scale

# C0, DEL, C1 and the Unicode line / paragraph separators (some log viewers break lines there);
# the backslash too, so an escaped value cannot be confused with one that was sent escaped
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\\]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# A phone number: 7 to 15 digits written as one (a leading "+", or groups split by spaces,
# dashes, dots or parentheses). A bare run of digits is left alone: numeric catalog ids (SKUs,
# EANs) look the same and are not personal data.
_PHONE = re.compile(r"(?<![\w+])(?:\+\(?\d[\d ().-]{5,}\d|\(?\d{2,5}\)?[ .-]\d[\d ().-]{3,}\d)(?![\w])")

_DATE = re.compile(r"\d{4}([-./])\d{1,2}\1\d{1,2}")  # 2024-01-31 is a date, not a phone number


def escape_control(text: str) -> str:
    """`text` with every control character (and the backslash) written as an escape."""
    def esc(m: re.Match[str]) -> str:
        c = m.group(0)
        return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")

    return _UNSAFE.sub(esc, text)


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

    def clean(self, value: object) -> str:
        """A value safe to write in a log line: e-mail addresses and phone numbers replaced by
        their keyed hash (kept when raw), then control characters escaped (always)."""
        text = str(value)
        if not self.raw:
            text = _EMAIL.sub(lambda m: f"<email {self.mask(m.group(0))}>", text)
            text = _PHONE.sub(lambda m: f"<phone {self.mask(m.group(0))}>" if _digits(m.group(0)) >= 7
                              and not _DATE.fullmatch(m.group(0)) else m.group(0), text)
        return escape_control(text)


def _digits(text: str) -> int:
    return sum(c.isdigit() for c in text)


def exception_summary(exc: BaseException, *, raw: bool) -> str:
    """An exception for the log: type and stack frames always, the message only when raw.

    Exception messages routinely quote their inputs (`KeyError('user-42')`), so with masking
    on only the type and the code locations are logged: enough to find the bug, without the
    identifiers that triggered it.
    """
    frames = "".join(traceback.format_tb(exc.__traceback__))
    message = f"{type(exc).__name__}: {exc}" if raw else f"{type(exc).__name__} (message withheld: log_raw_ids=False)"
    return f"{message}\nTraceback (most recent call last):\n{frames}".rstrip()
