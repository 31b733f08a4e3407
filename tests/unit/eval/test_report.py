"""Benchmark result files, tables and plots."""

import json
import re

import numpy as np
import pytest

from lmrec.eval import report
from lmrec.eval.report import plot_metric, read_results, rich_table, rows_table, write_results

ROWS = [
    {"dataset": "ml-100k", "split": "temporal-loo", "model": "ease", "params": {"lam": 500.0},
     "NDCG@10": np.float64(0.0406), "HR@10": 0.0859, "MRR@10": 0.0271, "Recall@20": 0.1442,
     "NDCG@10_se": 0.0052, "coverage@10": 0.254, "fit_s": 0.6, "seeds": np.int64(1)},
    {"dataset": "ml-100k", "split": "temporal-loo", "model": "popular", "params": {},
     "NDCG@10": 0.0201, "HR@10": 0.04, "fit_s": 0.01, "seeds": 1},
]


@pytest.fixture(autouse=True)
def _no_torch_probe(monkeypatch):
    # importing torch to look for a GPU takes seconds; the probe itself is tested separately
    monkeypatch.setattr(report, "machine_description", lambda: "2 cores, no GPU")


def test_write_results_round_trip(tmp_path):
    json_path, md_path = write_results("baselines", ROWS, "python benchmarks/baselines.py", out_dir=tmp_path / "r")
    assert json_path.name == "baselines.json" and md_path.name == "baselines.md"
    doc = read_results(json_path)
    assert set(doc) == {"benchmark", "command", "git_commit", "date", "machine", "rows"}
    assert doc["benchmark"] == "baselines" and doc["machine"] == "2 cores, no GPU"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", doc["date"])
    assert doc["git_commit"] and " " not in doc["git_commit"]
    assert doc["rows"] == json.loads(json.dumps(ROWS, default=lambda x: x.item()))
    md = md_path.read_text()
    assert "| dataset | split | model | params | NDCG@10 | HR@10 | MRR@10 | Recall@20 | coverage@10 | fit_s |" in md
    assert "| ml-100k | temporal-loo | ease | lam=500 | 0.0406 ± 0.0052 | 0.0859 |" in md
    assert "| popular |  | 0.0201 | 0.0400 | - | - | - | 0.01 |" in md


def test_rows_table_shape_and_escaping():
    rows = [{"model": "a|b", "NDCG@10": 0.5}]
    lines = rows_table(rows).splitlines()
    assert lines == ["| model | NDCG@10 |", "|---|---|", "| a\\|b | 0.5000 |"]


def test_git_commit_outside_a_repo(tmp_path):
    assert report.git_commit(cwd=tmp_path) == "unknown"


def test_machine_description_without_torch(monkeypatch):
    monkeypatch.undo()  # the real function, but with torch reported as not installed
    monkeypatch.setattr(report.importlib.util, "find_spec", lambda name: None)
    assert re.fullmatch(r"\d+ cores, no GPU", report.machine_description())


def test_rich_table():
    t = rich_table(ROWS, title="baselines")
    assert [c.header for c in t.columns][:4] == ["dataset", "split", "model", "params"]
    assert t.row_count == 2


def test_plot_metric(tmp_path):
    rows = [{"model": "ease", "params": {"lam": lam}, "NDCG@10": v} for lam, v in [(10, 0.1), (100, 0.2), (1000, 0.15)]]
    rows.append({"model": "popular", "params": {}, "NDCG@10": 0.05})  # no lam: left out
    out = plot_metric(rows, "lam", "NDCG@10", tmp_path / "plots" / "lam.png", logx=True)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no row has both"):
        plot_metric(rows, "fit_s", "NDCG@10", tmp_path / "x.png")


def test_delta_column_shows_paired_ci_against_reference():
    from lmrec.eval.report import DELTA_COLUMN, rows_table

    rows = [
        {"dataset": "d", "split": "s", "model": "ease", "params": {}, "NDCG@10": 0.05, "vs_best": "best"},
        {"dataset": "d", "split": "s", "model": "popular", "params": {}, "NDCG@10": 0.02, "vs_best": "ease",
         "delta_NDCG@10": -0.03, "ci_low": -0.04, "ci_high": -0.02},
    ]
    table = rows_table(rows)
    assert DELTA_COLUMN in table.splitlines()[0]
    assert "| best |" in table
    assert "-0.0300 [-0.0400, -0.0200] vs ease" in table
