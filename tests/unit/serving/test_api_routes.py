"""Happy paths of every route, and the effects a platform relies on: an event changes the next
recommendation, a new item is found by search at once, rankings join later events."""

from __future__ import annotations

from collections import Counter

from pathlib import Path

from test_api_helpers import (Api, api, ease_config, genre_ids, item_ids, store_url, toy_items,  # noqa: F401
                              views)


def test_probes(api: Api) -> None:
    assert api.client.get("/health").json() == {"status": "ok"}
    r = api.client.get("/ready")
    assert r.status_code == 200 and r.json()["ready"] is True
    assert r.json()["model_version"] == api.engine.model_version and r.json()["model_version"].endswith("serve-default")
    assert "/recommend/{user_id}" in api.client.get("/openapi.json").json()["paths"]
    assert api.client.get("/docs").status_code == 200


def test_recommend_returns_a_logged_ranking(api: Api) -> None:
    r = api.client.get("/recommend/new-user", params={"k": 5}, headers=api.read)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["items"]) == 5 and len(set(item_ids(body))) == 5
    assert body["model_version"] == api.engine.model_version and body["ranking_id"]
    assert all(isinstance(i["score"], float) and i["sources"] for i in body["items"])
    assert "total" in body["timings_ms"]
    api.engine.flush_rankings()
    logged = api.engine.store.get_ranking(body["ranking_id"])
    assert logged is not None and list(logged.item_ids) == item_ids(body) and logged.endpoint == "recommend"


def test_event_changes_the_next_recommendation(api: Api) -> None:
    comedy = genre_ids("comedy")
    before = api.client.get("/recommend/fan", params={"k": 6}, headers=api.read).json()
    r = api.client.post("/events", json=views("fan", comedy[:4], kind="click"), headers=api.write)
    assert r.status_code == 200 and r.json()["accepted"] == 4 and r.json()["rejected"] == []
    after = api.client.get("/recommend/fan", params={"k": 6}, headers=api.read).json()
    assert item_ids(after) != item_ids(before)
    assert not set(item_ids(after)) & set(comedy[:4])          # consumed items are not recommended again
    genres = Counter(api.engine.get_item(i).categories[0] for i in item_ids(after))
    assert genres.most_common(1)[0][0] == "comedy", genres


def test_events_single_and_wrapped_batch(api: Api) -> None:
    one = api.client.post("/events", json={"user_id": "u1", "item_id": "1", "kind": "rating", "value": 4.5},
                          headers=api.write)
    assert one.status_code == 200, one.text
    batch = api.client.post("/events", json={"events": views("u2", ["2", "3"])}, headers=api.write)
    assert batch.status_code == 200
    seqs = one.json()["seqs"] + batch.json()["seqs"]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    stored = list(api.engine.store.events())
    assert [(e.user_id, e.item_id, e.kind, e.value) for e in stored] == [
        ("u1", "1", "rating", 4.5), ("u2", "2", "view", 1.0), ("u2", "3", "view", 1.0)]
    assert stored[0].timestamp > 1.7e9       # no timestamp given: the server's clock


def test_event_carries_its_ranking_id(api: Api) -> None:
    ranking = api.client.get("/recommend/u9", params={"k": 3}, headers=api.read).json()
    clicked = ranking["items"][0]["item_id"]
    r = api.client.post("/events", json={"user_id": "u9", "item_id": clicked, "kind": "click",
                                         "ranking_id": ranking["ranking_id"]}, headers=api.write)
    assert r.status_code == 200
    event = next(iter(api.engine.store.events(user_id="u9")))
    assert event.ranking_id == ranking["ranking_id"]
    api.engine.flush_rankings()
    assert clicked in api.engine.store.get_ranking(event.ranking_id).item_ids


def test_new_item_is_found_by_search_at_once(api: Api) -> None:
    query = "zanzibar copper kettle"
    assert "new-1" not in item_ids(api.client.get("/search", params={"q": query}, headers=api.read).json())
    r = api.client.put("/items/new-1", json={"title": "Zanzibar copper kettle", "text": "Hand-hammered.",
                                             "categories": ["kitchen"], "attributes": {"price": 39.5}},
                       headers=api.write)
    assert r.status_code == 200, r.text
    assert r.json()["item_id"] == "new-1" and r.json()["attributes"] == {"price": 39.5}
    hits = api.client.get("/search", params={"q": query, "k": 3}, headers=api.read).json()
    assert item_ids(hits)[0] == "new-1" and "bm25" in hits["items"][0]["sources"]
    got = api.client.get("/items/new-1", headers=api.read).json()
    assert got["title"] == "Zanzibar copper kettle" and got["categories"] == ["kitchen"]


def test_bulk_upsert_and_delete(api: Api) -> None:
    body = {"items": [{"item_id": f"b{i}", "title": f"quokka plush toy {i}"} for i in range(5)]}
    r = api.client.post("/items", json=body, headers=api.write)
    assert r.status_code == 200 and r.json() == {"upserted": 5}
    assert api.engine.store.count_items() == 48 + 5
    found = item_ids(api.client.get("/search", params={"q": "quokka plush", "k": 5}, headers=api.read).json())
    assert set(found) == {f"b{i}" for i in range(5)}
    assert api.client.delete("/items/b0", headers=api.write).json() == {"deleted": True}
    assert api.client.delete("/items/b0", headers=api.write).status_code == 404
    assert api.client.get("/items/b0", headers=api.read).status_code == 404
    found = item_ids(api.client.get("/search", params={"q": "quokka plush", "k": 5}, headers=api.read).json())
    assert "b0" not in found


