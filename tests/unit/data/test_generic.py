"""Generic file loaders: formats (CSV, TSV, JSONL, Parquet, gzip), mappings, item files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from lmrec.data.cleaning import CleaningRules, DataError
from lmrec.data.loaders import ColumnMapping, ItemMapping, load_events_file, load_items_file
from lmrec.data.loaders.tabular import detect_format
from lmrec.types import EventKind


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return p


def test_jsonl_line_numbers_blank_and_invalid_lines(tmp_path):
    lines = [
        {"user_id": 1, "item_id": "a", "timestamp": 100},
        {"user_id": 2, "item_id": "b", "timestamp": "2020-01-01T00:00:00Z"},
        None,  # blank line
        "{not json",
        {"user_id": None, "item_id": "c", "timestamp": 5},
        [1, 2],
        {"user_id": 3, "item_id": 7.0, "timestamp": 1.5e9},
    ]
    text = "\n".join("" if ln is None else ln if isinstance(ln, str) else json.dumps(ln) for ln in lines)
    p = write(tmp_path, "ev.jsonl", text + "\n")
    ds, rep = load_events_file(p, ColumnMapping(timestamp_format="unix"))
    assert rep.counts == {"malformed_row": 2, "missing_id": 1, "unparsable_timestamp": 1}
    assert [i.line for i in rep.examples["malformed_row"]] == [4, 6]
    assert rep.examples["missing_id"][0].message() == "ev.jsonl line 5, field 'user_id': empty user id"
    assert rep.examples["unparsable_timestamp"][0].line == 2
    assert rep.rows_in == 6 and rep.rows_out == 2
    assert sorted(ds.items.ids) == ["7", "a"]
    with pytest.raises(DataError, match="^ev.jsonl line 2, field 'timestamp': cannot parse "
                                        "'2020-01-01T00:00:00Z' as a unix timestamp"):
        load_events_file(p, ColumnMapping(timestamp_format="unix"), strict=True)


def test_json_extension_is_json_lines(tmp_path):
    p = write(tmp_path, "ev.json", '{"user_id": "u", "item_id": "i", "timestamp": 3}\n')
    ds, rep = load_events_file(p)
    assert len(ds.interactions) == 1 and rep.rows_out == 1


def test_parquet_with_typed_columns_and_nulls(tmp_path):
    table = pa.table({
        "uid": pa.array([1, 2, None, 4], type=pa.int64()),
        "sku": pa.array(["x", "y", "z", "x"]),
        "when": pa.array(pd.to_datetime(["2021-01-01", "2021-01-02", "2021-01-03", None])),
        "event": pa.array(["view", "purchase", "view", "cart"]),
    })
    p = tmp_path / "events.parquet"
    pq.write_table(table, p)
    m = ColumnMapping(user="uid", item="sku", timestamp="when", kind="event")
    ds, rep = load_events_file(p, m)
    assert rep.counts == {"missing_id": 1, "unparsable_timestamp": 1}
    assert rep.examples["missing_id"][0].message() == "events.parquet row 3, field 'uid': empty user id"
    assert rep.examples["unparsable_timestamp"][0].message() == ("events.parquet row 4, field 'when': "
                                                                 "missing timestamp")
    assert ds.users.ids == ["1", "2"]
    assert sorted(ds.interactions.timestamp.tolist()) == [1609459200, 1609545600]
    assert sorted(ds.summary()["event_kinds"]) == ["purchase", "view"]


def test_tsv_without_header_uses_names(tmp_path):
    p = write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t9\t891717742\n22\t377\t1\t878887116\n")
    m = ColumnMapping(user="user", item="item", value="rating", timestamp="ts", default_kind="rating")
    ds, rep = load_events_file(p, m, fmt="tsv", names=["user", "item", "rating", "ts"],
                               rules=CleaningRules(rating_range=(1, 5)))
    assert rep.counts == {"out_of_range_rating": 1}
    assert rep.examples["out_of_range_rating"][0].message() == (
        "u.data line 2, field 'rating': rating 9 outside the range [1, 5]")
    assert ds.users.ids == ["22", "196"]  # numeric order
    assert ds.interactions.value.tolist() == [3.0, 1.0]


def test_tsv_with_header_and_quotes_kept_literally(tmp_path):
    p = write(tmp_path, "ev.tsv", 'user\titem\tts\nu1\t"i1\t5\nu2\ti2\t6\n')
    ds, rep = load_events_file(p, ColumnMapping(user="user", item="item", timestamp="ts"))
    assert rep.counts == {} and sorted(ds.items.ids) == ['"i1', "i2"]


def test_gzip_csv_and_custom_separator(tmp_path):
    p = tmp_path / "ev.csv.gz"
    p.write_bytes(gzip.compress(b"user_id;item_id;timestamp\nu1;i1;1\nu2;i2;2\n"))
    ds, rep = load_events_file(p, sep=";")
    assert rep.rows_out == 2 and detect_format(p) == "csv"


def test_format_detection_and_errors(tmp_path):
    assert detect_format(Path("a.TSV")) == "tsv" and detect_format(Path("a.ndjson")) == "jsonl"
    assert detect_format(Path("a.txt"), "json") == "jsonl"
    with pytest.raises(ValueError, match="cannot tell the format"):
        detect_format(Path("a.txt"))
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        detect_format(Path("a.csv"), "xml")
    with pytest.raises(FileNotFoundError, match="file not found"):
        load_events_file(tmp_path / "nope.csv")


def test_missing_column_names_the_file_columns(tmp_path):
    p = write(tmp_path, "ev.csv", "user,item,time\nu1,i1,1\n")
    with pytest.raises(DataError, match=r"ev.csv: column\(s\) 'user_id', 'item_id', 'timestamp' not found; "
                                        r"the file has columns: user, item, time"):
        load_events_file(p)


def test_mapping_validation():
    assert ColumnMapping(default_kind="purchase").default_kind is EventKind.PURCHASE
    with pytest.raises(ValidationError, match="unknown event kind"):
        ColumnMapping(default_kind="like")
    with pytest.raises(ValidationError, match="rating events need a value column"):
        ColumnMapping(default_kind="rating")


def test_no_timestamp_column_orders_by_file(tmp_path):
    p = write(tmp_path, "ev.csv", "user_id,item_id\nu1,b\nu2,a\nu1,a\nu1,c\n")
    ds, _ = load_events_file(p, ColumnMapping(timestamp=None), name="seq")
    assert ds.name == "seq" and not ds.has_timestamps
    seqs = ds.interactions.per_user(ds.n_users)
    assert ds.items.to_ids(seqs[ds.users.index("u1")]) == ["b", "a", "c"]


def test_iso_and_strftime_timestamps(tmp_path):
    p = write(tmp_path, "ev.csv", "user_id,item_id,timestamp\nu1,i1,2024-03-01 10:00\nu1,i2,01/03/2024\n")
    _, rep = load_events_file(p, ColumnMapping(timestamp_format="%Y-%m-%d %H:%M"))
    assert rep.counts == {"unparsable_timestamp": 1}
    assert rep.examples["unparsable_timestamp"][0].reason == (
        "cannot parse '01/03/2024' as a time with format '%Y-%m-%d %H:%M'")


def test_items_file_alignment_categories_and_attributes(tmp_path):
    p = write(tmp_path, "items.csv",
              "item_id,title,genres,desc,released,on_sale,studio\n"
              "10,Ten,a|b,d10,2001-01-01,yes,S1\n"
              "2,Two,,d2,,no,S2\n"
              ",Nobody,a,,,,\n"
              "2,Two again,b,,,,\n"
              "1,One,c| d ,d1,1999-12-31,maybe,S3\n")
    m = ItemMapping(title="title", text=["desc"], categories="genres", created_at="released",
                    created_at_format="iso", available="on_sale", attributes=["studio"])
    cat = load_items_file(p, m)
    assert cat.items.ids == ["1", "2", "10"]
    t = cat.table
    assert t.title == ["One", "Two", "Ten"]
    assert t.categories == [["c", "d"], [], ["a", "b"]]
    assert t.text["desc"] == ["d1", "d2", "d10"] and t.attributes["studio"] == ["S3", "S2", "S1"]
    assert t.created_at.tolist() == [946598400, -1, 978307200]
    assert t.available.tolist() == [True, False, True]
    rep = cat.report
    assert rep.counts == {"missing_id": 1, "duplicate": 1} and rep.repaired == {"bad_value": 1}
    assert rep.examples["duplicate"][0].message() == "items.csv line 5, field 'item_id': item id '2' already " \
                                                      "defined on line 3"
    assert rep.rows_in == rep.rows_out + sum(rep.counts.values())


def test_events_plus_items_make_one_dataset(tmp_path):
    items = write(tmp_path, "items.jsonl", "\n".join(json.dumps(r) for r in [
        {"item_id": "b", "title": "Bee"}, {"item_id": "a", "title": "Ay"}, {"item_id": "z", "title": "Zed"}]))
    ev = write(tmp_path, "ev.csv", "user_id,item_id,timestamp\nu1,a,1\nu1,q,2\nu2,b,3\n")
    cat = load_items_file(items)
    ds, rep = load_events_file(ev, items=cat, name="shop")
    assert ds.items.ids == ["a", "b", "z"] and ds.item_table.title == ["Ay", "Bee", "Zed"]
    assert rep.counts == {"unknown_item": 1}
    assert ds.info["item_cleaning"]["rows_out"] == 3 and ds.info["cleaning"]["rows_out"] == 2
    assert ds.summary()["items_with_events"] == 2 and ds.n_items == 3


def test_hundred_thousand_rows_clean_quickly(tmp_path):
    import time

    n = 100_000
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"user_id": rng.integers(0, 1000, n), "item_id": rng.integers(0, 5000, n),
                       "timestamp": rng.integers(1_000_000, 2_000_000, n)})
    p = tmp_path / "big.csv"
    df.to_csv(p, index=False)
    t = time.perf_counter()
    ds, rep = load_events_file(p, rules=CleaningRules(kcore=2))
    elapsed = time.perf_counter() - t
    assert rep.rows_in == n and rep.rows_in == rep.rows_out + sum(rep.counts.values())
    assert elapsed < 10, elapsed  # typically ~1 s; generous for slow CI machines


def test_empty_files(tmp_path):
    with pytest.raises(DataError, match="empty.csv: the file is empty"):
        load_events_file(write(tmp_path, "empty.csv", ""))
    ds, rep = load_events_file(write(tmp_path, "head.csv", "user_id,item_id,timestamp\n"))
    assert len(ds.interactions) == 0 and rep.rows_in == 0 and rep.rows_out == 0
    ds, rep = load_events_file(write(tmp_path, "e.jsonl", "\n\n"), rules=CleaningRules(kcore=3))
    assert len(ds.interactions) == 0 and rep.counts == {}
