"""Cleaning of raw event rows: named rules, a report of what each rule dropped, strict mode.

Every rule drops whole rows and is counted in `CleaningReport.counts` with up to five
example rows (file, line, field, value, reason), so that
`rows_in == rows_out + sum(counts.values())` always holds. In strict mode the first bad row
(lowest line number) raises `DataError` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from lmrec.types import EventKind

# Rule names, in the order they are applied.
BAD_ENCODING = "bad_encoding"
MALFORMED_ROW = "malformed_row"
MISSING_ID = "missing_id"
UNPARSABLE_TIMESTAMP = "unparsable_timestamp"
UNKNOWN_KIND = "unknown_kind"
BAD_VALUE = "bad_value"
OUT_OF_RANGE_RATING = "out_of_range_rating"
UNKNOWN_ITEM = "unknown_item"
DUPLICATE = "duplicate"
KCORE = "kcore"
RULES = (BAD_ENCODING, MALFORMED_ROW, MISSING_ID, UNPARSABLE_TIMESTAMP, UNKNOWN_KIND, BAD_VALUE,
         OUT_OF_RANGE_RATING, UNKNOWN_ITEM, DUPLICATE, KCORE)
RULE_HELP = {
    BAD_ENCODING: "line has bytes that cannot be decoded",
    MALFORMED_ROW: "row cannot be parsed (wrong number of fields, invalid JSON)",
    MISSING_ID: "empty user or item id",
    UNPARSABLE_TIMESTAMP: "timestamp missing or not parsable",
    UNKNOWN_KIND: "event kind is not a known EventKind",
    BAD_VALUE: "value is not a number (or a rating without a value)",
    OUT_OF_RANGE_RATING: "rating outside the allowed range",
    UNKNOWN_ITEM: "item is not in the item catalog",
    DUPLICATE: "exact duplicate of an earlier event",
    KCORE: "removed by the k-core filter",
}
MAX_EXAMPLES = 5


class DataError(ValueError):
    """Bad input data; `issue` (when set) locates the offending row."""

    def __init__(self, message: str, issue: RowIssue | None = None) -> None:
        super().__init__(message)
        self.issue = issue


@dataclass
class RowIssue:
    """One bad row: where it is and why it was rejected."""

    file: str
    line: int
    field: str | None
    value: str | None
    reason: str
    unit: str = "line"  # "row" for formats without lines (Parquet)

    def message(self) -> str:
        where = f"{self.file} {self.unit} {self.line}"
        if self.field is not None:
            where += f", field {self.field!r}"
        return f"{where}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "field": self.field, "value": self.value,
                "reason": self.reason}


@dataclass
class CleaningReport:
    """Rows read, rows kept and, per rule, how many rows were dropped (with examples).

    `repaired` counts rows that were kept after a fix (e.g. an item title with undecodable
    bytes replaced by U+FFFD); these are not part of the drop arithmetic.
    """

    file: str = ""
    rows_in: int = 0
    rows_out: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[RowIssue]] = field(default_factory=dict)
    repaired: dict[str, int] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return sum(self.counts.values())

    def add(self, rule: str, issues: list[RowIssue], count: int | None = None, *,
            repaired: bool = False) -> None:
        """Record `count` rows (default len(issues)) for `rule`; keeps the first examples."""
        n = len(issues) if count is None else count
        if n <= 0:
            return
        target = self.repaired if repaired else self.counts
        target[rule] = target.get(rule, 0) + n
        ex = self.examples.setdefault(rule, [])
        ex.extend(issues[: max(0, MAX_EXAMPLES - len(ex))])

    def first_issue(self, *, exclude: tuple[str, ...] = (KCORE,)) -> RowIssue | None:
        """The recorded issue with the lowest line number (rules in `exclude` ignored)."""
        cands = [ex[0] for rule, ex in self.examples.items() if ex and rule not in exclude]
        return min(cands, key=lambda i: i.line) if cands else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file, "rows_in": self.rows_in, "rows_out": self.rows_out,
            "dropped": self.dropped, "counts": dict(self.counts), "repaired": dict(self.repaired),
            "examples": {k: [i.to_dict() for i in v] for k, v in self.examples.items()},
        }

    def to_table(self) -> Any:
        """A rich Table: one row per rule that fired, with its first example."""
        from rich.table import Table

        t = Table(title=f"cleaning {self.file}: {self.rows_in} rows in, {self.rows_out} kept, "
                        f"{self.dropped} dropped")
        t.add_column("rule")
        t.add_column("rows", justify="right")
        t.add_column("first example", overflow="fold")
        order = [r for r in RULES if r in self.counts or r in self.repaired]
        order += [r for r in {**self.counts, **self.repaired} if r not in order]
        for rule in order:
            ex = self.examples.get(rule)
            n = self.counts.get(rule, 0)
            label = f"{n}" if rule in self.counts else f"{self.repaired[rule]} repaired"
            t.add_row(rule, label, ex[0].message() if ex else "")
        return t

    def __rich__(self) -> Any:
        return self.to_table()


class CleaningRules(BaseModel):
    """Which optional rules to apply and their parameters."""

    drop_duplicates: bool = True
    rating_range: tuple[float, float] | None = (0.5, 5.0)
    kcore: int | None = Field(default=None, ge=1)


def _show(v: Any) -> str:
    s = str(v)
    return s if len(s) <= 60 else s[:57] + "..."


def normalize_ids(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Ids as stripped strings (integral floats written as ints) and a mask of missing ids."""
    if pd.api.types.is_integer_dtype(s.dtype) and not s.isna().any():
        return s.astype(np.int64).astype(str).to_numpy(dtype=object), np.zeros(len(s), dtype=bool)
    arr = s.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(arr, skipna=False) == "string":  # all str: vectorised strip
        out = pd.Series(arr, dtype=object).str.strip().to_numpy(dtype=object)
        return out, out == ""

    def one(v: Any) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return ""
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v).strip()

    out = np.array([one(v) for v in s.to_numpy(dtype=object)], dtype=object)
    return out, out == ""


