"""Listing the catalog and the users, reading a user's history, item fields inline in rankings
and the setting for events about unknown items (issue 16, item 6) — through the HTTP API."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_api_helpers import Api, api, item_ids, running_api, store_url, toy_items, views  # noqa: F401


def _pages(api: Api, path: str, key: str, limit: int, **params: str) -> list[list[dict]]:
    """Every page of a cursor listing, following `next` (passed back as `after`)."""
    pages, after = [], ""
    while True:
        r = api.client.get(path, params={"limit": limit, "after": after, **params}, headers=api.read)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append(body[key])
        if body["next"] is None:
            return pages
        after = body["next"]
        assert len(pages) < 100


def test_items_are_listed_in_pages(api: Api) -> None:
    pages = _pages(api, "/items", "items", limit=10)
    assert [len(p) for p in pages] == [10, 10, 10, 10, 8]
    ids = [i["item_id"] for p in pages for i in p]
    expected = sorted(r.item_id for r in toy_items())
    assert ids == expected                                 # every item once, in id order
    first = api.client.get("/items", params={"limit": 1}, headers=api.read).json()
    assert first["total"] == 48 and first["items"][0]["title"] == api.engine.get_item(expected[0]).title
    # a deleted item leaves the listing; an exact last page has no next
    assert api.client.delete(f"/items/{expected[-1]}", headers=api.write).status_code == 200
    last = api.client.get("/items", params={"limit": 100}, headers=api.read).json()
    assert last["next"] is None and len(last["items"]) == last["total"] == 47


def test_users_are_listed_from_events_and_records(api: Api) -> None:
    api.client.post("/events", json=views("bob", ["1", "2"]) + views("al", ["3"]), headers=api.write)
    api.client.put("/users/cy", json={"attributes": {"age": 30}}, headers=api.write)
    api.client.put("/users/bob", json={"attributes": {"country": "NZ"}}, headers=api.write)
    pages = _pages(api, "/users", "users", limit=2)
    users = [u for p in pages for u in p]
    assert [len(p) for p in pages] == [2, 1]
    assert [u["user_id"] for u in users] == ["al", "bob", "cy"]
    assert users[0] == {"user_id": "al", "attributes": {}, "updated_at": None}        # events only
    assert users[1]["attributes"] == {"country": "NZ"} and users[2]["attributes"] == {"age": 30}


def test_history_is_paged_newest_first_with_item_fields(api: Api) -> None:
    seqs = api.client.post("/events", json=views("dee", ["1", "2", "3", "4", "5"], kind="click"),
                           headers=api.write).json()["seqs"]
    api.client.post("/events", json=views("other", ["6"]), headers=api.write)
    r = api.client.get("/users/dee/history", params={"limit": 2, "fields": "title,categories"}, headers=api.read)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 5 and [e["item_id"] for e in body["events"]] == ["5", "4"]
    assert [e["seq"] for e in body["events"]] == seqs[:-3:-1] and body["next"] == seqs[3]
    five = api.engine.get_item("5")
    assert body["events"][0]["item"] == {"title": five.title, "categories": list(five.categories)}
    assert body["events"][0]["kind"] == "click" and body["events"][0]["timestamp"] == 1_000_004.0
    older = api.client.get("/users/dee/history", params={"limit": 2, "before": body["next"]}, headers=api.read).json()
    assert [e["item_id"] for e in older["events"]] == ["3", "2"] and "item" not in older["events"][0]
    rest = api.client.get("/users/dee/history", params={"before": older["next"]}, headers=api.read).json()
    assert [e["item_id"] for e in rest["events"]] == ["1"] and rest["next"] is None


def test_history_of_an_unknown_user_is_404(api: Api) -> None:
    r = api.client.get("/users/nobody/history", headers=api.read)
    assert r.status_code == 404 and "nobody" in r.json()["detail"]
    api.client.put("/users/nobody", json={"attributes": {}}, headers=api.write)
    r = api.client.get("/users/nobody/history", headers=api.read)        # known, no events yet
    assert r.status_code == 200 and r.json()["events"] == [] and r.json()["total"] == 0


@pytest.mark.parametrize("path", ["/recommend/fan", "/search", "/items/1/similar"])
def test_rankings_carry_the_asked_item_fields(api: Api, path: str) -> None:
    params = {"k": 4, **({"q": "comedy movie"} if path == "/search" else {})}
    plain = api.client.get(path, params=params, headers=api.read).json()
    assert all("item" not in i for i in plain["items"])                 # unchanged without ?fields=
    r = api.client.get(path, params={**params, "fields": "title, categories,title"}, headers=api.read)
    assert r.status_code == 200, r.text
    for entry in r.json()["items"]:
        record = api.engine.get_item(entry["item_id"])
        assert entry["item"] == {"title": record.title, "categories": list(record.categories)}
    every = api.client.get(path, params={**params, "fields": "title,text,categories,attributes,available,created_at,"
                                                             "updated_at"}, headers=api.read).json()
    assert set(every["items"][0]["item"]) == {"title", "text", "categories", "attributes", "available", "created_at",
                                              "updated_at"}


def test_unknown_item_field_is_a_422_naming_the_parameter(api: Api) -> None:
    r = api.client.get("/recommend/fan", params={"fields": "title,price"}, headers=api.read)
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["query", "fields"] and "'price'" in err["msg"] and "title" in err["msg"]
    for bad, why in ((",", "separated by commas"), ("title,,categories", "separated by commas"),
                     ("title\tcategories", "unknown item field(s) 'title\\tcategories'")):
        r = api.client.get("/users/x/history", params={"fields": bad}, headers=api.read)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "fields"], bad
        assert why in r.json()["detail"][0]["msg"]


def test_a_cursor_must_be_an_id(api: Api) -> None:
    for path in ("/items", "/users"):
        r = api.client.get(path, params={"after": "a\x00b"}, headers=api.read)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "after"]
        assert "control characters" in r.json()["detail"][0]["msg"]


def test_events_for_unknown_items_are_accepted_and_counted_by_default(api: Api) -> None:
    r = api.client.post("/events", json=views("eve", ["1", "no-such-item", "2"]), headers=api.write)
    assert r.status_code == 200
    assert r.json()["accepted"] == 3 and r.json()["unknown_items"] == 1 and r.json()["rejected"] == []
    assert [e.item_id for e in api.engine.store.events(user_id="eve")] == ["1", "no-such-item", "2"]


def test_events_for_unknown_items_are_rejected_when_set(tmp_path: Path, store_url: str) -> None:  # noqa: F811
    with running_api(tmp_path / "home", store_url, unknown_item_events="reject") as api:
        r = api.client.post("/events", json=views("eve", ["1", "ghost", "2", "ghost-2"]), headers=api.write)
        assert r.status_code == 200
        body = r.json()
        assert body["accepted"] == 2 and body["unknown_items"] == 2
        assert [(x["index"], x["field"]) for x in body["rejected"]] == [(1, "item_id"), (3, "item_id")]
        assert "'ghost' is not in the catalog" in body["rejected"][0]["reason"]
        assert [e.item_id for e in api.engine.store.events(user_id="eve")] == ["1", "2"]
        one = api.client.post("/events", json={"user_id": "eve", "item_id": "ghost"}, headers=api.write)
        assert one.status_code == 422 and one.json()["detail"][0]["loc"] == ["body", "item_id"]
        strict = api.client.post("/events", json={"events": views("eve", ["3", "ghost"]), "all_or_nothing": True},
                                 headers=api.write)
        assert strict.status_code == 422 and strict.json()["detail"][0]["loc"] == ["body", "events", 1, "item_id"]
        assert len(list(api.engine.store.events(user_id="eve"))) == 2      # nothing of the refused batches


def test_listings_need_the_read_scope(api: Api) -> None:
    for path in ("/items", "/users", "/users/u/history"):
        assert api.client.get(path).status_code == 401
    assert api.client.get("/items", params={"limit": 0}, headers=api.read).status_code == 422
    assert api.client.get("/items", params={"limit": 1001}, headers=api.read).status_code == 422
