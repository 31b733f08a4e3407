"""Reading CSV / TSV / JSON-lines / Parquet files into raw columns with line numbers.

Text files are read as bytes and decoded per line, so undecodable lines are reported
(`bad_encoding`) instead of failing the whole file, and every row keeps the physical line
number where it starts (the header of a CSV file is line 1).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import pandas as pd

from lmrec.data.cleaning import BAD_ENCODING, MALFORMED_ROW, CleaningReport, DataError, RowIssue

FORMATS = ("csv", "tsv", "jsonl", "parquet")
_EXT = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
        ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class RawTable:
    """Raw rows of one file: requested columns (raw values), line numbers, read-level report."""

    file: str
    frame: pd.DataFrame
    lines: np.ndarray
    report: CleaningReport
    unit: str = "line"


def detect_format(path: Path, fmt: str | None = None) -> str:
    """'csv', 'tsv', 'jsonl' or 'parquet' from `fmt` or the file extension (.gz allowed)."""
    if fmt is not None:
        f = fmt.lower().lstrip(".")
        f = {"json": "jsonl", "ndjson": "jsonl", "tab": "tsv"}.get(f, f)
        if f not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
        return f
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _EXT:
        return _EXT[suffixes[-1]]
    raise ValueError(f"{path.name}: cannot tell the format from the extension; pass fmt= "
                     f"({', '.join(FORMATS)})")


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix.lower() == ".gz" else data


def decode_lines(data: bytes, encoding: str, file: str, report: CleaningReport,
                 on_error: Literal["drop", "replace"], *, header: bool = False) -> list[str]:
    """Lines of `data` (with line ends) decoded with `encoding`.

    Undecodable lines become empty (drop: counted as `bad_encoding` rows) or are decoded with
    U+FFFD replacement characters (replace: counted in `report.repaired`). A `header` line
    is always repaired.
    """
    enc = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        return _split(data.decode(enc))
    except UnicodeDecodeError:
        pass
    out: list[str] = []
    dropped: list[RowIssue] = []
    repaired: list[RowIssue] = []
    for no, raw in enumerate(data.splitlines(keepends=True), start=1):
        try:
            out.append(raw.decode(enc if no == 1 else encoding))
        except UnicodeDecodeError as e:
            bad = raw[e.start:e.end]
            snippet = raw[max(0, e.start - 15):e.end + 15].rstrip(b"\r\n")
            reason = (f"cannot decode byte(s) {bad!r} at column {e.start + 1} as {encoding} "
                      f"(near {snippet!r})")
            if on_error == "replace" or (header and no == 1):
                out.append(raw.decode(encoding, errors="replace"))
                repaired.append(RowIssue(file, no, None, repr(snippet), reason + "; replaced with U+FFFD"))
            else:
                out.append("\n")
                dropped.append(RowIssue(file, no, None, repr(snippet), reason))
    report.add(BAD_ENCODING, dropped)
    report.add(BAD_ENCODING, repaired, repaired=True)
    return out


def _split(text: str) -> list[str]:
    """Split on \\n, \\r\\n and \\r only (the same line ends as bytes.splitlines)."""
    return list(io.StringIO(text, newline=""))


def _check_columns(file: str, available: Sequence[str], wanted: Sequence[str]) -> None:
    missing = [c for c in wanted if c not in available]
    if missing:
        raise DataError(f"{file}: column(s) {', '.join(map(repr, missing))} not found; the file has "
                        f"columns: {', '.join(map(str, available))}")


def read_table(
    path: str | Path,
    columns: Sequence[str],
    *,
    fmt: str | None = None,
    sep: str | None = None,
    encoding: str = "utf-8",
    names: Sequence[str] | None = None,
    on_bad_encoding: Literal["drop", "replace"] = "drop",
) -> RawTable:
    """Read the given `columns` of a CSV/TSV/JSONL/Parquet file.

    CSV/TSV files have a header row unless `names` gives the column names. Missing columns
    raise `DataError` listing the file's columns.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    kind = detect_format(path, fmt)
    report = CleaningReport(file=path.name)
    if kind == "parquet":
        return _read_parquet(path, columns, report)
    has_header = kind in ("csv", "tsv") and names is None
    lines = decode_lines(_read_bytes(path), encoding, path.name, report, on_bad_encoding, header=has_header)
    if kind == "jsonl":
        return _read_jsonl(path.name, lines, columns, report)
    delim = sep or ("\t" if kind == "tsv" else ",")
    return _read_delimited(path.name, lines, columns, delim, kind == "tsv" and sep is None, names, report)


