"""More regression tests for the outside test of the service (issue 14, item 5): a batch of
only invalid events is a 422, not 200 "accepted: 0"; a body over the limit is a JSON 413 however
it is refused."""

from __future__ import annotations

from pathlib import Path

from test_api_helpers import Api, api, running_api, store_url  # noqa: F401


def test_a_batch_of_only_invalid_events_is_422(api: Api) -> None:
    bad = [{"user_id": "u1", "item_id": "1", "kind": "bogus"}, {"user_id": "u1", "item_id": "2", "value": "x"}]
    r = api.client.post("/events", json=bad, headers=api.write)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["detail"][0]["loc"] == ["body", "events", 0, "kind"]
    assert [b["field"] for b in body["rejected"]] == ["kind", "value"]
    assert api.engine.store.count_events() == 0
    # one valid event among them: the valid one is stored, the others listed (as before)
    r = api.client.post("/events", json=[*bad, {"user_id": "u1", "item_id": "3"}], headers=api.write)
    assert r.status_code == 200 and r.json()["accepted"] == 1 and len(r.json()["rejected"]) == 2


def test_too_large_is_json_from_content_length_and_from_the_stream(tmp_path: Path) -> None:
    with running_api(tmp_path, f"sqlite:///{tmp_path}/db.sqlite", max_body_bytes=2048) as a:
        for method, path, body in (("put", "/items/big", {"title": "x" * 4000}),
                                   ("post", "/events", [{"user_id": "u", "item_id": "1"}] * 200)):
            r = a.client.request(method, path, json=body, headers=a.write)
            assert r.status_code == 413 and r.headers["content-type"] == "application/json", r.text
            assert r.json() == {"error": "request_entity_too_large",
                                "detail": "the request body is larger than 2048 bytes (max_body_bytes)"}
            assert int(r.headers["content-length"]) == len(r.content)

        def chunks():
            for _ in range(5):
                yield b"[" + b" " * 1000

        r = a.client.post("/events", content=chunks(), headers={**a.write, "Content-Type": "application/json"})
        assert r.status_code == 413 and r.headers["content-type"] == "application/json"
        assert r.json()["error"] == "request_entity_too_large"


def test_idempotency_key_applies_a_retried_batch_once(api: Api) -> None:
    batch = [{"user_id": "u1", "item_id": "1", "timestamp": 1_000_000.0},
             {"user_id": "u1", "item_id": "bogus/id"},
             {"user_id": "u2", "item_id": "2", "timestamp": 1_000_001.0}]
    first = api.client.post("/events", json=batch, headers={**api.write, "Idempotency-Key": "batch-42"})
    assert first.status_code == 200, first.text
    assert first.json()["accepted"] == 2 and first.json()["replayed"] == 0 and len(first.json()["rejected"]) == 1
    retry = api.client.post("/events", json=batch, headers={**api.write, "Idempotency-Key": "batch-42"})
    assert retry.status_code == 200 and retry.json()["accepted"] == 0 and retry.json()["replayed"] == 2
    assert retry.json()["seqs"] == []
    assert api.engine.store.count_events() == 2
    assert api.engine.pipeline.history.n_events(api.engine.pipeline.dataset.users.index("u1")) == 1
    # another key (or another API key with the same header): a new batch
    other = api.client.post("/events", json=batch, headers={**api.write, "Idempotency-Key": "batch-43"})
    assert other.json()["accepted"] == 2
    admin = api.client.post("/events", json=batch, headers={**api.admin, "Idempotency-Key": "batch-42"})
    assert admin.json()["accepted"] == 2
    assert api.engine.store.count_events() == 6
    # without the header nothing changes: every request is stored
    assert api.client.post("/events", json=batch, headers=api.write).json()["accepted"] == 2
    bad = api.client.post("/events", json=batch, headers={**api.write, "Idempotency-Key": "x" * 200})
    assert bad.status_code == 422
