"""`lmrec eval` reports popularity bias and NDCG per user group, in tables that fit 80 columns."""

import json

import pytest
from typer.testing import CliRunner

from lmrec.cli.main import app

runner = CliRunner()


@pytest.mark.shared_data("ml-100k")
def test_eval_prints_fairness_tables_within_80_columns(tmp_path, shared_data_dir, monkeypatch):
    from lmrec.cli import common

    monkeypatch.setattr(common.console, "width", 80)
    out = tmp_path / "res.json"
    res = runner.invoke(app, ["eval", "--dataset", "ml-100k", "--model", "popular", "--out", str(out),
                              "--data-dir", str(shared_data_dir)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert max(len(ln) for ln in lines) <= 80
    assert not any("…" in ln for ln in lines), "a cell was cut to fit"
    for title in ("popularity bias", "NDCG@10 by activity", "NDCG@10 by gender", "NDCG@10 by age"):
        assert title in res.output
    row = json.loads(out.read_text())["rows"][0]
    assert row["longtail@10"] == 0.0  # the 10 most popular unseen items are all in the 337-item head
    assert 0.9 < row["gini@10"] <= 1.0
    assert [g["group"] for g in row["groups"]["gender"]] == ["F", "M"]
    assert sum(g["users"] for g in row["groups"]["activity"]) == row["users"] == 943
    assert f"{row['gini@10']:.4f}" in res.output
