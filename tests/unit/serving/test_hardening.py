"""Regression tests for the outside test of the service (issue 14, item 5): far-future and zero
timestamps, log injection and PII in the access log, NaN / deep / huge JSON, NUL characters
on every backend, ids with '/', and private database files."""

from __future__ import annotations

import logging
import stat
import time
from pathlib import Path

import numpy as np
import pytest
from test_api_helpers import Api, api, running_api, store_url  # noqa: F401

from lmrec.data.dataset import Dataset, IdMap, Interactions
from lmrec.recall.popular import MostPopular
from lmrec.serving.masking import ACCESS_LOGGER, Masker, escape_control
from lmrec.stores.records import EventRecord, ItemRecord, UserRecord
from lmrec.stores.sql import open_store
from lmrec.types import Event

DAY = 86_400.0


def _reasons(r) -> list[tuple[str, str]]:
    body = r.json()
    return [(".".join(str(p) for p in d["loc"]), d["msg"]) for d in body["detail"]]


# ---- timestamps -----------------------------------------------------------------------------


def test_far_future_event_is_refused_naming_the_field(api: Api) -> None:
    now = time.time()
    r = api.client.post("/events", json={"user_id": "u1", "item_id": "1", "timestamp": 4_000_000_000.0},
                        headers=api.write)
    assert r.status_code == 422
    (loc, msg), = _reasons(r)
    assert loc == "body.timestamp" and "max_future_seconds" in msg
    # within the window (an hour ahead: clocks differ) is fine
    ok = api.client.post("/events", json={"user_id": "u1", "item_id": "1", "timestamp": now + 3600},
                         headers=api.write)
    assert ok.status_code == 200 and ok.json()["accepted"] == 1
    # in a batch, only the bad event is rejected
    r = api.client.post("/events", json=[{"user_id": "u1", "item_id": "2", "timestamp": now},
                                         {"user_id": "u1", "item_id": "3", "timestamp": now + 3 * DAY}],
                        headers=api.write)
    assert r.json()["accepted"] == 1 and r.json()["rejected"][0]["field"] == "timestamp"


def test_future_window_is_a_setting(tmp_path: Path) -> None:
    with running_api(tmp_path, f"sqlite:///{tmp_path}/db.sqlite", max_future_seconds=60.0) as a:
        body = {"user_id": "u1", "item_id": "1", "timestamp": time.time() + 3600}
        assert a.client.post("/events", json=body, headers=a.write).status_code == 422
    with running_api(tmp_path / "b", f"sqlite:///{tmp_path}/b.sqlite", max_future_seconds=7200.0) as a:
        assert a.client.post("/events", json=body, headers=a.write).status_code == 200


def test_timestamp_zero_is_refused_not_read_as_now(api: Api) -> None:
    r = api.client.post("/events", json={"user_id": "u1", "item_id": "1", "timestamp": 0}, headers=api.write)
    assert r.status_code == 422 and _reasons(r)[0][0] == "body.timestamp"
    assert api.engine.store.count_events() == 0
    # leaving it out is how a client asks for the server's time
    before = time.time()
    assert api.client.post("/events", json={"user_id": "u1", "item_id": "1"}, headers=api.write).status_code == 200
    stored = list(api.engine.store.events())
    assert len(stored) == 1 and stored[0].timestamp >= before - 1


def _pop_dataset(n_items: int = 5) -> tuple[Dataset, Interactions]:
    now = time.time()
    # item 0 is the most popular, then 1, 2, ...: 10, 8, 6, 4, 2 events over the last days
    items = np.repeat(np.arange(n_items), [10 - 2 * i for i in range(n_items)])
    ts = now - DAY * (1 + np.arange(len(items)) % 5)
    inter = Interactions(np.arange(len(items)) % 7, items, ts.astype(np.int64))
    ds = Dataset("pop", IdMap([f"u{i}" for i in range(7)]), IdMap([str(i) for i in range(n_items)]), inter,
                 has_timestamps=True)
    return ds, inter


