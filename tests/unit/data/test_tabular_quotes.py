"""An unclosed quote in a CSV row is one bad row at its own line; it does not swallow the rest
of the file, and strict mode stops at the first bad row in file order."""

import pytest
from typer.testing import CliRunner

from lmrec.cli.main import app
from lmrec.data.cleaning import DataError
from lmrec.data.loaders.generic import ColumnMapping, load_events_file
from lmrec.data.loaders.tabular import read_table

MAPPING = ColumnMapping(user="uid", item="iid", timestamp="ts", value="rating", default_kind="rating")
CLI_MAPPING = ["--user", "uid", "--item", "iid", "--timestamp", "ts", "--value", "rating",
               "--default-kind", "rating"]


def _file(tmp_path, bad: dict[int, str], n_lines: int = 50, name: str = "events.csv"):
    """A CSV of `n_lines` physical lines (line 1 the header) with lines replaced by `bad`."""
    lines = ["uid,iid,ts,rating"] + [f"{i},{100 + i},{881250949 + i},3" for i in range(2, n_lines + 1)]
    for no, text in bad.items():
        lines[no - 1] = text
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def test_unclosed_quote_is_one_bad_row_and_the_rest_is_read(tmp_path):
    p = _file(tmp_path, {12: '1,"abc,5'})
    raw = read_table(p, ["uid", "iid", "ts", "rating"])
    assert raw.report.counts == {"malformed_row": 1}
    ex = raw.report.examples["malformed_row"][0]
    assert ex.line == 12 and "quote" in ex.reason
    assert len(raw.frame) == 48  # 49 data lines, one bad
    assert 12 not in set(raw.lines) and list(raw.lines[-3:]) == [48, 49, 50]
    assert list(raw.frame.uid[-1:]) == ["50"]


def test_unclosed_quote_with_the_right_field_count_is_still_caught(tmp_path):
    p = tmp_path / "two.csv"
    p.write_text("a,b\n1,2\n3,\"x,4\n5,6\n7,8\n")
    raw = read_table(p, ["a", "b"])
    assert raw.report.counts == {"malformed_row": 1}
    assert raw.report.examples["malformed_row"][0].line == 3
    assert list(raw.lines) == [2, 4, 5]


def test_quoted_newlines_are_kept_with_the_right_lines(tmp_path):
    p = tmp_path / "items.csv"
    p.write_text('id,title\n1,"two\nlines"\n2,plain\n3,"a ""quoted"" word"\n')
    raw = read_table(p, ["id", "title"])
    assert raw.report.counts == {}
    assert list(raw.frame.title) == ["two\nlines", "plain", 'a "quoted" word']
    assert list(raw.lines) == [2, 4, 5]


def test_strict_stops_at_the_first_bad_row(tmp_path):
    # an empty item id on line 12, an unclosed quote on line 22: line 12 comes first
    p = _file(tmp_path, {12: "12,,881250960,3", 22: '22,"abc,881250960,3'})
    with pytest.raises(DataError) as e:
        load_events_file(p, MAPPING, strict=True)
    assert "events.csv line 12, field 'iid'" in str(e.value)
    # the unclosed quote first: it is named at its own line
    p = _file(tmp_path, {12: '1,"abc,5', 22: "22,,881250960,3"})
    with pytest.raises(DataError) as e:
        load_events_file(p, MAPPING, strict=True)
    assert "events.csv line 12" in str(e.value) and "quote" in str(e.value)


def test_non_strict_reports_both_rows_and_keeps_the_rest(tmp_path):
    p = _file(tmp_path, {12: "12,,881250960,3", 22: '22,"abc,881250960,3'})
    ds, report = load_events_file(p, MAPPING)
    assert report.rows_in == 49 and report.rows_out == 47
    assert report.counts == {"malformed_row": 1, "missing_id": 1}
    assert report.examples["malformed_row"][0].line == 22


def test_cli_validate_strict_names_line_12(tmp_path):
    p = _file(tmp_path, {12: "12,,881250960,3", 22: '22,"abc,881250960,3'})
    res = CliRunner().invoke(app, ["data", "validate", str(p), *CLI_MAPPING, "--strict"], env={"COLUMNS": "80"})
    assert res.exit_code == 1
    msg = " ".join(res.output.split())
    assert "events.csv line 12, field 'iid'" in msg and "line 22" not in msg
