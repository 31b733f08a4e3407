"""Malformed input gets a 4xx that names the field; partial batches keep the good events."""

from __future__ import annotations

from typing import Any

import pytest
from test_api_helpers import Api, api, metric_value, store_url, views  # noqa: F401

LONG_ID = "x" * 257


def locs(r: Any) -> list[list[Any]]:
    return [d["loc"] for d in r.json()["detail"]]


@pytest.mark.parametrize(("path", "params", "loc"), [
    ("/recommend/u1", {"k": 0}, ["query", "k"]),
    ("/recommend/u1", {"k": 201}, ["query", "k"]),
    ("/recommend/u1", {"k": "ten"}, ["query", "k"]),
    ("/recommend/u1", {"explain": "maybe"}, ["query", "explain"]),
    (f"/recommend/{LONG_ID}", {}, ["path", "user_id"]),
    ("/recommend/%20padded", {}, ["path", "user_id"]),
    ("/search", {}, ["query", "q"]),
    ("/search", {"q": ""}, ["query", "q"]),
    ("/search", {"q": "   "}, ["query", "q"]),
    ("/search", {"q": "x" * 1001}, ["query", "q"]),
    ("/search", {"q": "ok", "k": -1}, ["query", "k"]),
    ("/search", {"q": "ok", "user_id": LONG_ID}, ["query", "user_id"]),
    ("/items/1/similar", {"k": 1000}, ["query", "k"]),
    (f"/items/{LONG_ID}/similar", {}, ["path", "item_id"]),
])
def test_bad_read_parameters(api: Api, path: str, params: dict[str, Any], loc: list[str]) -> None:
    r = api.client.get(path, params=params, headers=api.read)
    assert r.status_code == 422, r.text
    assert loc in locs(r)


@pytest.mark.parametrize(("body", "field"), [
    ({"title": "x" * 1001}, "title"),
    ({"text": "x" * 20_001}, "text"),
    ({"categories": "shoes"}, "categories"),
    ({"categories": ["ok", ""]}, "categories"),
    ({"categories": [f"c{i}" for i in range(65)]}, "categories"),
    ({"attributes": {f"a{i}": i for i in range(65)}}, "attributes"),
    ({"attributes": []}, "attributes"),
    ({"available": "perhaps"}, "available"),
    ({"titel": "typo"}, "titel"),
])
def test_bad_item_fields(api: Api, body: dict[str, Any], field: str) -> None:
    r = api.client.put("/items/x1", json=body, headers=api.write)
    assert r.status_code == 422, r.text
    assert any(loc[:2] == ["body", field] for loc in locs(r)), locs(r)
    assert api.engine.get_item("x1") is None


def test_bulk_items_are_validated_by_index(api: Api) -> None:
    body = {"items": [{"item_id": "ok", "title": "fine"}, {"item_id": "", "title": "no id"}]}
    r = api.client.post("/items", json=body, headers=api.write)
    assert r.status_code == 422 and ["body", "items", 1, "item_id"] in locs(r)
    assert api.engine.get_item("ok") is None
    dup = {"items": [{"item_id": "d", "title": "first"}, {"item_id": "e"}, {"item_id": "d", "title": "second"}]}
    assert api.client.post("/items", json=dup, headers=api.write).status_code == 200
    assert api.engine.get_item("d").title == "second"                  # the last one wins


def test_bad_user_fields(api: Api) -> None:
    r = api.client.put("/users/u1", json={"attributes": "tall"}, headers=api.write)
    assert r.status_code == 422 and ["body", "attributes"] in locs(r)
    r = api.client.put("/users/u1", json={"attributes": {"": 1}}, headers=api.write)
    assert r.status_code == 422 and ["body", "attributes", "", "[key]"] in locs(r)


def test_bad_admin_bodies(api: Api) -> None:
    r = api.client.post("/admin/reload", json={"version": 3}, headers=api.admin)
    assert r.status_code == 422 and ["body", "version"] in locs(r)
    r = api.client.post("/admin/train", json={"name": "ease", "activate": "soon"}, headers=api.admin)
    assert r.status_code == 422 and ["body", "activate"] in locs(r)


