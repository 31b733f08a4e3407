"""Field-level encryption at rest: the SQLite file holds no raw user attribute when
LMREC_ENCRYPTION_KEY is set (and does without it: the grep can find them), reads give the
attributes back, keys rotate through MultiFernet, and a missing or wrong key is an error."""

from __future__ import annotations

import pytest

pytest.importorskip("cryptography", reason="encryption at rest needs cryptography: pip install 'lmrec[privacy]'")

from lmrec.privacy.crypto import ENV_KEY, EncryptedFieldError, FieldCipher, generate_key  # noqa: E402
from lmrec.stores.records import UserRecord  # noqa: E402
from lmrec.stores.sql import open_store  # noqa: E402

SECRETS = {"email": "alice.q.unique@example.org", "phone": "+44-7700-900123", "zip": "SW1A-9ZZ"}


def _raw_bytes(tmp_path) -> bytes:
    """Everything SQLite wrote: the database file and its journal / WAL files."""
    return b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("users.db"))


def _write(url: str) -> None:
    with open_store(url) as store:
        store.upsert_user(UserRecord("u1", dict(SECRETS), 1.0))
        store.upsert_user(UserRecord("u2", {"age_band": "35-44", "gender": "F"}, 2.0))
        store.upsert_user(UserRecord("u1", {**SECRETS, "note": "revised-xq7"}, 3.0))  # an update is sealed too


def test_database_file_holds_no_raw_attribute(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(ENV_KEY, generate_key())
    url = f"sqlite:///{tmp_path}/users.db"
    _write(url)
    raw = _raw_bytes(tmp_path)
    for value in [*SECRETS.values(), "35-44", "age_band", "email", "revised-xq7"]:
        assert value.encode() not in raw, f"{value!r} found in the database file"
    assert b"u1" in raw  # the id is the key of the row (pseudonymise ids separately)
    with open_store(url) as store:
        assert store.get_user("u1").attributes == {**SECRETS, "note": "revised-xq7"}
        page = dict(store.user_page(limit=10))
        assert page["u2"].attributes == {"age_band": "35-44", "gender": "F"}


def test_without_a_key_the_grep_finds_them(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(ENV_KEY, raising=False)
    _write(f"sqlite:///{tmp_path}/users.db")
    raw = _raw_bytes(tmp_path)
    assert all(v.encode() in raw for v in SECRETS.values())


def test_key_rotation(tmp_path, monkeypatch) -> None:
    old, new = generate_key(), generate_key()
    url = f"sqlite:///{tmp_path}/users.db"
    monkeypatch.setenv(ENV_KEY, old)
    _write(url)
    monkeypatch.setenv(ENV_KEY, f"{new},{old}")  # new key first: it seals, both open
    with open_store(url) as store:
        assert store.get_user("u2").attributes["gender"] == "F"
        assert store.reencrypt_users() == 2
    monkeypatch.setenv(ENV_KEY, new)  # the old key is retired
    with open_store(url) as store:
        assert store.get_user("u1").attributes["email"] == SECRETS["email"]
    monkeypatch.setenv(ENV_KEY, old)
    with open_store(url) as store, pytest.raises(EncryptedFieldError, match="fits none"):
        store.get_user("u1")


def test_missing_key_is_an_error_and_plain_rows_get_sealed(tmp_path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path}/users.db"
    monkeypatch.delenv(ENV_KEY, raising=False)
    _write(url)  # written in clear before encryption was turned on
    monkeypatch.setenv(ENV_KEY, generate_key())
    with open_store(url) as store:
        assert store.get_user("u1").attributes["email"] == SECRETS["email"]  # plain rows still read
        assert store.reencrypt_users() == 2
    monkeypatch.delenv(ENV_KEY)
    with open_store(url) as store, pytest.raises(EncryptedFieldError, match=ENV_KEY):
        store.get_user("u1")


def test_bad_key_is_refused() -> None:
    with pytest.raises(ValueError, match="Fernet key"):
        FieldCipher(["not-a-key"])


def test_settings_accept_the_variable(monkeypatch) -> None:
    from lmrec.settings import Settings

    monkeypatch.setenv(ENV_KEY, generate_key())
    Settings()
