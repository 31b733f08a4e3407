"""Pseudonymised exports of the record store for analysts (`lmrec data export --pseudonymise`).

An id becomes HMAC-SHA256(secret, id) in hex, truncated to `length` characters (32 by default:
128 bits, so two ids practically never collide). The same secret gives the same pseudonym for the
same id across exports, so files can be joined; without the secret a pseudonym cannot be
turned back into the id, nor can a guessed id be checked (unlike a plain hash). Item ids are
pseudonymised too unless asked otherwise; user attribute values become keyed digests of
(attribute name, JSON value) too, so equal values stay equal (group-by works) but no raw
value appears, unless the export keeps them (`keep_attributes`).

The secret comes from LMREC_PSEUDONYM_KEY or a key file; there is no default, and one shorter
than 16 characters is refused. Rotating it makes new exports unlinkable to old ones.

Example:
    >>> p = Pseudonymiser(b"a secret of sixteen+ chars")
    >>> p("alice") == p("alice"), p("alice") != p("bob"), len(p("alice"))
    (True, True, 32)
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["Pseudonymiser", "load_secret", "export_store", "PSEUDONYM_KEY_ENV", "MIN_SECRET"]

PSEUDONYM_KEY_ENV = "LMREC_PSEUDONYM_KEY"
MIN_SECRET = 16
EVENT_COLUMNS = ("seq", "user_id", "item_id", "kind", "value", "timestamp")
USER_COLUMNS = ("user_id", "attributes", "updated_at")


class Pseudonymiser:
    """id -> HMAC-SHA256(secret, id) hex, first `length` characters."""

    def __init__(self, secret: bytes, length: int = 32) -> None:
        if len(secret) < MIN_SECRET:
            raise ValueError(f"the pseudonymisation secret must be at least {MIN_SECRET} characters")
        if not 8 <= length <= 64:
            raise ValueError(f"length must be 8..64 hex characters, got {length}")
        self._secret, self.length = bytes(secret), int(length)

    def __call__(self, value: str) -> str:
        return hmac.new(self._secret, value.encode("utf-8"), hashlib.sha256).hexdigest()[:self.length]

    def attribute(self, key: str, value: Any) -> str:
        """A keyed digest of one attribute value (equal values of one attribute map alike)."""
        return self(f"attr\x00{key}\x00{json.dumps(value, sort_keys=True)}")


def load_secret(key_file: Path | None = None) -> bytes:
    """The secret from `key_file` (its content, surrounding whitespace stripped) or else the
    LMREC_PSEUDONYM_KEY variable; ValueError with one line when neither gives one."""
    if key_file is not None:
        try:
            secret = Path(key_file).read_bytes().strip()
        except OSError as e:
            raise ValueError(f"--key-file {key_file}: {e.strerror or e}") from None
        where = f"--key-file {key_file}"
    else:
        secret = os.environ.get(PSEUDONYM_KEY_ENV, "").strip().encode("utf-8")
        where = PSEUDONYM_KEY_ENV
    if not secret:
        raise ValueError(f"pseudonymising needs a secret: set {PSEUDONYM_KEY_ENV} or give --key-file FILE "
                         "(the same secret gives the same pseudonyms across exports)")
    if len(secret) < MIN_SECRET:
        raise ValueError(f"{where}: the secret must be at least {MIN_SECRET} characters, got {len(secret)}")
    return secret


def _event_rows(store: Any, pseudo: Pseudonymiser | None, items: bool) -> Iterator[dict[str, Any]]:
    for e in store.events(after_seq=0):
        yield {"seq": e.seq, "user_id": pseudo(e.user_id) if pseudo else e.user_id,
               "item_id": pseudo(e.item_id) if pseudo and items else e.item_id,
               "kind": e.kind, "value": e.value, "timestamp": e.timestamp}


def _user_rows(store: Any, pseudo: Pseudonymiser | None, keep_attributes: bool) -> Iterator[dict[str, Any]]:
    after = ""
    while True:
        page = store.user_page(after=after, limit=1000)
        if not page:
            return
        for uid, rec in page:
            attrs = dict(rec.attributes) if rec is not None else {}
            if pseudo is not None and not keep_attributes:
                attrs = {k: pseudo.attribute(k, v) for k, v in attrs.items()}
            yield {"user_id": pseudo(uid) if pseudo else uid, "attributes": json.dumps(attrs, sort_keys=True),
                   "updated_at": rec.updated_at if rec is not None else None}
        after = page[-1][0]


def users_path(out: Path) -> Path:
    """Where the users file of an export to `out` goes: events.csv -> events.users.csv."""
    return out.with_name(f"{out.stem}.users{out.suffix}")


def export_store(store: Any, out: Path, *, pseudonymiser: Pseudonymiser | None = None, items: bool = True,
                 keep_attributes: bool = False, fmt: str | None = None) -> dict[str, Any]:
    """Write the store's events to `out` and its users to `users_path(out)` as CSV or Parquet
    (`fmt`, else from the suffix). With a `pseudonymiser`, user ids (and item ids when
    `items`; attribute values unless `keep_attributes`) are replaced by pseudonyms. Returns
    the paths and row counts."""
    fmt = (fmt or out.suffix.lstrip(".") or "csv").lower()
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"--format: csv or parquet, got {fmt!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    uout = users_path(out)
    counts = {}
    for path, rows, columns in ((out, _event_rows(store, pseudonymiser, items), EVENT_COLUMNS),
                                (uout, _user_rows(store, pseudonymiser, keep_attributes), USER_COLUMNS)):
        tmp = path.with_name(f".{path.name}.tmp")
        if fmt == "csv":
            n = 0
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=columns)
                w.writeheader()
                for row in rows:
                    w.writerow(row)
                    n += 1
        else:
            import pandas as pd

            frame = pd.DataFrame(list(rows), columns=list(columns))
            frame.to_parquet(tmp, index=False)
            n = len(frame)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        counts[str(path)] = n
    return {"events": str(out), "users": str(uout), "rows": counts, "pseudonymised": pseudonymiser is not None}
