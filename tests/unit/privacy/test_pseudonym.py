"""Pseudonymised exports (issue 14, item 3): `lmrec data export --pseudonymise` writes HMAC
pseudonyms, stable for one secret and different for another, no raw user id or attribute
value in the files, and refuses to run without a secret."""

from __future__ import annotations

import csv
import hashlib
import hmac
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from lmrec.cli.main import app
from lmrec.privacy.pseudonym import Pseudonymiser, export_store, load_secret
from lmrec.stores.records import EventRecord, UserRecord
from lmrec.stores.sql import open_store

SECRET = "correct horse battery staple"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    with open_store(f"sqlite:///{h}/lmrec.db") as s:
        s.append_events([EventRecord("alice@example.com", "sku-1", "view", timestamp=1000.0),
                         EventRecord("bob", "sku-1", "purchase", timestamp=1001.0),
                         EventRecord("alice@example.com", "sku-2", "click", timestamp=1002.0)])
        s.upsert_user(UserRecord("alice@example.com", {"postcode": "SW1A 1AA", "age_band": "25-34"}, 5.0))
        s.upsert_user(UserRecord("carol", {"age_band": "25-34"}, 6.0))
    return h


def _export(home: Path, out: Path, *args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, ["data", "export", "--home", str(home), "--out", str(out), *args],
                              env={"LMREC_PSEUDONYM_KEY": None, **(env or {})})


def test_pseudonymised_csv_has_no_raw_ids_and_is_stable(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "a" / "events.csv"
    r = _export(home, out, "--pseudonymise", env={"LMREC_PSEUDONYM_KEY": SECRET})
    assert r.exit_code == 0, r.output
    text = out.read_text() + (out.parent / "events.users.csv").read_text()
    for raw in ("alice@example.com", "bob", "carol", "sku-1", "sku-2", "SW1A 1AA", "25-34"):
        assert raw not in text
    rows = list(csv.DictReader(out.open()))
    expect = hmac.new(SECRET.encode(), b"alice@example.com", hashlib.sha256).hexdigest()[:32]
    assert rows[0]["user_id"] == expect == rows[2]["user_id"] != rows[1]["user_id"]
    assert rows[0]["item_id"] == rows[1]["item_id"] and [r["kind"] for r in rows] == ["view", "purchase", "click"]
    users = {u["user_id"]: u for u in csv.DictReader((out.parent / "events.users.csv").open())}
    assert set(users) == {expect, rows[1]["user_id"], Pseudonymiser(SECRET.encode())("carol")}
    # equal attribute values stay equal (group-by works) without showing the value
    assert '"age_band"' in users[expect]["attributes"]
    assert (out.stat().st_mode & 0o077) == 0

    # the same secret again (from a key file): the same pseudonyms; another secret: others
    key = tmp_path / "key"
    key.write_text(SECRET + "\n")
    again = tmp_path / "b" / "events.csv"
    assert _export(home, again, "--pseudonymise", "--key-file", str(key)).exit_code == 0
    assert again.read_text() == out.read_text()
    other = tmp_path / "c" / "events.csv"
    assert _export(home, other, "--pseudonymise", env={"LMREC_PSEUDONYM_KEY": SECRET + "!"}).exit_code == 0
    assert list(csv.DictReader(other.open()))[0]["user_id"] != expect


def test_parquet_and_kept_item_ids(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "events.parquet"
    r = _export(home, out, "--pseudonymise", "--keep-item-ids", "--length", "16",
                env={"LMREC_PSEUDONYM_KEY": SECRET})
    assert r.exit_code == 0, r.output
    frame = pd.read_parquet(out)
    assert list(frame["item_id"]) == ["sku-1", "sku-1", "sku-2"]
    assert frame["user_id"].str.len().eq(16).all() and "bob" not in set(frame["user_id"])
    assert b"alice" not in out.read_bytes() and b"alice" not in (tmp_path / "events.users.parquet").read_bytes()


def test_no_secret_is_a_one_line_error(home: Path, tmp_path: Path) -> None:
    r = _export(home, tmp_path / "e.csv", "--pseudonymise")
    assert r.exit_code == 1 and "LMREC_PSEUDONYM_KEY" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "e.csv").exists()
    r = _export(home, tmp_path / "e.csv", "--pseudonymise", env={"LMREC_PSEUDONYM_KEY": "short"})
    assert r.exit_code == 1 and "at least 16" in r.output
    with pytest.raises(ValueError, match="key-file"):
        load_secret(tmp_path / "missing")


def test_plain_export_keeps_ids(home: Path, tmp_path: Path) -> None:
    with open_store(f"sqlite:///{home}/lmrec.db") as s:
        report = export_store(s, tmp_path / "plain.csv")
    assert report["rows"] == {str(tmp_path / "plain.csv"): 3, str(tmp_path / "plain.users.csv"): 3}
    assert "alice@example.com" in (tmp_path / "plain.csv").read_text()
