"""CLI tables at 80 columns: numbers shown whole (never '0.…'), `--wide` for every metric,
`--plot` writes a PNG; progress lines when not in a terminal."""

import json

import pytest
from typer.testing import CliRunner

from lmrec.cli import common, eval_cmd
from lmrec.cli.main import app
from lmrec.testing.toy import toy_dataset

runner = CliRunner()
ENV = {"COLUMNS": "80", "LMREC_PROGRESS": "log"}


@pytest.fixture
def narrow(monkeypatch):
    """The shared console at 80 columns (it reads COLUMNS once, when it is created), and a
    generated data set behind --dataset."""
    monkeypatch.setattr(common.console, "width", 80)
    monkeypatch.setattr(eval_cmd, "load_named_dataset",
                        lambda name, data_dir=None: toy_dataset(n_users=120, n_items=60, name="toy-shop"))


def _readable(output: str) -> list[str]:
    lines = output.splitlines()
    too_long = [ln for ln in lines if len(ln) > 80]
    assert not too_long, too_long
    assert "…" not in output and "0.…" not in output, "a cell was cut to fit"
    return lines


def test_eval_default_table_fits_80_columns_with_whole_numbers(narrow, tmp_path):
    out = tmp_path / "rows.json"
    res = runner.invoke(app, ["eval", "-d", "toy-shop", "-m", "popular", "--params", "half_life_days=0",
                              "--out", str(out)], env=ENV)
    assert res.exit_code == 0, res.output
    _readable(res.output)
    row = json.loads(out.read_text())["rows"][0]
    assert f"{row['NDCG@10']:.4f} ± {row['NDCG@10_se']:.4f}" in res.output
    for m in ("HR@10", "Recall@20", "coverage@10"):
        assert f"{row[m]:.4f}" in res.output
    head = next(ln for ln in res.output.splitlines() if "NDCG@10" in ln and "model" in ln)
    assert "MRR@10" not in head and "novelty" not in res.output  # only with --wide
    assert "popular: half_life_days=0" in " ".join(res.output.split())  # the parameters, under the table


def test_eval_wide_shows_every_metric_in_tables_that_fit(narrow, tmp_path):
    out = tmp_path / "rows.json"
    res = runner.invoke(app, ["eval", "-d", "toy-shop", "-m", "ease", "--wide", "--out", str(out)], env=ENV)
    assert res.exit_code == 0, res.output
    _readable(res.output)
    row = json.loads(out.read_text())["rows"][0]
    for m in ("NDCG@10", "HR@10", "MRR@10", "Recall@20", "Precision@10", "coverage@10", "ILD@10", "novelty@10"):
        if m in row:
            assert m in res.output and f"{row[m]:.4f}" in res.output, m


def test_eval_several_models_and_plot(narrow, tmp_path):
    png = tmp_path / "fig" / "eval.png"
    res = runner.invoke(app, ["eval", "-d", "toy-shop", "-m", "popular,itemknn,ease", "--plot", str(png)], env=ENV)
    assert res.exit_code == 0, res.output
    lines = _readable(res.output)
    table = [ln for ln in lines if ln.startswith("│ ")]
    for name in ("popular", "itemknn", "ease"):
        assert any(ln.startswith(f"│ {name} ") for ln in table), name
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_plot_results_writes_png(tmp_path):
    from lmrec.eval.report import plot_results

    rows = [{"dataset": "d", "split": "s", "model": "a", "NDCG@10": 0.1, "NDCG@10_se": 0.01,
             "groups": {"activity": [{"group": f"d{j}", "users": 5, "NDCG@10": 0.01 * j} for j in range(1, 11)]}},
            {"dataset": "d", "split": "s", "model": "b", "NDCG@10": 0.2}]
    p = plot_results(rows, tmp_path / "x.png")
    assert p.stat().st_size > 5000
    with pytest.raises(ValueError):
        plot_results([{"model": "a"}], tmp_path / "y.png")


def test_fitted_tables_never_cut_numbers():
    from rich.console import Console

    from lmrec.eval.report import fitted_tables

    header = ["model"] + [f"metric number {j}" for j in range(8)]
    cells = [["a-rather-long-model-name (lam=500, k=100)"] + [f"0.{j}234 ± 0.0012" for j in range(8)]]
    c = Console(width=80, record=True, file=open("/dev/null", "w"))
    for t in fitted_tables(header, cells, width=80):
        c.print(t)
    text = c.export_text()
    assert "…" not in text and max(len(ln) for ln in text.splitlines()) <= 80
    for j in range(8):
        assert f"0.{j}234 ± 0.0012" in text