def test_one_far_future_event_does_not_zero_decayed_popularity() -> None:
    ds, inter = _pop_dataset()
    model = MostPopular(half_life_days=7.0).fit(inter, ds)
    before = model.popularity.copy()
    model.update([Event(0, 4, 4_102_444_799)])  # stamped 2099, for the least popular item
    after = model.popularity
    # the others keep their counts (at most a day of extra decay), and the order stays
    assert (after[:4] > 0.8 * before[:4]).all()
    assert np.argsort(-after)[:4].tolist() == [0, 1, 2, 3]
    # ... and real events keep counting
    model.update([Event(1, 3, int(time.time()))] * 3)
    assert model.popularity[3] > after[3] + 2.5


def test_far_future_event_in_the_training_data_is_clamped() -> None:
    ds, inter = _pop_dataset()
    bad = Interactions.concat([inter, Interactions(np.array([0]), np.array([4]), np.array([4_102_444_799]))])
    model = MostPopular(half_life_days=7.0).fit(bad, ds)
    pop = model.popularity
    assert np.argsort(-pop)[:4].tolist() == [0, 1, 2, 3] and pop[0] > 5


# ---- the access log -------------------------------------------------------------------------


def test_escape_control_and_masking_unit() -> None:
    assert escape_control("a\nb\rc\x1b[2J\x00d\\") == "a\\nb\\rc\\x1b[2J\\x00d\\\\"
    assert escape_control("line\u2028sep\x85") == "line\\u2028sep\\x85"
    m = Masker(b"k" * 32)
    for pii in ("ann.lee@mail.example.co.uk", "+49 170 1234567", "(555) 123-4567", "555-123-4567"):
        out = m.clean(f"id {pii} x")
        assert pii not in out and m.mask(pii) in out and out.startswith("id <") and out.endswith("> x")
    for plain in ("B00ABC1234", "12345678901", "sku-2024-01", "2024-01-31", "v1.2.3"):
        assert m.clean(plain) == plain  # numeric and dated catalog ids stay readable
    assert Masker(b"k", raw=True).clean("a@b.io\n") == "a@b.io\\n"  # raw: PII kept, still escaped


@pytest.mark.parametrize("auth", [True, False], ids=["with-key", "no-key-401"])
def test_access_log_cannot_be_forged_and_hides_pii(api: Api, caplog, auth: bool) -> None:
    headers = api.read if auth else {}
    forged = "x%0ADELETE%20%7Bitem_id%7D%20200%201.0ms%20key=admin%0D%1B[2J%00"
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        r1 = api.client.get(f"/items/{forged}", headers=headers)
        r2 = api.client.get("/items/bob.jones@example.com", headers=headers)
        r3 = api.client.get("/items/+1%20555%20123%204567/similar", headers=headers)
    assert r1.status_code == (422 if auth else 401)
    assert r2.status_code == (404 if auth else 401) and r3.status_code in ((404, 401) if not auth else (404,))
    lines = [rec.getMessage() for rec in caplog.records if rec.name == ACCESS_LOGGER]
    assert len(lines) == 3
    for line in lines:
        assert not any(c in line for c in "\n\r\x1b\x00"), repr(line)
    assert "x\\nDELETE {item_id} 200" in lines[0] and "\\x1b[2J\\x00" in lines[0]
    assert "bob.jones" not in caplog.text and "555 123" not in caplog.text
    masker = api.app.state.service.masker
    assert f"item=<email {masker.mask('bob.jones@example.com')}>" in lines[1]
    assert "item=<phone h:" in lines[2]


