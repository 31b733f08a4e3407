"""The service's command line: `lmrec keys`, `lmrec demo --smoke` (what CI runs) and the
configuration `lmrec serve` builds."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lmrec.cli.main import app
from lmrec.cli.service_cmd import build_config, demo_examples
from lmrec.serving.auth import parse_key
from lmrec.stores.sql import open_store

runner = CliRunner()


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    home = tmp_path / "home"
    res = runner.invoke(app, ["keys", "create", "--home", str(home), "--name", "ci bot", "--scopes", "read,write",
                              "--quiet", "--create"])
    assert res.exit_code == 0, res.output
    key = res.output.strip()
    key_id, secret = parse_key(key)
    store = open_store(f"sqlite:///{home}/lmrec.db")
    record = store.get_api_key(key_id)
    store.close()
    assert record is not None and record.scopes == ("read", "write") and secret not in record.key_hash

    listed = runner.invoke(app, ["keys", "list", "--home", str(home)])
    assert listed.exit_code == 0 and key_id in listed.output and "ci bot" in listed.output
    assert secret not in listed.output and "active" in listed.output

    assert runner.invoke(app, ["keys", "revoke", key, "--home", str(home)]).exit_code == 0   # the whole key works too
    assert "revoked" in runner.invoke(app, ["keys", "list", "--home", str(home)]).output
    again = runner.invoke(app, ["keys", "revoke", key_id, "--home", str(home)])
    assert again.exit_code == 1 and "no active key" in again.output


def test_keys_create_refuses_bad_input(tmp_path: Path) -> None:
    res = runner.invoke(app, ["keys", "create", "--home", str(tmp_path), "--name", "x", "--scopes", "read,root",
                              "--create"])
    assert res.exit_code == 1 and "unknown scope 'root'" in res.output
    res = runner.invoke(app, ["keys", "create", "--name", "x"])
    assert res.exit_code == 1 and "--home" in res.output


def test_serve_config_takes_options_over_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMREC_PORT", "9100")
    monkeypatch.setenv("LMREC_RATE_LIMIT_RPS", "7")
    monkeypatch.setenv("LMREC_ENGINE__HALF_LIFE", "5")
    cfg = build_config(tmp_path, encoder="fake", index="flat", port=None, no_auth=True)
    assert cfg.port == 9100 and cfg.rate_limit_rps == 7 and cfg.engine.half_life == 5
    assert cfg.engine.encoder == "fake" and cfg.auth_enabled is False
    assert build_config(tmp_path, port=9200).port == 9200


def test_demo_smoke_runs_every_example(tmp_path: Path) -> None:
    res = runner.invoke(app, ["demo", "--smoke", "--encoder", "fake", "--home", str(tmp_path / "demo")])
    assert res.exit_code == 0, res.output
    assert "smoke test passed" in res.output
    text = " ".join(res.output.split())          # rich wraps long lines at the terminal width
    for ex in demo_examples("demo"):
        assert ex.title in text
    assert "new-demo-item" in res.output and "-> 200" in res.output and "-> 4" not in res.output
    first_key = (tmp_path / "demo" / "demo-admin.key").read_text().strip()
    seeded = _counts(tmp_path / "demo")
    # the home is kept and reused: a second run neither seeds again nor adds a key, and says so
    again = runner.invoke(app, ["demo", "--smoke", "--encoder", "fake", "--home", str(tmp_path / "demo")])
    assert again.exit_code == 0, again.output
    text = " ".join(again.output.split())
    assert "reused (its events and items as the last run left them; --reset starts over)" in text
    assert "admin key reused" in text
    store = open_store(f"sqlite:///{tmp_path}/demo/lmrec.db")
    keys = store.api_keys()
    store.close()
    assert len(keys) == 1 and (tmp_path / "demo" / "demo-admin.key").read_text().strip() == first_key
    assert (tmp_path / "demo" / "demo-admin.key").stat().st_mode & 0o077 == 0      # owner-only
    assert _counts(tmp_path / "demo")[1] == seeded[1] + 1      # the first run's posted click was kept
    # --reset: back to the generated data (the posted click is gone) with a new key
    reset = runner.invoke(app, ["demo", "--smoke", "--reset", "--encoder", "fake", "--home", str(tmp_path / "demo")])
    assert reset.exit_code == 0, reset.output
    assert "removed lmrec.db" in " ".join(reset.output.split()) and "admin key created" in " ".join(reset.output.split())
    assert _counts(tmp_path / "demo")[1] == seeded[1] and (tmp_path / "demo" / "demo-admin.key").read_text().strip() \
        != first_key


def _counts(home: Path) -> tuple[int, int, int]:
    """(items, events, active keys) of a home's store."""
    store = open_store(f"sqlite:///{home}/lmrec.db")
    try:
        return store.count_items(), store.count_events(), sum(not k.revoked for k in store.api_keys())
    finally:
        store.close()


def test_demo_curl_examples_are_printable() -> None:
    ex = next(e for e in demo_examples("demo") if e.params.get("q") == "轻便跑步鞋")
    line = ex.curl("http://127.0.0.1:8000")
    assert line.startswith("curl -s -H \"Authorization: Bearer $LMREC_KEY\" --get")
    assert "--data-urlencode 'q=轻便跑步鞋'" in line and line.endswith("http://127.0.0.1:8000/search")
    post = next(e for e in demo_examples("demo") if e.method == "POST").curl("http://h")
    assert "-X POST" in post and '"kind": "click"' in post


@pytest.mark.shared_data("ml-100k")
def test_demo_smoke_on_movielens(tmp_path: Path, shared_data_dir: Path) -> None:
    res = runner.invoke(app, ["demo", "--smoke", "--dataset", "ml-100k", "--encoder", "fake",
                              "--home", str(tmp_path / "ml"), "--data-dir", str(shared_data_dir)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())          # rich wraps long lines at the terminal width
    assert "1682 items, 100000 events" in text and "smoke test passed" in text


def test_eval_demo_is_still_available(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lmrec.cli import eval_cmd

    calls = []
    monkeypatch.setattr(eval_cmd, "demo_command", lambda **kw: calls.append(kw))
    res = runner.invoke(app, ["demo", "--eval", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert calls == [{"dataset": "auto", "data_dir": tmp_path}]   # the baseline evaluation, as `bench-demo`