def test_eval_logs_progress_when_not_a_terminal(narrow, monkeypatch):
    """Outside a terminal the fit / tuning progress comes as plain lines with counts and ETA."""
    from lmrec.cli import progress

    real = progress.Reporter
    monkeypatch.setattr(eval_cmd, "Reporter", lambda *a, **kw: real(*a, **{**kw, "every": 0.0}))
    res = runner.invoke(app, ["eval", "-d", "toy-shop", "-m", "itemknn", "--tune"], env=ENV)
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("eval toy-shop / itemknn")]
    assert lines, res.output
    assert any("ETA" in ln and "/" in ln and "%" in ln for ln in lines), lines
    assert "done in" in lines[-1]


def test_models_and_bench_demo_fit_80_columns(monkeypatch, tmp_path):
    monkeypatch.setattr(common.console, "width", 80)
    res = runner.invoke(app, ["models"], env=ENV)
    assert res.exit_code == 0
    assert max(len(ln) for ln in res.output.splitlines()) <= 80
    assert "… " not in res.output and "lm-multi" in res.output
    res = runner.invoke(app, ["bench-demo", "--data-dir", str(tmp_path)], env=ENV)
    assert res.exit_code == 0, res.output
    _readable(res.output)
    for name in ("popular", "itemknn", "ease", "als", "bpr"):
        assert any(ln.startswith(f"│ {name} ") for ln in res.output.splitlines()), name


@pytest.mark.shared_data("ml-100k")
def test_pipeline_recommendations_fit_80_columns_and_log_stages(shared_data_dir, monkeypatch):
    from lmrec.cli import pipeline_cmd, progress

    monkeypatch.setattr(common.console, "width", 80)
    real = progress.Reporter
    monkeypatch.setattr(pipeline_cmd, "Reporter", lambda *a, **kw: real(*a, **{**kw, "every": 0.0}))
    res = runner.invoke(app, ["pipeline", "-d", "ml-100k", "--k", "5", "--data-dir", str(shared_data_dir),
                              "--set", '{"encoder": "fake", "rank": {"ranker": "none"}}'], env=ENV)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    table = lines[next(j for j, ln in enumerate(lines) if "recommendations for user" in ln):]
    assert max(len(ln) for ln in table) <= 80 and "…" not in "\n".join(table)
    assert any("like " in ln and "cosine" in ln for ln in table)  # the explanation under the title
    stages = [ln for ln in lines if ln.startswith("fit pipeline on 100000 events of ml-100k")]
    assert any("channel" in ln for ln in stages) and "done in" in stages[-1]


def test_step_progress_callback_counts_steps(monkeypatch, capsys):
    pytest.importorskip("transformers")
    from types import SimpleNamespace

    from lmrec.cli import progress
    from lmrec.text.finetune import step_progress

    monkeypatch.setenv("LMREC_PROGRESS", "log")
    real = progress.Reporter
    monkeypatch.setattr(progress, "Reporter", lambda *a, **kw: real(*a, **{**kw, "every": 0.0}))
    cb = step_progress("fine-tune minilm")
    state = SimpleNamespace(max_steps=4, global_step=0)
    cb.on_train_begin(None, state, None)
    for step in range(1, 5):
        state.global_step = step
        cb.on_log(None, state, None, logs={"loss": 1.0 / step})
        cb.on_step_end(None, state, None)
    cb.on_train_end(None, state, None)
    err = capsys.readouterr().err.splitlines()
    assert any(ln.startswith("fine-tune minilm (loss 0.5000): 2/4 steps (50%)") for ln in err), err
    assert "4/4 steps done in" in err[-1]


def test_data_info_lists_whole_names_at_80_columns(narrow):
    from lmrec.data.loaders import DATASETS

    res = runner.invoke(app, ["data", "info"], env=ENV)
    assert res.exit_code == 0, res.output
    _readable(res.output)
    first_cells = [ln.split("│")[1].strip() for ln in res.output.splitlines() if ln.startswith("│")]
    assert set(DATASETS) <= set(first_cells)  # the names one types, each whole on its line
