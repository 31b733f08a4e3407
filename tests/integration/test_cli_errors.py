"""Every bad --home, store URL, port, key or data row is one error line on stderr and exit
code 1, never a traceback (issue 16, item 6)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lmrec.cli.main import app

runner = CliRunner()


def _one_error_line(res, *needles: str) -> str:
    """The single line the command printed on stderr; it names each of `needles`."""
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    p = tmp_path / "README.md"
    p.write_text("not a folder")
    return p


@pytest.mark.parametrize("command", [["serve"], ["train"], ["keys", "list"], ["keys", "create", "--name", "x"],
                                     ["demo", "--smoke", "--encoder", "fake"]])
def test_home_that_is_a_file(command: list[str], a_file: Path) -> None:
    res = runner.invoke(app, [*command, "--home", str(a_file)])
    _one_error_line(res, str(a_file), "is a file, not a folder")


def test_home_that_cannot_be_created(a_file: Path) -> None:
    res = runner.invoke(app, ["serve", "--home", str(a_file / "sub"), "--encoder", "fake"])
    _one_error_line(res, str(a_file / "sub"), "cannot create the folder")


def test_keys_on_a_home_without_store_need_create(tmp_path: Path) -> None:
    typo = tmp_path / "shpo"
    res = runner.invoke(app, ["keys", "create", "--name", "app", "--home", str(typo)])
    _one_error_line(res, f"no lmrec store at {typo}/lmrec.db", "--create")
    assert not typo.exists()                       # nothing was created for the misspelt home
    for command in (["keys", "list"], ["keys", "revoke", "abc"], ["train"]):
        res = runner.invoke(app, [*command, "--home", str(typo)])
        _one_error_line(res, "no lmrec store")
    assert not typo.exists()
    res = runner.invoke(app, ["keys", "create", "--name", "app", "--home", str(typo), "--create", "-q"])
    assert res.exit_code == 0 and res.stdout.startswith("lmr_") and (typo / "lmrec.db").is_file()


@pytest.mark.parametrize("url, needles", [
    ("foo://x", ["foo://x", "unsupported store URL"]),
    ("sqlite://relative.db", ["sqlite://relative.db", "bad sqlite URL"]),
    ("postgresql://app:s3cret@127.0.0.1:1/x", ["postgresql://app:***@127.0.0.1:1/x", "cannot open the store"]),
])
def test_bad_store_url(url: str, needles: list[str], tmp_path: Path) -> None:
    for command in (["serve", "--home", str(tmp_path / "h"), "--encoder", "fake"],
                    ["keys", "create", "--name", "x", "--create"]):
        line = _one_error_line(runner.invoke(app, [*command, "--store-url", url]), *needles)
        assert "s3cret" not in line


def test_unwritable_sqlite_file(tmp_path: Path, a_file: Path) -> None:
    res = runner.invoke(app, ["serve", "--home", str(tmp_path / "h"), "--encoder", "fake",
                              "--store-url", f"sqlite:///{a_file}/x.db"])
    _one_error_line(res, "cannot open the store", str(a_file))


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = runner.invoke(app, ["serve", "--home", str(tmp_path / "h"), "--encoder", "fake", "--port", str(port)])
    _one_error_line(res, f"127.0.0.1:{port}", "Address already in use", "--port")


def test_engine_that_fails_to_open_ends_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("LMREC_ENGINE__MODEL_VERSION", "no-such-version")
    res = runner.invoke(app, ["serve", "--home", str(tmp_path / "h"), "--encoder", "fake", "--index", "flat",
                              "--port", str(port)])
    assert res.exit_code == 1
    error = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert error == ["error: the engine failed to open: FileNotFoundError: model version 'no-such-version' not found "
                     f"in {tmp_path / 'h' / 'models'} (available: none)"]
    assert "Traceback" not in res.output


def test_bad_settings_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMREC_PORT", "eighty")
    monkeypatch.setenv("LMREC_ENGINE__ENCODR", "minilm")
    res = runner.invoke(app, ["serve", "--home", str(tmp_path / "h")])
    _one_error_line(res, "invalid settings", "port: Input should be a valid integer", "engine.encodr")


def test_bad_key_arguments(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert runner.invoke(app, ["keys", "create", "--name", "x", "--home", str(home), "--create"]).exit_code == 0
    _one_error_line(runner.invoke(app, ["keys", "revoke", "lmr_broken", "--home", str(home)]), "malformed API key")
    _one_error_line(runner.invoke(app, ["keys", "revoke", "0123456789ab", "--home", str(home)]),
                    "no active key '0123456789ab'")
    _one_error_line(runner.invoke(app, ["keys", "create", "--name", "x", "--scopes", "read,root", "--home",
                                        str(home)]), "unknown scope 'root'")


def test_strict_stops_at_the_first_bad_row(tmp_path: Path) -> None:
    """The issue's case: line 12 (an empty item id) is the first bad row, line 22 the next."""
    rows = ["user_id,item_id,timestamp"]
    for i in range(1, 50):
        item, ts = ("" if i == 11 else f"i{i % 7}"), ("not-a-time" if i == 21 else str(1000 + i))
        rows.append(f"u{i % 5},{item},{ts}")
    p = tmp_path / "events.csv"
    p.write_text("\n".join(rows) + "\n")
    res = runner.invoke(app, ["data", "validate", str(p), "--strict"])
    _one_error_line(res, "events.csv line 12, field 'item_id': empty item id")
    res = runner.invoke(app, ["data", "validate", str(p)])      # without --strict: every bad row reported
    assert res.exit_code == 1 and "line 12" in res.output and "line 22" in res.output


def test_installed_command_prints_no_traceback(a_file: Path) -> None:
    """The console script itself (not the test runner): one line on stderr, exit code 1."""
    exe = Path(sys.executable).with_name("lmrec")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "lmrec.cli.main"]
    env = {**os.environ, "COLUMNS": "60"}     # a narrow terminal must not wrap the line either
    out = subprocess.run([*cmd, "keys", "list", "--home", str(a_file)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [f"error: --home {a_file} is a file, not a folder: give the "
                                               "service's home folder"]


def test_keys_read_the_store_from_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As `lmrec serve` does: LMREC_ENGINE__HOME / __STORE_URL (e.g. in the container) name the store."""
    monkeypatch.chdir(tmp_path)                                  # no lmrec.toml here
    _one_error_line(runner.invoke(app, ["keys", "list"]), "give --home DIR or --store-url URL",
                    "LMREC_ENGINE__HOME")
    monkeypatch.setenv("LMREC_ENGINE__HOME", str(tmp_path / "home"))
    _one_error_line(runner.invoke(app, ["keys", "list"]), f"no lmrec store at {tmp_path / 'home'}/lmrec.db")
    assert runner.invoke(app, ["keys", "create", "--name", "ops", "--create"]).exit_code == 0
    assert "ops" in runner.invoke(app, ["keys", "list"]).stdout
    monkeypatch.setenv("LMREC_ENGINE__STORE_URL", f"sqlite:///{tmp_path}/other.db")    # the URL wins over home
    _one_error_line(runner.invoke(app, ["keys", "list"]), f"no lmrec store at {tmp_path}/other.db")


def test_demo_checks_the_port_before_seeding(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = runner.invoke(app, ["demo", "--encoder", "fake", "--home", str(tmp_path / "demo"), "--port", str(port)])
    _one_error_line(res, f"127.0.0.1:{port}", "Address already in use")
    assert not (tmp_path / "demo").exists()                 # nothing was seeded for a server that cannot start
