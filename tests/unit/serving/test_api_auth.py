"""API keys and scopes (401 vs 403), the rate limiter (429) and the body size limit (413)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_api_helpers import Api, api, running_api, store_url  # noqa: F401

from lmrec.serving.auth import (ApiKeyVerifier, AuthError, check_scopes, create_api_key, hash_secret, new_api_key,
                                parse_key)
from lmrec.serving.ratelimit import RateLimiter

EVENT = {"user_id": "u1", "item_id": "1"}


def assert_401(r, reason: str) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"].startswith('Bearer realm="lmrec"')
    assert r.json()["error"] == "unauthorized" and reason in r.json()["detail"]


def test_missing_key_is_401(api: Api) -> None:
    assert_401(api.client.get("/recommend/u1"), "missing API key")
    assert_401(api.client.post("/events", json=EVENT), "missing API key")
    assert_401(api.client.post("/admin/reload"), "missing API key")


def test_bad_keys_are_401(api: Api) -> None:
    good = api.keys["admin"]
    key_id, secret = parse_key(good)
    other_id = "0" * 12 if key_id != "0" * 12 else "1" * 12
    for key, reason in [("nonsense", "malformed"), (f"lmr_{key_id}_{secret[:-1]}x", "invalid API key"),
                        (f"lmr_{other_id}_{secret}", "invalid API key")]:
        assert_401(api.client.get("/recommend/u1", headers={"Authorization": f"Bearer {key}"}), reason)
        assert_401(api.client.get("/recommend/u1", headers={"X-API-Key": key}), reason)


def test_revoked_key_is_401(api: Api) -> None:
    key, record = create_api_key(api.engine.store, "soon revoked", ["read"])
    assert api.client.get("/recommend/u1", headers={"X-API-Key": key}).status_code == 200
    assert api.engine.store.revoke_api_key(record.key_id)
    assert_401(api.client.get("/recommend/u1", headers={"X-API-Key": key}), "revoked")


@pytest.mark.parametrize(("scope", "method", "path", "body"), [
    ("read", "post", "/events", EVENT),
    ("read", "put", "/items/x", {"title": "x"}),
    ("read", "delete", "/items/1", None),
    ("read", "put", "/users/u1", {}),
    ("write", "get", "/recommend/u1", None),
    ("write", "get", "/search?q=movie", None),
    ("write", "get", "/items/1/similar", None),
    ("read", "post", "/admin/reload", None),
    ("write", "post", "/admin/train", None),
    ("write", "get", "/admin/stats", None),
])
def test_wrong_scope_is_403(api: Api, scope: str, method: str, path: str, body: object) -> None:
    r = api.client.request(method, path, json=body, headers=api.headers(scope))
    assert r.status_code == 403, r.text
    needed = "admin" if path.startswith("/admin") else ("read" if method == "get" else "write")
    assert r.json()["error"] == "forbidden" and f"lacks the {needed!r} scope" in r.json()["detail"]
    assert "WWW-Authenticate" not in r.headers


def test_admin_key_may_do_everything(api: Api) -> None:
    h = api.admin
    assert api.client.post("/events", json=EVENT, headers=h).status_code == 200
    assert api.client.get("/recommend/u1", headers=h).status_code == 200
    assert api.client.put("/items/z", json={"title": "z"}, headers=h).status_code == 200
    assert api.client.get("/admin/stats", headers=h).status_code == 200


def test_auth_can_be_disabled_for_a_demo(tmp_path: Path) -> None:
    with running_api(tmp_path, f"sqlite:///{tmp_path}/db.sqlite", auth_enabled=False) as a:
        assert a.client.get("/recommend/u1").status_code == 200
        assert a.client.post("/events", json=EVENT).status_code == 200
        assert a.client.get("/admin/stats").status_code == 200


def test_rate_limit_is_per_key_with_retry_after(tmp_path: Path) -> None:
    with running_api(tmp_path, f"sqlite:///{tmp_path}/db.sqlite", rate_limit_rps=0.5, rate_limit_burst=3) as a:
        codes = [a.client.get("/recommend/u1", headers=a.read).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = a.client.get("/recommend/u1", headers=a.read)
        assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 2
        assert a.client.get("/recommend/u1", headers=a.admin).status_code == 200   # another key: its own bucket
        assert a.client.get("/health").status_code == 200                          # probes are never limited


def test_body_size_limit_is_413(tmp_path: Path) -> None:
    with running_api(tmp_path, f"sqlite:///{tmp_path}/db.sqlite", max_body_bytes=2048) as a:
        big = {"title": "x" * 4000}
        r = a.client.put("/items/big", json=big, headers=a.write)
        assert r.status_code == 413 and r.json()["error"] == "request_entity_too_large"   # refused from Content-Length
        assert r.headers["content-type"] == "application/json" and "2048 bytes" in r.json()["detail"]

        def chunks():  # no Content-Length: the limit applies while the body streams in
            for _ in range(5):
                yield b"[" + b" " * 1000

        r = a.client.post("/events", content=chunks(), headers={**a.write, "Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["error"].endswith("too_large")
        assert a.engine.store.get_item("big") is None and a.engine.store.count_events() == 0
        assert a.client.put("/items/small", json={"title": "x" * 100}, headers=a.write).status_code == 200


# ---- units ----------------------------------------------------------------------------------------
def test_only_a_hash_of_the_secret_is_stored() -> None:
    key, record = new_api_key("ci", ["write", "read"])
    key_id, secret = parse_key(key)
    assert record.key_id == key_id and record.scopes == ("read", "write")
    assert secret not in repr(record) and record.key_hash == hash_secret(key_id, secret)
    assert hash_secret("aaaaaaaaaaaa", secret) != hash_secret("bbbbbbbbbbbb", secret)   # salted by key id


def test_scopes_are_checked() -> None:
    assert check_scopes(["admin", " read"]) == ("read", "admin")
    with pytest.raises(ValueError, match="unknown scope 'superuser'"):
        check_scopes(["read", "superuser"])
    with pytest.raises(ValueError, match="at least one"):
        check_scopes([""])


class _Store:
    def __init__(self) -> None:
        self.records: dict = {}
        self.reads = 0

    def get_api_key(self, key_id: str):
        self.reads += 1
        return self.records.get(key_id)


def test_verifier_caches_for_a_bounded_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    import lmrec.serving.auth as auth_mod

    now = [100.0]
    monkeypatch.setattr(auth_mod.time, "monotonic", lambda: now[0])
    store = _Store()
    key, record = new_api_key("c", ["read"])
    store.records[record.key_id] = record
    v = ApiKeyVerifier(store, cache_seconds=5.0)  # type: ignore[arg-type]
    assert v.verify_cached(key) is None and store.reads == 0          # not cached yet: the caller must verify()
    for _ in range(3):
        assert v.verify(key).scopes == frozenset({"read"})
    assert store.reads == 1
    assert v.verify_cached(key).key_id == record.key_id
    assert v.verify_cached(key[:-1] + ("A" if key[-1] != "A" else "B")) is None   # wrong secret: not from the cache
    store.records[record.key_id] = dataclasses.replace(record, revoked=True)
    now[0] += 4.0
    v.verify(key)                     # still cached: a revocation takes up to cache_seconds
    now[0] += 1.5                     # constant use does not extend the cache entry's life
    with pytest.raises(AuthError, match="revoked"):
        v.verify(key)


def test_rate_limiter_refills_and_forgets_idle_clients() -> None:
    now = [0.0]
    rl = RateLimiter(rate=10.0, burst=2, clock=lambda: now[0])
    assert [rl.acquire("a") for _ in range(3)] == [None, None, pytest.approx(0.1)]
    now[0] = 0.05
    assert rl.acquire("a") == pytest.approx(0.05)
    now[0] = 0.2
    assert rl.acquire("a") is None
    assert rl.acquire("b") is None and len(rl) == 2
    now[0] = 10.0
    rl.acquire("c")                   # a new client triggers the sweep of refilled buckets
    assert len(rl) == 1
    assert RateLimiter(rate=0, burst=0).acquire("x") is None    # rate 0: no limit