def _records(lines: list[str], delim: str, quoting: int, expected: list[int | None]
             ) -> Iterator[tuple[int, int, list[str] | None, str | None]]:
    """(first line, last line, fields, None) per CSV record, or (line, line, None, why) for a
    row that cannot be parsed; lines count from 1.

    A quoted field may span lines. When one opened on a line runs to the end of the file without
    closing, the csv module would return the rest of the file as that field: instead the
    record's first line is reported (`why`) and parsing resumes on the next line, so one stray
    quote costs one row. `expected[0]` (set by the caller once it knows the header) is the field
    count a multi-line record must have to be kept; one with another count is treated the same way.
    """
    n = len(lines)
    pos = 0  # index of the next line to parse
    while pos < n:
        offset = pos
        reader = csv.reader((lines[i] for i in range(offset, n)), delimiter=delim, quoting=quoting)
        prev = offset  # lines consumed so far
        restart = False
        while True:
            try:
                rec = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield prev + 1, offset + reader.line_num, None, f"cannot parse the row: {e}"
                prev = offset + reader.line_num
                continue
            start, end = prev + 1, offset + reader.line_num
            prev = end
            if end > start and quoting != csv.QUOTE_NONE:
                raw = "".join(lines[start - 1:end])
                unclosed = end == n and raw.count('"') % 2 == 1
                if unclosed or (expected[0] is not None and len(rec) != expected[0]):
                    why = ("unclosed quote: the quoted field opened on this line never closes"
                           if unclosed else
                           f"a quoted field opened on this line runs to line {end} and leaves {len(rec)} "
                           f"fields (expected {expected[0]}): probably an unclosed quote")
                    yield start, start, None, why
                    pos = start  # resume on the line after the bad one
                    restart = True
                    break
            yield start, end, rec, None
        if not restart:
            return


def _read_delimited(file: str, lines: list[str], columns: Sequence[str], delim: str, no_quotes: bool,
                    names: Sequence[str] | None, report: CleaningReport) -> RawTable:
    quoting = csv.QUOTE_NONE if no_quotes else csv.QUOTE_MINIMAL
    header: list[str] | None = list(names) if names is not None else None
    rows: list[list[str]] = []
    row_lines: list[int] = []
    malformed: list[RowIssue] = []
    n_bad = 0
    expected: list[int | None] = [len(header) if header is not None else None]
    for start, _end, rec, why in _records(lines, delim, quoting, expected):
        if rec is None:
            n_bad += 1
            if len(malformed) < 5:
                malformed.append(RowIssue(file, start, None, _short(lines[start - 1].rstrip("\r\n")), why or ""))
            continue
        if not rec or (len(rec) == 1 and not rec[0].strip()):
            continue
        if header is None:
            header = [h.strip() for h in rec]
            _check_columns(file, header, columns)
            expected[0] = len(header)
            continue
        if len(rec) != len(header):
            n_bad += 1
            if len(malformed) < 5:
                malformed.append(RowIssue(file, start, None, _short(delim.join(rec)),
                                          f"expected {len(header)} fields, found {len(rec)}"))
            continue
        rows.append(rec)
        row_lines.append(start)
    if header is None:
        raise DataError(f"{file}: the file is empty (no header row)")
    if names is not None:
        _check_columns(file, header, columns)
    report.add(MALFORMED_ROW, malformed, count=n_bad)
    pos = [header.index(c) for c in columns]
    cols = list(zip(*rows)) if rows else [()] * len(header)
    frame = pd.DataFrame({c: pd.Series(cols[p], dtype=object) for c, p in zip(columns, pos)})
    report.rows_in = len(rows) + report.dropped
    return RawTable(file, frame, np.asarray(row_lines, dtype=np.int64), report)


def _short(s: str) -> str:
    return s if len(s) <= 60 else s[:57] + "..."


def _read_jsonl(file: str, lines: list[str], columns: Sequence[str], report: CleaningReport) -> RawTable:
    values: dict[str, list[Any]] = {c: [] for c in columns}
    row_lines: list[int] = []
    malformed: list[RowIssue] = []
    n_bad = 0
    seen: set[str] = set()
    for no, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
            if not isinstance(obj, dict):
                raise ValueError(f"expected a JSON object, found {type(obj).__name__}")
        except ValueError as e:
            n_bad += 1
            if len(malformed) < 5:
                malformed.append(RowIssue(file, no, None, _short(text.strip()), f"invalid JSON: {e}"))
            continue
        seen.update(obj)
        for c in columns:
            values[c].append(obj.get(c))
        row_lines.append(no)
    absent = [c for c in columns if c not in seen]
    if row_lines and absent:
        _check_columns(file, sorted(seen), columns)
    report.add(MALFORMED_ROW, malformed, count=n_bad)
    report.rows_in = len(row_lines) + report.dropped
    frame = pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in values.items()})
    return RawTable(file, frame, np.asarray(row_lines, dtype=np.int64), report)


def _read_parquet(path: Path, columns: Sequence[str], report: CleaningReport) -> RawTable:
    import pyarrow.parquet as pq

    schema_names = pq.read_schema(path).names
    _check_columns(path.name, schema_names, columns)
    frame = pq.read_table(path, columns=list(dict.fromkeys(columns))).to_pandas()
    report.rows_in = len(frame)
    return RawTable(path.name, frame.reset_index(drop=True), np.arange(1, len(frame) + 1, dtype=np.int64),
                    report, unit="row")
