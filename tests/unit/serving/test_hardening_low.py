"""Regression tests for the "Low" findings of the outside test of the service (issue 14, item 5):
failed authentication is rate-limited per client address, id errors give a reason instead of a
regex, the index rebuilt at open is deterministic, and Redis state gets the events replayed at
open."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient
from test_api_helpers import Api, api, running_api, store_url  # noqa: F401

# ---- failed authentication is rate-limited ----------------------------------------------------------


def test_failed_authentication_is_rate_limited_per_address(tmp_path: Path) -> None:
    with running_api(tmp_path, f"sqlite:///{tmp_path}/db.sqlite", auth_failure_rps=0.01,
                     auth_failure_burst=5) as a:
        wrong = {"Authorization": "Bearer lmr_000000000000_" + "x" * 43}
        codes = [a.client.get("/recommend/u1", headers=wrong).status_code for _ in range(5)]
        assert codes == [401] * 5
        # past the burst: 429 with Retry-After, for a wrong key, a malformed one and no key alike
        for headers in (wrong, {"X-API-Key": "nonsense"}, {}):
            r = a.client.get("/recommend/u1", headers=headers)
            assert r.status_code == 429 and r.json()["error"] == "rate_limited", r.text
            assert "failed authentications" in r.json()["detail"] and int(r.headers["Retry-After"]) >= 1
        # a valid key from the same address is unaffected (its own, ordinary bucket)
        assert a.client.get("/recommend/u1", headers=a.read).status_code == 200
        assert a.client.post("/events", json={"user_id": "u1", "item_id": "1"}, headers=a.write).status_code == 200
        # another address has its own failure bucket
        with TestClient(a.app, client=("10.0.0.2", 1234)) as other:
            assert other.get("/recommend/u1", headers=wrong).status_code == 401
        assert "lmrec_rate_limited_total 3.0" in a.client.get("/metrics").text


def test_failed_authentication_limit_can_be_turned_off(tmp_path: Path) -> None:
    with running_api(tmp_path, f"sqlite:///{tmp_path}/db.sqlite", auth_failure_rps=0, auth_failure_burst=1) as a:
        codes = {a.client.get("/recommend/u1", headers={"X-API-Key": "nonsense"}).status_code for _ in range(30)}
        assert codes == {401}


# ---- id errors give a reason -------------------------------------------------------------------------


def test_id_errors_name_the_field_and_give_a_reason(api: Api) -> None:
    cases = [("post", "/events", {"user_id": "a\x1bb", "item_id": "1"}, "body.user_id", "control characters"),
             ("post", "/events", {"user_id": "u", "item_id": " 1"}, "body.item_id", "whitespace"),
             ("put", "/users/a%0Ab", {"attributes": {}}, "path.user_id", "control characters"),
             ("get", "/items/%E2%80%83x", None, "path.item_id", "whitespace"),
             ("get", "/recommend/%7F", None, "path.user_id", "control characters")]
    for method, path, body, loc, reason in cases:
        kw = {"json": body} if body is not None else {}
        r = getattr(api.client, method)(path, headers=api.admin, **kw)
        assert r.status_code == 422, (path, r.text)
        details = r.json()["detail"]
        assert any(".".join(map(str, d["loc"])) == loc and reason in d["msg"] for d in details), (path, details)
        assert "\\x00-" not in r.text and "[^" not in r.text and len(r.text) < 600   # no regex quoted
