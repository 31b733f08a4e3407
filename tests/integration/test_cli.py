"""The `lmrec` command line, end to end, on generated files (and on ml-100k when present)."""

import json

import pytest
from typer.testing import CliRunner

from lmrec.cli.main import app

runner = CliRunner()


def _events(tmp_path, rows):
    p = tmp_path / "events.csv"
    p.write_text("uid,iid,ts,rating\n" + "\n".join(rows) + "\n")
    return p


MAPPING = ["--user", "uid", "--item", "iid", "--timestamp", "ts", "--value", "rating", "--default-kind", "rating"]


def test_validate_reports_every_bad_row_and_fails(tmp_path):
    p = _events(tmp_path, ["1,10,881250949,3", "1,11,abc,4", "2,10,881250950,9", "3,12,881250951,4"])
    res = runner.invoke(app, ["data", "validate", str(p), *MAPPING, "--report", str(tmp_path / "r.json")])
    assert res.exit_code == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["rows_in"] == 4 and report["rows_out"] == 2
    assert report["counts"] == {"unparsable_timestamp": 1, "out_of_range_rating": 1}
    ex = report["examples"]["unparsable_timestamp"][0]
    assert ex["line"] == 3 and ex["field"] == "ts"


def test_validate_strict_names_file_line_and_field(tmp_path):
    p = _events(tmp_path, ["1,10,881250949,3", "2,10,881250950,9"])
    res = runner.invoke(app, ["data", "validate", str(p), *MAPPING, "--strict"])
    assert res.exit_code == 1
    msg = " ".join(res.output.split())
    assert "events.csv line 3, field 'rating'" in msg


def test_validate_clean_file_passes(tmp_path):
    p = _events(tmp_path, ["1,10,881250949,3", "2,10,881250950,4"])
    res = runner.invoke(app, ["data", "validate", str(p), *MAPPING])
    assert res.exit_code == 0, res.output
    assert "ok" in res.output


def test_clean_writes_kept_rows_and_report(tmp_path):
    import pandas as pd

    p = _events(tmp_path, ["1,10,881250949,3", "1,10,881250949,3", "2,11,881250950,4", ",12,881250951,4"])
    out = tmp_path / "clean.parquet"
    res = runner.invoke(app, ["data", "clean", str(p), *MAPPING, "-o", str(out)])
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out)
    assert sorted(df.item_id) == ["10", "11"]
    rep = json.loads((tmp_path / "clean.parquet.report.json").read_text())
    assert rep["counts"] == {"duplicate": 1, "missing_id": 1}


def test_unknown_model_and_bad_params_are_clear_errors():
    res = runner.invoke(app, ["eval", "--dataset", "ml-100k", "--model", "nope"])
    assert res.exit_code == 1 and "unknown model 'nope'" in res.output
    res = runner.invoke(app, ["eval", "--dataset", "ml-100k", "--model", "ease", "--params", "bogus=1"])
    assert res.exit_code == 1 and "bogus" in res.output


def test_models_lists_baselines():
    res = runner.invoke(app, ["models"])
    assert res.exit_code == 0
    for name in ("popular", "itemknn", "ease", "als", "bpr"):
        assert name in res.output


@pytest.mark.shared_data("ml-100k")
def test_eval_ml100k_writes_json_and_recs(tmp_path, shared_data_dir):
    out, recs = tmp_path / "res.json", tmp_path / "recs.jsonl"
    res = runner.invoke(app, ["eval", "--dataset", "ml-100k", "--model", "popular", "--out", str(out),
                              "--save-recs", str(recs), "--data-dir", str(shared_data_dir)])
    assert res.exit_code == 0, res.output
    row = json.loads(out.read_text())["rows"][0]
    assert row["model"] == "popular" and row["dataset"] == "ml-100k" and row["split"] == "temporal-loo"
    assert 0.0 < row["NDCG@10"] < 0.1
    lines = recs.read_text().splitlines()
    assert len(lines) == 943
    first = json.loads(lines[0])
    assert len(first["items"]) == 10 and isinstance(first["user"], str)


def test_demo_on_generated_data(tmp_path, monkeypatch):
    from lmrec.cli import common

    monkeypatch.setattr(common.console, "width", 200)  # the table must not squeeze model names out
    res = runner.invoke(app, ["bench-demo", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "generated-demo" in res.output
    for name in ("popular", "ease", "bpr"):
        assert name in res.output


@pytest.mark.shared_data("ml-100k")
def test_search_bm25_and_hybrid_on_ml100k(shared_data_dir, monkeypatch):
    from lmrec.cli import common

    monkeypatch.setattr(common.console, "width", 250)
    res = runner.invoke(app, ["search", "toy story", "-d", "ml-100k", "-r", "bm25", "--k", "3",
                              "--data-dir", str(shared_data_dir)])
    assert res.exit_code == 0, res.output
    assert "Toy Story (1995)" in res.output.splitlines()[4]  # rank 1 row
    res = runner.invoke(app, ["search", "toy story", "-d", "ml-100k", "-r", "hybrid", "-e", "fake",
                              "--data-dir", str(shared_data_dir)])
    assert res.exit_code == 0, res.output
    assert "Toy Story" in res.output
    res = runner.invoke(app, ["search", "x", "-d", "ml-100k", "-r", "nope", "--data-dir", str(shared_data_dir)])
    assert res.exit_code == 1 and "unknown retriever" in res.output


@pytest.mark.shared_data("ml-100k")
def test_recommend_for_one_user(shared_data_dir, monkeypatch):
    from lmrec.cli import common

    monkeypatch.setattr(common.console, "width", 250)
    res = runner.invoke(app, ["recommend", "-d", "ml-100k", "-u", "196", "-m", "popular", "--k", "3",
                              "--data-dir", str(shared_data_dir)])
    assert res.exit_code == 0, res.output
    assert "popular recommendations for user 196" in res.output
    assert "Star Wars (1977)" in res.output  # the most-rated movie; user 196 has not rated it
    res = runner.invoke(app, ["recommend", "-d", "ml-100k", "-u", "no-such-user",
                              "--data-dir", str(shared_data_dir)])
    assert res.exit_code == 1 and "not in ml-100k" in res.output