# ---- bodies the parser or the stores choked on --------------------------------------------------


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_in_attributes_are_4xx(api: Api, literal: str) -> None:
    body = '{"title": "t", "attributes": {"price": %s}}' % literal
    r = api.client.put("/items/n1", content=body, headers={**api.write, "content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert "finite" in r.text
    nested = '{"attributes": {"dims": [1, {"w": %s}]}}' % literal
    r = api.client.put("/users/u9", content=nested, headers={**api.write, "content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert api.engine.get_item("n1") is None


def test_deeply_nested_and_huge_integer_bodies_are_4xx(api: Api) -> None:
    deep = "[" * 5000 + "]" * 5000
    r = api.client.post("/events", content=deep, headers={**api.write, "content-type": "application/json"})
    assert r.status_code == 422 and "nested too deeply" in r.text
    huge = '{"user_id": "u1", "item_id": "1", "value": 1%s}' % ("0" * 5000)
    r = api.client.post("/events", content=huge, headers={**api.write, "content-type": "application/json"})
    assert r.status_code == 422 and "json_invalid" in r.text
    # nesting inside attributes is bounded with a reason
    value: object = 1
    for _ in range(40):
        value = [value]
    r = api.client.put("/items/d1", json={"attributes": {"a": value}}, headers=api.write)
    assert r.status_code == 422 and "levels" in r.text
    deep_item = '{"attributes": {"a": %s}}' % ("[" * 5000 + "]" * 5000)
    r = api.client.put("/items/d2", content=deep_item, headers={**api.write, "content-type": "application/json"})
    assert 400 <= r.status_code < 500


@pytest.mark.parametrize("body", [{"title": "a\u0000b"}, {"text": "\u0000"},
                                  {"attributes": {"brand": "x\u0000"}}, {"attributes": {"k\u0000": 1}},
                                  {"attributes": {"tags": ["ok", "n\u0000"]}}])
def test_nul_characters_are_refused_by_the_api(api: Api, body: dict) -> None:
    r = api.client.put("/items/nul", json=body, headers=api.write)
    assert r.status_code == 422 and "NUL" in r.text, r.text


def test_nul_characters_are_refused_by_every_store(store_url: str) -> None:  # noqa: F811
    """SQLite could store them and PostgreSQL cannot: both refuse, with the same message."""
    store = open_store(store_url)
    try:
        bad_items = [ItemRecord("i1", title="a\x00"), ItemRecord("i1", text="\x00"),
                     ItemRecord("i1", attributes={"b": "\x00"}), ItemRecord("i1", attributes={"\x00": 1}),
                     ItemRecord("i\x00", title="t"), ItemRecord("i1", categories=("c\x00",))]
        for item in bad_items:
            with pytest.raises(ValueError, match="NUL"):
                store.upsert_items([item])
        with pytest.raises(ValueError, match="NUL"):
            store.upsert_user(UserRecord("u1", attributes={"city": "x\x00y"}))
        with pytest.raises(ValueError, match="NUL"):
            store.append_events([EventRecord("u\x00", "i1", "view", 1.0, 1e9)])
        with pytest.raises(ValueError, match="finite"):
            store.upsert_user(UserRecord("u1", attributes={"h": [float("nan")]}))
        assert store.count_items() == 0 and store.get_user("u1") is None and store.count_events() == 0
    finally:
        store.close()


# ---- ids with '/' ---------------------------------------------------------------------------------


def test_ids_with_a_slash_are_refused_with_a_reason(api: Api) -> None:
    r = api.client.post("/events", json={"user_id": "a/b", "item_id": "1"}, headers=api.write)
    assert r.status_code == 422
    (loc, msg), = _reasons(r)
    assert loc == "body.user_id" and "'/'" in msg and len(msg) < 120
    r = api.client.post("/items", json={"items": [{"item_id": "shoes/red", "title": "x"}]}, headers=api.write)
    assert r.status_code == 422 and "'/'" in r.text and "\\x00-" not in r.text  # no regex in the reason
    # other id problems get reasons too, also for path parameters
    r = api.client.get("/items/%20padded", headers=api.read)
    assert r.status_code == 422 and "whitespace" in r.text and "\\x00-" not in r.text
    r = api.client.get("/search", params={"q": "x", "user_id": "a/b"}, headers=api.read)
    assert r.status_code == 422 and "'/'" in r.text
    # the pattern stays in the published schema, '/' excluded
    schema = api.client.get("/openapi.json").json()
    param = next(p for p in schema["paths"]["/items/{item_id}"]["get"]["parameters"] if p["name"] == "item_id")
    import re

    pattern = param["schema"]["pattern"]
    assert re.search(pattern, "ok-id") and not re.search(pattern, "a/b")


# ---- files ------------------------------------------------------------------------------------------


def test_sqlite_files_are_private(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/data/lmrec.db")
    try:
        store.append_events([EventRecord("u1", "i1", "view", 1.0, 1e9)])
        files = sorted(p.name for p in (tmp_path / "data").iterdir())
        assert "lmrec.db" in files
        for name in files:  # the database and its -wal / -shm files
            mode = stat.S_IMODE((tmp_path / "data" / name).stat().st_mode)
            assert mode & 0o077 == 0, f"{name} is {oct(mode)}"
    finally:
        store.close()

