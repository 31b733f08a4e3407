"""Operations: /metrics, /ready while the engine opens, hot reload under load, masked logs."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_api_helpers import (Api, api, ease_config, engine_config, metric_value, running_api,  # noqa: F401
                              store_url, views)

from lmrec.serving.app import create_app
from lmrec.serving.config import ServiceConfig
from lmrec.serving.engine import Engine
from lmrec.serving.masking import ACCESS_LOGGER, APP_LOGGER, Masker


def test_metrics_after_requests(api: Api) -> None:
    for _ in range(3):
        assert api.client.get("/recommend/u1", params={"k": 3}, headers=api.read).status_code == 200
    api.client.get("/search", params={"q": "comedy"}, headers=api.read)
    api.client.get("/recommend/u1")                                           # 401
    api.client.post("/events", json=views("u1", ["1", "2", "3"]), headers=api.write)
    r = api.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert metric_value(text, "lmrec_http_requests_total", route="/recommend/{user_id}", status="200") == 3
    assert metric_value(text, "lmrec_http_requests_total", route="/recommend/{user_id}", status="401") == 1
    assert metric_value(text, "lmrec_http_request_duration_seconds_count", route="/search", status="200") == 1
    assert metric_value(text, "lmrec_http_request_duration_seconds_bucket", route="/search", le="+Inf") == 1
    assert metric_value(text, "lmrec_stage_duration_seconds_count", endpoint="recommend", stage="total") == 3
    assert metric_value(text, "lmrec_stage_duration_seconds_count", endpoint="search", stage="encode") == 1
    assert metric_value(text, "lmrec_events_ingested_total", kind="view") == 3
    assert metric_value(text, "lmrec_catalog_size") == 48 and metric_value(text, "lmrec_index_size") == 48
    assert metric_value(text, "lmrec_ready") == 1
    assert metric_value(text, "lmrec_model_info", version=api.engine.model_version) == 1
    assert "u1" not in text                                                   # route templates, never raw paths


def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/db.sqlite"
    with running_api(tmp_path / "a", url) as a, running_api(tmp_path / "b", url) as b:
        a.client.get("/health")
        assert metric_value(a.client.get("/metrics").text, "lmrec_http_requests_total", route="/health") == 1
        assert metric_value(b.client.get("/metrics").text, "lmrec_http_requests_total", route="/health") == 0


def test_ready_is_503_until_the_engine_is_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    real_open = Engine.open.__func__

    def slow_open(cls, config):  # the engine takes its time, like a large catalog would
        assert release.wait(30)
        return real_open(cls, config)

    monkeypatch.setattr(Engine, "open", classmethod(slow_open))
    app = create_app(ServiceConfig(engine=engine_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite")))
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        r = client.get("/ready")
        assert r.status_code == 503 and r.json()["ready"] is False and r.headers["Retry-After"]
        busy = client.get("/recommend/u1", headers={"X-API-Key": "lmr_000000000000_" + "a" * 43})
        assert busy.status_code == 503 and busy.json()["error"] == "not_ready"
        release.set()
        app.state.service.loader.join(30)
        assert client.get("/ready").status_code == 200
        assert metric_value(client.get("/metrics").text, "lmrec_ready") == 1


def test_engine_that_fails_to_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    def broken_open(cls, config):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Engine, "open", classmethod(broken_open))
    app = create_app(ServiceConfig(engine=engine_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite")))
    with caplog.at_level(logging.ERROR, logger=APP_LOGGER), TestClient(app) as client:
        app.state.service.loader.join(30)
        r = client.get("/ready")
        assert r.status_code == 503 and "RuntimeError" in r.json()["detail"]
        assert client.get("/health").status_code == 503
    assert "disk on fire" in caplog.text          # the operator sees why


def test_reload_does_not_drop_concurrent_requests(api: Api, tmp_path: Path) -> None:
    events = [e for u in range(10) for e in views(f"r{u}", [str(i) for i in range(1 + u, 8 + u)])]
    api.client.post("/events", json=events, headers=api.write)
    cfg = ease_config(tmp_path / "cfg")
    v1 = api.client.post("/admin/train", json={"config": cfg}, headers=api.admin).json()["model_version"]
    v2 = api.client.post("/admin/train", json={"config": "serve-default", "overrides": {"encoder": "fake"}},
                         headers=api.admin).json()["model_version"]
    stop = threading.Event()
    statuses: Counter[int] = Counter()
    versions: Counter[str] = Counter()
    lock = threading.Lock()

    def hammer(n: int) -> None:
        while not stop.is_set():
            r = api.client.get(f"/recommend/r{n % 10}", params={"k": 5}, headers=api.read)
            with lock:
                statuses[r.status_code] += 1
                if r.status_code == 200:
                    assert len(r.json()["items"]) == 5
                    versions[r.json()["model_version"]] += 1

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(20):
            target = v1 if i % 2 == 0 else v2
            r = api.client.post("/admin/reload", json={"version": target}, headers=api.admin)
            assert r.json() == {"model_version": target}
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert set(statuses) == {200}, statuses
    assert statuses[200] >= 20 and set(versions) == {v1, v2}, versions


# ---- masking --------------------------------------------------------------------------------------
SECRET_USER = "alice.smith@example.com"
SECRET_QUERY = "embarrassing rash cream"


def test_logs_mask_user_ids_and_queries(api: Api, caplog) -> None:
    masker = api.app.state.service.masker
    with caplog.at_level(logging.INFO, logger="lmrec"):
        api.client.get(f"/recommend/{SECRET_USER}", headers=api.read)
        api.client.get("/search", params={"q": SECRET_QUERY, "user_id": SECRET_USER}, headers=api.read)
        api.client.post("/events", json={"user_id": SECRET_USER, "item_id": "1"}, headers=api.write)
    lines = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER]
    assert len(lines) == 3
    assert SECRET_USER not in caplog.text and "alice" not in caplog.text and "rash" not in caplog.text
    assert f"user={masker.mask(SECRET_USER)}" in lines[0] and f"q={masker.mask(SECRET_QUERY)}" in lines[1]
    assert "GET /recommend/{user_id} 200" in lines[0] and f"key={api.keys['read'].split('_')[1]}" in lines[0]


def test_raw_ids_are_logged_only_when_asked(tmp_path: Path, caplog) -> None:
    with running_api(tmp_path, f"sqlite:///{tmp_path}/db.sqlite", log_raw_ids=True) as a, \
            caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        a.client.get(f"/recommend/{SECRET_USER}", headers=a.read)
    assert f"user={SECRET_USER}" in caplog.text


def test_errors_are_logged_without_the_ids_in_their_message(api: Api, caplog,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(user_id: str, k: int = 10, *, explain: bool = False):
        raise RuntimeError(f"profile of {user_id} is corrupt")

    monkeypatch.setattr(api.engine, "recommend", boom)
    with caplog.at_level(logging.INFO, logger="lmrec"):
        r = api.client.get(f"/recommend/{SECRET_USER}", headers=api.read)
    assert r.status_code == 500 and r.json()["error"] == "internal"
    assert SECRET_USER not in r.text and SECRET_USER not in caplog.text
    errors = [rec for rec in caplog.records if rec.name == APP_LOGGER and rec.levelno == logging.ERROR]
    assert len(errors) == 1 and "RuntimeError" in errors[0].getMessage() and "boom" in errors[0].getMessage()
    assert metric_value(api.client.get("/metrics").text, "lmrec_http_requests_total", status="500") == 1


def test_masker_is_keyed() -> None:
    a, b = Masker(b"key-one"), Masker(b"key-two")
    assert a.mask("u1") == Masker(b"key-one").mask("u1") != b.mask("u1")
    assert len(a.mask("u1")) == 18 and a.mask(None) is None
    with pytest.raises(ValueError):
        Masker(b"")


def test_service_config_reads_environment_and_refuses_typos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("LMREC_ENGINE__HOME", str(tmp_path))
    monkeypatch.setenv("LMREC_ENGINE__ENCODER", "fake")
    monkeypatch.setenv("LMREC_MAX_BATCH", "50")
    monkeypatch.setenv("LMREC_DATA_DIR", "/elsewhere")        # another component's LMREC_ setting: ignored
    cfg = ServiceConfig()
    assert cfg.engine.home == tmp_path and cfg.engine.encoder == "fake" and cfg.max_batch == 50
    assert cfg.store_url() == f"sqlite:///{tmp_path}/lmrec.db" and cfg.auth_enabled
    with pytest.raises(ValidationError, match="rate_limit_rsp"):
        ServiceConfig(rate_limit_rsp=5)
    with pytest.raises(ValidationError, match="max_body_bytes"):
        ServiceConfig(max_body_bytes=10)
