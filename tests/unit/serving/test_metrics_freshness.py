"""The model-freshness gauges behind the stale-model and training alerts
(deploy/prometheus/alerts.yml): when the served version was fitted, events since the last
training, and whether the last training failed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_api_helpers import metric_value, running_api, views

import lmrec.serving.engine as engine_module


def test_freshness_gauges_follow_the_served_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_api(tmp_path / "home", f"sqlite:///{tmp_path}/db.sqlite") as api:
        created = api.engine.stats()["pipeline"]["created_at"]
        assert isinstance(created, float) and time.time() - 3600 < created <= time.time()
        text = api.client.get("/metrics").text
        assert metric_value(text, "lmrec_model_created_timestamp_seconds") == pytest.approx(created)
        assert metric_value(text, "lmrec_training_last_failed") == 0

        assert api.client.post("/events", json=views("u1", ["1", "2", "3"]), headers=api.write).status_code == 200
        text = api.client.get("/metrics").text
        assert metric_value(text, "lmrec_events_since_train") == 3

        # a failed training: the gauge says so, the served version (and its age) stay
        def broken(*args, **kwargs):
            raise ValueError("no room left on the device")

        monkeypatch.setattr(engine_module, "train_version", broken)
        r = api.client.post("/admin/train", json={"wait": True}, headers=api.admin)
        assert r.status_code >= 400
        text = api.client.get("/metrics").text
        assert metric_value(text, "lmrec_training_last_failed") == 1
        assert metric_value(text, "lmrec_model_created_timestamp_seconds") == pytest.approx(created)
        monkeypatch.undo()

        # a successful one: a newer version, nothing pending, no failure
        r = api.client.post("/admin/train", json={"wait": True, "activate": True}, headers=api.admin)
        assert r.status_code == 200, r.text
        text = api.client.get("/metrics").text
        assert metric_value(text, "lmrec_training_last_failed") == 0
        assert metric_value(text, "lmrec_events_since_train") == 0
        assert metric_value(text, "lmrec_model_created_timestamp_seconds") > created