@pytest.mark.parametrize(("event", "field"), [
    ({"item_id": "1"}, "user_id"),
    ({"user_id": "u", "item_id": ""}, "item_id"),
    ({"user_id": "u", "item_id": LONG_ID}, "item_id"),
    ({"user_id": "u", "item_id": "1", "kind": "like"}, "kind"),
    ({"user_id": "u", "item_id": "1", "value": "high"}, "value"),
    ({"user_id": "u", "item_id": "1", "value": 1e9}, "value"),
    ({"user_id": "u", "item_id": "1", "timestamp": -5}, "timestamp"),
    ({"user_id": "u", "item_id": "1", "timestamp": 1.7e12}, "timestamp"),   # milliseconds, not seconds
    ({"user_id": "u", "item_id": "1", "ranking_id": ""}, "ranking_id"),
    ({"user_id": "u", "item_id": "1", "colour": "red"}, "colour"),
])
def test_a_single_bad_event_is_422_naming_the_field(api: Api, event: dict[str, Any], field: str) -> None:
    r = api.client.post("/events", json=event, headers=api.write)
    assert r.status_code == 422, r.text
    assert ["body", field] in locs(r)
    assert api.engine.store.count_events() == 0


def test_partial_batch_keeps_good_events_and_lists_bad_ones(api: Api) -> None:
    batch = [
        {"user_id": "u1", "item_id": "1"},
        {"user_id": "u1", "item_id": "2", "kind": "like"},
        {"user_id": "u2", "item_id": "3", "kind": "purchase"},
        {"user_id": "", "item_id": "4", "value": "lots"},
        "not an event",
    ]
    r = api.client.post("/events", json=batch, headers=api.write)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 2 and len(body["seqs"]) == 2
    rejected = {(x["index"], x["field"]) for x in body["rejected"]}
    assert rejected == {(1, "kind"), (3, "user_id"), (3, "value"), (4, "event")}
    assert all(x["reason"] for x in body["rejected"])
    stored = [(e.user_id, e.item_id, e.kind) for e in api.engine.store.events()]
    assert stored == [("u1", "1", "view"), ("u2", "3", "purchase")]
    text = api.client.get("/metrics").text
    assert metric_value(text, "lmrec_events_ingested_total") == 2
    assert metric_value(text, "lmrec_events_rejected_total", field="kind") == 1
    assert metric_value(text, "lmrec_events_rejected_total") == 4


@pytest.mark.parametrize("how", ["query", "body"])
def test_all_or_nothing_rejects_the_whole_batch(api: Api, how: str) -> None:
    batch = views("u1", ["1", "2"]) + [{"user_id": "u1", "item_id": "3", "kind": "like"}]
    if how == "query":
        r = api.client.post("/events", params={"all_or_nothing": True}, json=batch, headers=api.write)
    else:
        r = api.client.post("/events", json={"events": batch, "all_or_nothing": True}, headers=api.write)
    assert r.status_code == 422, r.text
    assert ["body", "events", 2, "kind"] in locs(r)
    assert r.json()["rejected"] == [{"index": 2, "field": "kind", "reason": r.json()["rejected"][0]["reason"]}]
    assert api.engine.store.count_events() == 0
    ok = api.client.post("/events", params={"all_or_nothing": True}, json=batch[:2], headers=api.write)
    assert ok.status_code == 200 and ok.json()["accepted"] == 2


@pytest.mark.parametrize(("content", "loc"), [
    (b"", ["body"]),
    (b"{not json", ["body"]),
    (b"42", ["body"]),
    (b"[]", ["body", "events"]),
    (b'{"events": {"user_id": "u"}}', ["body", "events"]),
    (b'{"events": [], "extra": 1}', ["body", "extra"]),
    (b'{"events": [{"user_id": "u", "item_id": "1"}], "all_or_nothing": "yes"}', ["body", "all_or_nothing"]),
])
def test_unusable_event_bodies(api: Api, content: bytes, loc: list[str]) -> None:
    r = api.client.post("/events", content=content, headers={**api.write, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert locs(r) == [loc]


def test_batch_size_is_limited(api: Api) -> None:
    limit = api.app.state.service.config.max_batch
    r = api.client.post("/events", json=views("u", ["1"] * (limit + 1)), headers=api.write)
    assert r.status_code == 422 and f"at most {limit}" in r.text and locs(r) == [["body", "events"]]
    items = {"items": [{"item_id": f"i{n}"} for n in range(limit + 1)]}
    r = api.client.post("/items", json=items, headers=api.write)
    assert r.status_code == 422 and locs(r) == [["body", "items"]]


def test_unknown_route_and_method(api: Api) -> None:
    r = api.client.get("/nope", headers=api.read)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert api.client.delete("/search", headers=api.admin).status_code == 405
