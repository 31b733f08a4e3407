"""Cleaning rules, report arithmetic, strict-mode messages and line numbers (small tmp files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from lmrec.data.cleaning import (
    CleaningReport, CleaningRules, DataError, RowIssue, clean_events, kcore_mask, parse_timestamps,
)
from lmrec.data.loaders import ColumnMapping, ItemMapping, load_events_file, load_items_file
from lmrec.types import EventKind

FULL = ColumnMapping(user="user", item="item", timestamp="ts", kind="kind", value="value")


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return p


def check_arithmetic(rep: CleaningReport) -> None:
    assert rep.rows_in == rep.rows_out + sum(rep.counts.values())


def test_clean_file_passes_everything(tmp_path):
    p = write(tmp_path, "ev.csv", "user,item,ts,kind,value\nu1,i1,10,view,\nu1,i2,11,rating,4.5\nu2,i1,12,,\n")
    ds, rep = load_events_file(p, FULL)
    assert rep.rows_in == 3 and rep.rows_out == 3 and rep.counts == {}
    assert sorted(ds.summary()["event_kinds"]) == ["rating", "view"]
    assert ds.interactions.value.tolist() == [1.0, 4.5, 1.0]


@pytest.mark.parametrize("row, rule, field, reason", [
    (",i1,10,view,", "missing_id", "user", "empty user id"),
    ("u1,  ,10,view,", "missing_id", "item", "empty item id"),
    ("u1,i1,abc,view,", "unparsable_timestamp", "ts", "cannot parse 'abc' as a timestamp"),
    ("u1,i1,,view,", "unparsable_timestamp", "ts", "missing timestamp"),
    ("u1,i1,10,like,", "unknown_kind", "kind", "unknown event kind 'like'"),
    ("u1,i1,10,view,lots", "bad_value", "value", "cannot parse 'lots' as a number"),
    ("u1,i1,10,rating,", "bad_value", "value", "rating event without a value"),
    ("u1,i1,10,rating,7", "out_of_range_rating", "value", "rating 7 outside the range [0.5, 5]"),
    ("u1,i1,10,rating,0", "out_of_range_rating", "value", "rating 0 outside the range [0.5, 5]"),
])
def test_each_rule_drops_and_reports(tmp_path, row, rule, field, reason):
    p = write(tmp_path, "ev.csv", f"user,item,ts,kind,value\nu0,i0,1,view,\n{row}\nu9,i9,2,view,\n")
    ds, rep = load_events_file(p, FULL)
    assert rep.counts == {rule: 1}
    issue = rep.examples[rule][0]
    assert (issue.file, issue.line, issue.field) == ("ev.csv", 3, field)
    assert issue.reason.startswith(reason)
    assert rep.rows_in == 3 and rep.rows_out == 2
    check_arithmetic(rep)
    assert len(ds.interactions) == 2
    with pytest.raises(DataError) as e:
        load_events_file(p, FULL, strict=True)
    assert str(e.value).startswith(f"ev.csv line 3, field '{field}': {reason}")
    assert e.value.issue.line == 3 and isinstance(e.value, ValueError)


def test_strict_message_exact(tmp_path):
    rows = "".join(f"{u},{u + 10},4.0,{1000 + u}\n" for u in range(1, 16))
    p = write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n" + rows + "16,26,3.0,abc\n")
    m = ColumnMapping(user="userId", item="movieId", value="rating", timestamp="timestamp",
                      default_kind="rating", timestamp_format="unix")
    with pytest.raises(DataError, match="^ratings.csv line 17, field 'timestamp': "
                                        "cannot parse 'abc' as a unix timestamp$"):
        load_events_file(p, m, strict=True)
    ds, rep = load_events_file(p, m)
    assert rep.counts == {"unparsable_timestamp": 1} and rep.rows_out == 15


def test_strict_reports_first_bad_line_across_rules(tmp_path):
    p = write(tmp_path, "ev.csv", "user,item,ts,kind,value\nu1,i1,1,view,\nu1,i1,5,like,\nu2,,1,view,\n")
    with pytest.raises(DataError, match="^ev.csv line 3, field 'kind'"):
        load_events_file(p, FULL, strict=True)


def test_duplicates_keep_first_and_name_it(tmp_path):
    p = write(tmp_path, "ev.csv", "user,item,ts,kind,value\nu1,i1,1,view,\nu1,i1,2,view,\n"
                                  "u1,i1,1,view,\nu1,i1,1,view,1\nu1,i1,1,click,\n")
    ds, rep = load_events_file(p, FULL)
    # line 4 repeats line 2; line 5 too (empty value means 1.0); line 6 differs in kind
    assert rep.counts == {"duplicate": 2}
    assert [i.line for i in rep.examples["duplicate"]] == [4, 5]
    assert "exact duplicate of line 2" in rep.examples["duplicate"][0].reason
    assert rep.rows_out == 3
    _, rep2 = load_events_file(p, FULL, rules=CleaningRules(drop_duplicates=False))
    assert rep2.counts == {} and rep2.rows_out == 5
    with pytest.raises(DataError, match="^ev.csv line 4: exact duplicate of line 2"):
        load_events_file(p, FULL, strict=True)


def test_rating_range_configurable(tmp_path):
    p = write(tmp_path, "ev.csv", "user,item,ts,kind,value\nu1,i1,1,rating,8\nu1,i2,1,rating,11\n"
                                  "u1,i3,1,view,50\n")
    _, rep = load_events_file(p, FULL, rules=CleaningRules(rating_range=(1, 10)))
    assert rep.counts == {"out_of_range_rating": 1} and rep.examples["out_of_range_rating"][0].line == 3
    _, rep = load_events_file(p, FULL, rules=CleaningRules(rating_range=None))
    assert rep.counts == {}


def test_bad_encoding_is_counted_with_line(tmp_path):
    data = b"user,item,ts\nu1,i1,1\nJos\xe9,i2,2\nu2,i3,3\n\xff\xfe,i4,4\n"
    p = write(tmp_path, "ev.csv", data)
    m = ColumnMapping(user="user", item="item", timestamp="ts")
    ds, rep = load_events_file(p, m)
    assert rep.counts == {"bad_encoding": 2}
    assert [i.line for i in rep.examples["bad_encoding"]] == [3, 5]
    assert "cannot decode byte(s) b'\\xe9' at column 4 as utf-8" in rep.examples["bad_encoding"][0].reason
    assert rep.rows_in == 4 and rep.rows_out == 2 and ds.users.ids == ["u1", "u2"]
    with pytest.raises(DataError, match="^ev.csv line 3: cannot decode"):
        load_events_file(p, m, strict=True)
    ds, rep = load_events_file(p, m, encoding="latin-1")
    assert rep.counts == {} and "José" in ds.users.ids


def test_unknown_item_against_catalog(tmp_path):
    items = write(tmp_path, "items.csv", "item_id,title\ni1,One\ni2,Two\n")
    ev = write(tmp_path, "ev.csv", "user_id,item_id,timestamp\nu1,i1,1\nu1,i3,2\nu2,i2,3\n")
    cat = load_items_file(items)
    ds, rep = load_events_file(ev, items=cat)
    assert rep.counts == {"unknown_item": 1}
    issue = rep.examples["unknown_item"][0]
    assert issue.message() == "ev.csv line 3, field 'item_id': item 'i3' is not in the item catalog (items.csv)"
    assert ds.items.ids == ["i1", "i2"] and ds.item_table.title == ["One", "Two"]


def test_kcore_is_iterative_and_reported(tmp_path):
    # 2-core: u3 has one event -> removed; then item c has one event left -> removed; then u2 has 1.
    rows = ["u1,a", "u1,b", "u2,b", "u2,c", "u3,c", "u4,a", "u4,b"]
    p = write(tmp_path, "ev.csv", "user_id,item_id\n" + "\n".join(rows) + "\n")
    m = ColumnMapping(timestamp=None)
    ds, rep = load_events_file(p, m, rules=CleaningRules(kcore=2))
    assert rep.counts == {"kcore": 3}
    assert [i.line for i in rep.examples["kcore"]] == [4, 5, 6]
    assert any("user 'u3' has 1 events (< 2)" in i.reason for i in rep.examples["kcore"])
    assert sorted(ds.users.ids) == ["u1", "u4"] and len(ds.interactions) == 4
    check_arithmetic(rep)
    # k-core is a filter, not bad data: strict mode does not raise for it
    load_events_file(p, m, rules=CleaningRules(kcore=2), strict=True)


def test_kcore_mask_direct():
    u = np.array(["a", "a", "b", "b", "c"])
    i = np.array(["x", "y", "x", "y", "x"])
    keep, side, cnt = kcore_mask(u, i, 2)
    assert keep.tolist() == [True, True, True, True, False] and side[4] == 1 and cnt[4] == 1


def test_line_numbers_with_multiline_quotes_blank_lines_and_crlf(tmp_path):
    text = ('user,item,ts,note\r\nu1,i1,1,"two\r\nlines"\r\n\r\nu2,i2,xx,plain\r\nu3,i3,3,"a,b"\r\n'
            'u4,i4,yy,z\r\n')
    p = write(tmp_path, "ev.csv", text)
    _, rep = load_events_file(p, ColumnMapping(user="user", item="item", timestamp="ts"))
    assert [i.line for i in rep.examples["unparsable_timestamp"]] == [5, 7]
    assert rep.rows_in == 4 and rep.rows_out == 2


def test_many_bad_rows_keep_five_examples(tmp_path):
    rows = "".join(f"u{k},i{k},bad{k}\n" for k in range(20))
    p = write(tmp_path, "ev.csv", "user_id,item_id,timestamp\n" + rows)
    _, rep = load_events_file(p)
    assert rep.counts == {"unparsable_timestamp": 20}
    assert [i.line for i in rep.examples["unparsable_timestamp"]] == [2, 3, 4, 5, 6]
    check_arithmetic(rep)


def test_report_dict_and_rich_rendering(tmp_path):
    p = write(tmp_path, "ev.csv", "user,item,ts,kind,value\nu1,i1,1,view,\n,i1,1,view,\nu1,i1,1,view,\n")
    _, rep = load_events_file(p, FULL)
    d = rep.to_dict()
    assert d["rows_in"] == 3 and d["rows_out"] == 1 and d["dropped"] == 2
    assert d["examples"]["missing_id"][0] == {"file": "ev.csv", "line": 3, "field": "user", "value": None,
                                              "reason": "empty user id"}
    console = Console(width=200, record=True)
    console.print(rep)
    out = console.export_text()
    assert "missing_id" in out and "duplicate" in out and "3 rows in, 1 kept, 2 dropped" in out


def test_clean_events_directly_with_kind_map_and_numeric_codes():
    frame = pd.DataFrame({"user": ["a", "a", "b", "b"], "item": [1, 2, 1, 3],
                          "kind": ["buy", "3", "Click", "9"]})
    out, rep = clean_events(frame, kind_map={"buy": "purchase"})
    assert out["kind"].tolist() == [EventKind.PURCHASE, EventKind.PURCHASE, EventKind.CLICK]
    assert out["item"].tolist() == ["1", "2", "1"]
    assert rep.counts == {"unknown_kind": 1} and rep.examples["unknown_kind"][0].line == 4
    assert rep.rows_in == 4 and rep.rows_out == 3


@pytest.mark.parametrize("values, fmt, expected", [
    (["0", "86400"], "unix", [0, 86400]),
    (["1500", "86400000"], "unix_ms", [1, 86400]),
    (["1970-01-02", "1970-01-01T00:01:00+00:00"], "iso", [86400, 60]),
    (["02/01/1970 00:00", "01/01/1970 00:00"], "%d/%m/%Y %H:%M", [86400, 0]),
    (["86400", "60"], None, [86400, 60]),
    (["1700000000000"], None, [1700000000]),
    (["1970-01-02", "1970-01-01 00:00:10"], None, [86400, 10]),
])
def test_parse_timestamps_formats(values, fmt, expected):
    ts, ok = parse_timestamps(pd.Series(values, dtype=object), fmt)
    assert ok.all() and ts.tolist() == expected


def test_parse_timestamps_invalid_and_datetime_dtype():
    ts, ok = parse_timestamps(pd.Series(["2020-01-01", "nope", None], dtype=object), "iso")
    assert ok.tolist() == [True, False, False]
    s = pd.Series(pd.to_datetime(["1970-01-01 00:00:05"]))
    ts, ok = parse_timestamps(s)
    assert ts.tolist() == [5] and ok.all()


def test_row_issue_message_without_field():
    assert RowIssue("a.jsonl", 4, None, None, "invalid JSON").message() == "a.jsonl line 4: invalid JSON"
    assert RowIssue("a.parquet", 2, "u", "", "x", unit="row").message() == "a.parquet row 2, field 'u': x"


def test_item_file_repairs_and_strict(tmp_path):
    p = write(tmp_path, "items.csv", b"item_id,title,created\n1,Caf\xe9,2020-01-01\n2,Ok,someday\n")
    cat = load_items_file(p, ItemMapping(created_at="created", created_at_format="iso"))
    assert cat.report.counts == {} and cat.report.repaired == {"bad_encoding": 1, "unparsable_timestamp": 1}
    assert cat.table.title[0] == "Caf\ufffd" and cat.table.created_at.tolist() == [1577836800, -1]
    with pytest.raises(DataError, match="^items.csv line 2: cannot decode"):
        load_items_file(p, ItemMapping(created_at="created", created_at_format="iso"), strict=True)
