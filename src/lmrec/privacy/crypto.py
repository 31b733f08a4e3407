"""Field-level encryption at rest: user attributes sealed with Fernet before they reach the store.

Keys come from the environment: `LMREC_ENCRYPTION_KEY` holds one or more Fernet keys (url-safe
base64 of 32 bytes, `python -c "from lmrec.privacy.crypto import generate_key; print(generate_key())"`),
separated by commas. The first key encrypts; every key decrypts (`MultiFernet`), so a key is
rotated by putting the new key first, running `SQLStore.reencrypt_users()` (re-seals every
record with the new key) and then dropping the old key. Without the variable nothing is
encrypted and the store behaves as before.

A sealed value is stored as the JSON object {"$lmrec-enc": "<Fernet token>"}, so the column
stays JSON (TEXT on SQLite, JSONB on PostgreSQL) and needs no schema change; the token holds
the whole attribute object (names and values), AES-128-CBC with HMAC-SHA256 (Fernet), and a
fresh IV each time (equal attributes do not look equal). Plain values written before the key
was set are still read, and `reencrypt_users()` seals them.

Example:
    >>> cipher = FieldCipher([generate_key()])
    >>> sealed = cipher.seal('{"age":31}')
    >>> "31" in sealed, cipher.open(json.loads(sealed))
    (False, {'age': 31})
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ENV_KEY", "MARK", "FieldCipher", "generate_key", "cipher_from_env", "EncryptedFieldError"]

ENV_KEY = "LMREC_ENCRYPTION_KEY"
MARK = "$lmrec-enc"


class EncryptedFieldError(ValueError):
    """A sealed value cannot be opened: no key configured, or none of the keys fits."""


def _fernet() -> Any:
    try:
        from cryptography import fernet
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("encryption at rest needs cryptography: pip install 'lmrec[privacy]'") from e
    return fernet


def generate_key() -> str:
    """A new random Fernet key (text)."""
    return _fernet().Fernet.generate_key().decode("ascii")


class FieldCipher:
    """Seals JSON text with the first of `keys` and opens values sealed with any of them."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        fernet = _fernet()
        if not keys:
            raise ValueError(f"{ENV_KEY}: no key")
        try:
            self._keys = [fernet.Fernet(k) for k in keys]
        except (ValueError, TypeError) as e:
            raise ValueError(f"{ENV_KEY}: not a Fernet key (url-safe base64 of 32 bytes): {e}") from None
        self._multi = fernet.MultiFernet(self._keys)
        self._invalid = fernet.InvalidToken

    def seal(self, json_text: str) -> str:
        """JSON text of {"$lmrec-enc": token} for the JSON text `json_text`."""
        token = self._multi.encrypt(json_text.encode("utf-8")).decode("ascii")
        return json.dumps({MARK: token}, separators=(",", ":"))

    def open(self, value: Any) -> Any:
        """The decoded JSON column value with a sealed object replaced by its content; other
        values pass through (written before encryption was on)."""
        if not is_sealed(value):
            return value
        try:
            return json.loads(self._multi.decrypt(value[MARK].encode("ascii")))
        except self._invalid:
            raise EncryptedFieldError(f"a sealed field fits none of the {len(self._keys)} key(s) in {ENV_KEY} "
                                      "(rotated away, or a different deployment's key?)") from None


def is_sealed(value: Any) -> bool:
    return isinstance(value, Mapping) and len(value) == 1 and isinstance(value.get(MARK), str)


def cipher_from_env(environ: Mapping[str, str] | None = None) -> FieldCipher | None:
    """The cipher of `LMREC_ENCRYPTION_KEY` (comma-separated keys, first = current), or None
    when the variable is unset or empty."""
    raw = (os.environ if environ is None else environ).get(ENV_KEY, "")
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    return FieldCipher(keys) if keys else None


def open_without_key(value: Any) -> Any:
    """For a store without a key: plain values pass, a sealed one is an error that says why."""
    if is_sealed(value):
        raise EncryptedFieldError(f"user attributes are encrypted at rest; set {ENV_KEY} to read them")
    return value