_TS_DESC = {None: "a timestamp (unix seconds or ISO-8601)", "unix": "a unix timestamp",
            "unix_ms": "a unix timestamp in milliseconds", "iso": "an ISO-8601 time"}


def describe_timestamp_format(fmt: str | None) -> str:
    return _TS_DESC.get(fmt, f"a time with format {fmt!r}")


def parse_timestamps(s: pd.Series, fmt: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seconds since the epoch (int64) and a validity mask.

    `fmt`: 'unix', 'unix_ms', 'iso', a strftime pattern, or None to detect (numbers are unix
    seconds, or milliseconds when they are too large for seconds; text is ISO-8601).
    """
    n = len(s)
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        dt = pd.to_datetime(s, utc=True)
        return _dt_seconds(dt)
    if fmt in (None, "unix", "unix_ms"):
        num = pd.to_numeric(s, errors="coerce")
        num = num.astype("float64").to_numpy() if hasattr(num, "to_numpy") else np.asarray(num, float)
        ok = np.isfinite(num)
        if fmt is None:
            present = s.notna().to_numpy() & (s.astype(str).str.strip() != "").to_numpy()
            if ok.sum() * 2 < present.sum():  # mostly text: treat as ISO-8601
                return parse_timestamps(s, "iso")
            if ok.any() and np.median(np.abs(num[ok])) > 1e11:
                fmt = "unix_ms"
        if fmt == "unix_ms":
            num = num / 1000.0
        with np.errstate(invalid="ignore"):
            ok &= np.abs(num) < 1e12  # beyond ~30,000 years is not a time
        out = np.zeros(n, dtype=np.int64)
        out[ok] = np.floor(num[ok]).astype(np.int64)
        return out, ok
    text = s.astype(object).where(s.notna(), None).map(lambda v: None if v is None else str(v).strip())
    if fmt == "iso":
        dt = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    else:
        dt = pd.to_datetime(text, format=fmt, utc=True, errors="coerce")
    return _dt_seconds(dt)


def _dt_seconds(dt: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    ok = dt.notna().to_numpy()
    out = np.zeros(len(dt), dtype=np.int64)
    if ok.any():
        delta = dt[ok] - pd.Timestamp(0, tz="UTC")
        out[ok] = (delta // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)
    return out, ok


def _kind_codes(s: pd.Series, default: EventKind, kind_map: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """EventKind codes and a validity mask; empty kinds take `default`."""
    raw, _ = normalize_ids(s)
    lookup: dict[str, int] = {"": int(default)}
    kmap = {k.strip().lower(): v for k, v in kind_map.items()}
    for v in pd.unique(raw):
        if v == "":
            continue
        key = str(v).strip().lower()
        target = kmap.get(key, key)
        try:
            lookup[v] = int(EventKind(int(target))) if target.isdigit() else int(EventKind.parse(target))
        except ValueError:
            lookup[v] = -1
    codes = np.fromiter((lookup[v] for v in raw), dtype=np.int64, count=len(raw))
    return codes, codes >= 0


def kcore_mask(user: np.ndarray, item: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Iterative k-core: keep-mask, plus per removed row whether the user (1) or item (2) fell
    below k and that count."""
    u = pd.factorize(user)[0]
    i = pd.factorize(item)[0]
    keep = np.ones(len(u), dtype=bool)
    side = np.zeros(len(u), dtype=np.int8)
    cnt = np.zeros(len(u), dtype=np.int64)
    while True:
        uc = np.bincount(u[keep], minlength=u.max() + 1 if len(u) else 0)
        ic = np.bincount(i[keep], minlength=i.max() + 1 if len(i) else 0)
        low_u = uc[u] < k
        low_i = ic[i] < k
        bad = keep & (low_u | low_i)
        if not bad.any():
            return keep, side, cnt
        side[bad] = np.where(low_u[bad], 1, 2)
        cnt[bad] = np.where(low_u[bad], uc[u][bad], ic[i][bad])
        keep &= ~bad


class _Cleaner:
    """Tracks which rows are still alive and records each rule's drops with examples."""

    def __init__(self, frame: pd.DataFrame, lines: np.ndarray, report: CleaningReport,
                 fields: dict[str, str], unit: str) -> None:
        self.frame = frame.reset_index(drop=True)
        self.lines = np.asarray(lines, dtype=np.int64)
        self.alive = np.ones(len(frame), dtype=bool)
        self.report = report
        self.fields = fields
        self.unit = unit

    def drop(self, rule: str, bad: np.ndarray, field: str | None, values: np.ndarray | None,
             reason: Callable[[int], str]) -> None:
        """Drop alive rows in `bad`; `reason(row)` explains one row (called for examples only)."""
        hit = np.flatnonzero(bad & self.alive)
        if not len(hit):
            return
        issues = [RowIssue(self.report.file, int(self.lines[r]), self.fields.get(field, field) if field else None,
                           None if values is None else _show(values[r]), reason(int(r)), self.unit)
                  for r in hit[:MAX_EXAMPLES]]
        self.report.add(rule, issues, count=len(hit))
        self.alive[hit] = False


def clean_events(
    frame: pd.DataFrame,
    lines: np.ndarray | None = None,
    *,
    report: CleaningReport | None = None,
    fields: dict[str, str] | None = None,
    rules: CleaningRules | None = None,
    timestamp_format: str | None = None,
    default_kind: EventKind = EventKind.VIEW,
    kind_map: dict[str, str] | None = None,
    catalog: set[str] | None = None,
    catalog_name: str = "the item catalog",
    strict: bool = False,
    unit: str = "line",
) -> tuple[pd.DataFrame, CleaningReport]:
    """Clean raw event rows.

    `frame` has columns user, item and optionally timestamp, kind, value (raw values);
    `lines` gives each row's line number (default 1..n); `fields` maps those canonical names
    to the names used in the file (for messages). A given `report` may already hold
    read-level counts and `rows_in` (default: a new report with rows_in = len(frame)).
    Returns a frame with user/item (str), timestamp (int64), kind (int8), value (float32) and
    line, in line order, and the report. Strict mode raises `DataError` on the first bad row.
    """
    rules = rules or CleaningRules()
    if lines is None:
        lines = np.arange(1, len(frame) + 1)
    if report is None:
        report = CleaningReport(file="<memory>", rows_in=len(frame))
    c = _Cleaner(frame, lines, report, fields or {}, unit)
    f = c.frame
    n = len(f)
    user, u_missing = normalize_ids(f["user"])
    item, i_missing = normalize_ids(f["item"])
    c.drop(MISSING_ID, u_missing, "user", None, lambda r: "empty user id")
    c.drop(MISSING_ID, i_missing, "item", None, lambda r: "empty item id")

    if "timestamp" in f:
        ts_raw = f["timestamp"].to_numpy(dtype=object)
        ts, ok = parse_timestamps(f["timestamp"], timestamp_format)
        desc = describe_timestamp_format(timestamp_format)

        def ts_reason(r: int) -> str:
            v = ts_raw[r]
            if v is None or v is pd.NaT or (isinstance(v, float) and v != v) or str(v).strip() == "":
                return "missing timestamp"
            return f"cannot parse {_show(v)!r} as {desc}"

        c.drop(UNPARSABLE_TIMESTAMP, ~ok, "timestamp", ts_raw, ts_reason)
    else:
        ts = np.zeros(n, dtype=np.int64)

    if "kind" in f:
        kind, ok = _kind_codes(f["kind"], default_kind, kind_map or {})
        k_raw = f["kind"].to_numpy(dtype=object)
        names = ", ".join(k.name.lower() for k in EventKind)
        c.drop(UNKNOWN_KIND, ~ok, "kind", k_raw,
               lambda r: f"unknown event kind {_show(k_raw[r])!r} (expected one of: {names})")
        kind = np.where(ok, kind, int(default_kind)).astype(np.int8)
    else:
        kind = np.full(n, int(default_kind), dtype=np.int8)
    is_rating = kind == int(EventKind.RATING)

    if "value" in f:
        v_raw = f["value"].to_numpy(dtype=object)
        num = pd.to_numeric(f["value"], errors="coerce")
        value = np.asarray(num, dtype="float64")
        v_missing = normalize_ids(f["value"])[1]
        bad = (~np.isfinite(value) & ~v_missing) | (v_missing & is_rating)
        c.drop(BAD_VALUE, bad, "value", v_raw,
               lambda r: "rating event without a value" if v_missing[r]
               else f"cannot parse {_show(v_raw[r])!r} as a number")
        value = np.where(v_missing, 1.0, value)
    else:
        value = np.ones(n, dtype=np.float64)

    if rules.rating_range is not None:
        lo, hi = rules.rating_range
        with np.errstate(invalid="ignore"):
            bad = is_rating & ((value < lo) | (value > hi))
        c.drop(OUT_OF_RANGE_RATING, bad, "value", value,
               lambda r: f"rating {value[r]:g} outside the range [{lo:g}, {hi:g}]")

    if catalog is not None:
        known = pd.Series(item).isin(catalog).to_numpy()
        c.drop(UNKNOWN_ITEM, ~known, "item", item,
               lambda r: f"item {item[r]!r} is not in {catalog_name}")

    out = pd.DataFrame({"user": user, "item": item, "timestamp": ts, "kind": kind,
                        "value": value.astype(np.float32), "line": c.lines})
    if rules.drop_duplicates:
        keys = ["user", "item", "kind", "value", "timestamp"]
        live = out[c.alive]
        dup = np.zeros(n, dtype=bool)
        dup[np.flatnonzero(c.alive)[live.duplicated(keys, keep="first").to_numpy()]] = True
        if dup.any():
            first = live.groupby(keys, sort=False)["line"].transform("min")
            first_line = np.zeros(n, dtype=np.int64)
            first_line[np.flatnonzero(c.alive)] = first.to_numpy()
            c.drop(DUPLICATE, dup, None, None,
                   lambda r: f"exact duplicate of {unit} {first_line[r]} (same user, item, kind, "
                             f"value and timestamp)")

    if strict:
        issue = report.first_issue()
        if issue is not None:
            raise DataError(issue.message(), issue)

    if rules.kcore:
        k = rules.kcore
        idx = np.flatnonzero(c.alive)
        keep, side, cnt = kcore_mask(user[idx], item[idx], k)
        bad = np.zeros(n, dtype=bool)
        bad[idx[~keep]] = True
        full_side = np.zeros(n, dtype=np.int8)
        full_cnt = np.zeros(n, dtype=np.int64)
        full_side[idx], full_cnt[idx] = side, cnt
        c.drop(KCORE, bad, None, None,
               lambda r: f"{'user' if full_side[r] == 1 else 'item'} "
                         f"{(user if full_side[r] == 1 else item)[r]!r} has {full_cnt[r]} events "
                         f"(< {k}) in the {k}-core filter")

    result = out[c.alive].reset_index(drop=True)
    report.rows_out = len(result)
    return result, report


clean = clean_events