def test_put_user(api: Api) -> None:
    r = api.client.put("/users/u7", json={"attributes": {"country": "NZ", "age": 33}}, headers=api.write)
    assert r.status_code == 200 and r.json()["user_id"] == "u7"
    assert api.engine.store.get_user("u7").attributes == {"country": "NZ", "age": 33}


def test_search_personalised_and_explained(api: Api) -> None:
    api.client.post("/events", json=views("h", genre_ids("horror")[:4]), headers=api.write)
    r = api.client.get("/search", params={"q": "movie", "k": 5, "user_id": "h", "explain": "true"},
                       headers=api.read)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["items"]) == 5 and all(isinstance(i["explanation"], dict) for i in body["items"])
    plain = api.client.get("/search", params={"q": "movie", "k": 5}, headers=api.read).json()
    assert all(i["explanation"] is None for i in plain["items"])


def test_similar(api: Api) -> None:
    r = api.client.get("/items/1/similar", params={"k": 4, "explain": True}, headers=api.read)
    assert r.status_code == 200
    ids = item_ids(r.json())
    assert len(ids) == 4 and "1" not in ids and r.json()["ranking_id"]
    missing = api.client.get("/items/nope/similar", headers=api.read)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_train_reload_and_stats(api: Api, tmp_path: Path) -> None:
    events = []
    for u in range(12):
        events += views(f"t{u}", genre_ids(["drama", "scifi"][u % 2])[:5])
    assert api.client.post("/events", json=events, headers=api.write).json()["accepted"] == len(events)
    cfg = ease_config(tmp_path / "cfg")
    trained = api.client.post("/admin/train", json={"config": cfg}, headers=api.admin)
    assert trained.status_code == 200, trained.text
    v1 = trained.json()["model_version"]
    assert trained.json()["active"] is True and trained.json()["state"] == "done"
    body = api.client.get("/recommend/t0", params={"explain": "true"}, headers=api.read).json()
    assert body["model_version"] == v1 and all("ease" in i["sources"] for i in body["items"])
    v2 = api.client.post("/admin/train", json={"config": cfg, "overrides": {"channels": [
        {"name": "ease", "params": {"lam": 2.0}}]}, "activate": False}, headers=api.admin).json()["model_version"]
    assert api.client.get("/recommend/t0", headers=api.read).json()["model_version"] == v1
    assert api.client.post("/admin/reload", json={}, headers=api.admin).json() == {"model_version": v2}
    assert api.client.post("/admin/reload", json={"version": v1}, headers=api.admin).json() == {"model_version": v1}
    assert api.client.get("/recommend/t0", headers=api.read).json()["model_version"] == v1
    missing = api.client.post("/admin/reload", json={"version": "19990101-nope"}, headers=api.admin)
    assert missing.status_code == 404
    stats = api.client.get("/admin/stats", headers=api.admin).json()
    assert stats["n_items"] == 48 and stats["n_events"] == len(events) and stats["model_version"] == v1
    assert stats["pipeline"]["channels"] == ["ease", "popular"] and stats["training"]["state"] == "idle"


def test_background_training_answers_202(api: Api, tmp_path: Path) -> None:
    import time

    api.client.post("/events", json=views("bg", genre_ids("drama")[:5]), headers=api.write)
    old = api.engine.model_version
    r = api.client.post("/admin/train", json={"config": ease_config(tmp_path / "cfg"), "wait": False},
                        headers=api.admin)
    assert r.status_code == 202 and r.json() == {"model_version": None, "active": False, "state": "started"}
    deadline = time.monotonic() + 30
    while api.client.get("/admin/stats", headers=api.admin).json()["model_version"] == old:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert api.client.get("/recommend/bg", headers=api.read).status_code == 200


def test_train_errors_name_the_field(api: Api) -> None:
    empty = api.client.post("/admin/train", json={"config": "default", "overrides": {"encoder": "fake"}},
                            headers=api.admin)
    assert empty.status_code == 409 and "rank.window" in empty.json()["detail"]
    unknown = api.client.post("/admin/train", json={"config": "nosuchconfig"}, headers=api.admin)
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["body", "config"]
    bad = api.client.post("/admin/train", json={"config": "serve-default", "overrides": {"channels": [
        {"name": "lm", "params": {"half_life": "long"}}]}}, headers=api.admin)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "overrides"]
    assert "half_life" in bad.json()["detail"][0]["msg"]


def test_reload_serves_the_newest_version(api: Api) -> None:
    r = api.client.post("/admin/reload", headers=api.admin)
    assert r.status_code == 200 and r.json() == {"model_version": api.engine.model_versions()[-1]}


def test_toy_catalog_is_what_the_tests_assume() -> None:
    assert len(toy_items()) == 48 and len(genre_ids("comedy")) == 8
