"""`lmrec fit`: parameter errors before any data is read; train, evaluate and save on ml-100k."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lmrec.cli.main import app

runner = CliRunner()


def test_bad_params_fail_naming_the_field() -> None:
    res = runner.invoke(app, ["fit", "--dataset", "no-such-data", "--model", "sasrec", "--params", '{"n_heads": 3}'])
    assert res.exit_code == 1
    assert "n_heads" in res.output


def test_unknown_model_fails() -> None:
    res = runner.invoke(app, ["fit", "--dataset", "ml-100k", "--model", "nope"])
    assert res.exit_code == 1 and "unknown model" in res.output


@pytest.mark.shared_data("ml-100k")
def test_fit_evaluates_and_saves_a_loadable_model(shared_data_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from lmrec.component import load_model

    params = {"epochs": 2, "hidden": 8, "n_blocks": 1, "max_len": 10, "threads": 1}
    out = tmp_path / "sasrec"
    res = runner.invoke(app, ["fit", "-d", "ml-100k", "-m", "sasrec", "-p", json.dumps(params), "-o", str(out),
                              "--no-progress", "--data-dir", str(shared_data_dir)])
    assert res.exit_code == 0, res.output
    assert {"config.json", "model.safetensors", "state.npz", "metrics.json"} <= {p.name for p in out.iterdir()}
    row = json.loads((out / "metrics.json").read_text())
    assert row["model"] == "sasrec" and row["dataset"] == "ml-100k" and 0 <= row["NDCG@10"] <= 1
    assert row["training"]["epochs_run"] == 2 and row["training"]["valid_users"] > 900
    model = load_model(out)
    assert model.params == {**model.params, **params}
    assert np.isfinite(model.score([0, 1, 2])).all()
