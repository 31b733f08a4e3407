"""Loading any events file (and an optional item file) through a column mapping.

    dataset, report = load_events_file("events.csv", ColumnMapping(
        user="uid", item="sku", timestamp="ts", timestamp_format="iso"))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, field_validator, model_validator

from lmrec.data.cleaning import (
    DUPLICATE, MISSING_ID, UNPARSABLE_TIMESTAMP, BAD_VALUE, CleaningReport, CleaningRules, DataError,
    RowIssue, clean_events, describe_timestamp_format, normalize_ids, parse_timestamps,
)
from lmrec.data.dataset import Dataset, IdMap, Interactions, ItemTable
from lmrec.data.loaders.base import fast_indices
from lmrec.data.loaders.tabular import read_table
from lmrec.types import EventKind


class ColumnMapping(BaseModel):
    """Which columns of an events file hold the user, item, time, kind and value.

    `timestamp=None` means the file has no times: rows keep their file order and the data set
    gets `has_timestamps=False`. `timestamp_format`: 'unix', 'unix_ms', 'iso', a strftime
    pattern, or None to detect. `kind_map` maps the file's kind names to EventKind names
    (e.g. {"buy": "purchase"}).
    """

    user: str = "user_id"
    item: str = "item_id"
    timestamp: str | None = "timestamp"
    kind: str | None = None
    value: str | None = None
    default_kind: EventKind = EventKind.VIEW
    timestamp_format: str | None = None
    kind_map: dict[str, str] = Field(default_factory=dict)

    @field_validator("default_kind", mode="before")
    @classmethod
    def _parse_kind(cls, v: Any) -> EventKind:
        return EventKind.parse(v)

    @model_validator(mode="after")
    def _rating_needs_value(self) -> ColumnMapping:
        if self.default_kind == EventKind.RATING and self.kind is None and self.value is None:
            raise ValueError("rating events need a value column (set `value`)")
        return self

    def fields(self) -> dict[str, str]:
        """Canonical name -> file column, for the mapped columns."""
        out = {"user": self.user, "item": self.item}
        for name in ("timestamp", "kind", "value"):
            col = getattr(self, name)
            if col is not None:
                out[name] = col
        return out


class ItemMapping(BaseModel):
    """Which columns of an item file hold the id, title, text fields, categories, etc."""

    id: str = "item_id"
    title: str | None = "title"
    text: list[str] = Field(default_factory=list)
    categories: str | None = None
    category_sep: str = "|"
    created_at: str | None = None
    created_at_format: str | None = None
    available: str | None = None
    attributes: list[str] = Field(default_factory=list)

    def columns(self) -> list[str]:
        cols = [self.id, self.title, *self.text, self.categories, self.created_at, self.available,
                *self.attributes]
        return list(dict.fromkeys(c for c in cols if c))


class ItemCatalog(NamedTuple):
    """Items read from an item file: id map, aligned item table, cleaning report."""

    items: IdMap
    table: ItemTable
    report: CleaningReport


_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n"}


def load_items_file(
    path: str | Path,
    mapping: ItemMapping | None = None,
    *,
    strict: bool = False,
    fmt: str | None = None,
    sep: str | None = None,
    encoding: str = "utf-8",
) -> ItemCatalog:
    """Read an item catalog. Rows without an id and repeated ids (first kept) are dropped;
    undecodable text is repaired with U+FFFD and unparsable `created_at` / `available`
    values fall back to unknown (-1) / True; those repairs are reported under `repaired`.
    """
    m = mapping or ItemMapping()
    raw = read_table(path, m.columns(), fmt=fmt, sep=sep, encoding=encoding, on_bad_encoding="replace")
    f, lines, rep = raw.frame, raw.lines, raw.report
    ids, missing = normalize_ids(f[m.id])
    keep = ~missing
    issues = [RowIssue(raw.file, int(lines[r]), m.id, None, "empty item id", raw.unit)
              for r in np.flatnonzero(missing)[:5]]
    rep.add(MISSING_ID, issues, count=int(missing.sum()))
    dup = pd.Series(ids).duplicated(keep="first").to_numpy() & keep
    if dup.any():
        first = pd.Series(lines).groupby(ids).transform("min").to_numpy()
        rep.add(DUPLICATE, [RowIssue(raw.file, int(lines[r]), m.id, str(ids[r]),
                                     f"item id {ids[r]!r} already defined on {raw.unit} {first[r]}", raw.unit)
                            for r in np.flatnonzero(dup)[:5]], count=int(dup.sum()))
        keep &= ~dup

    def text_col(col: str | None) -> list[str]:
        if col is None:
            return [""] * int(keep.sum())
        vals = f[col].to_numpy(dtype=object)[keep]
        return ["" if v is None or (isinstance(v, float) and v != v) else str(v) for v in vals]

    sel = np.flatnonzero(keep)
    created = np.full(len(sel), -1, dtype=np.int64)
    if m.created_at:
        col = f[m.created_at].iloc[sel].reset_index(drop=True)
        ts, ok = parse_timestamps(col, m.created_at_format)
        present = ~normalize_ids(col)[1]
        created = np.where(ok, ts, -1)
        bad = np.flatnonzero(present & ~ok)
        desc = describe_timestamp_format(m.created_at_format)
        rep.add(UNPARSABLE_TIMESTAMP, [
            RowIssue(raw.file, int(lines[sel[r]]), m.created_at, str(col.iloc[r]),
                     f"cannot parse {str(col.iloc[r])!r} as {desc}; created_at set to unknown", raw.unit)
            for r in bad[:5]], count=len(bad), repaired=True)
    avail = np.ones(len(sel), dtype=bool)
    if m.available:
        vals = [str(v).strip().lower() if v is not None and v == v else "" for v in
                f[m.available].to_numpy(dtype=object)[sel]]
        avail = np.array([v not in _FALSE for v in vals], dtype=bool)
        bad = [r for r, v in enumerate(vals) if v and v not in _TRUE and v not in _FALSE]
        rep.add(BAD_VALUE, [RowIssue(raw.file, int(lines[sel[r]]), m.available, vals[r],
                                     f"cannot read {vals[r]!r} as true/false; item kept as available",
                                     raw.unit) for r in bad[:5]], count=len(bad), repaired=True)
    if strict:
        issue = rep.first_issue()
        if issue is not None:
            raise DataError(issue.message(), issue)
    cats = [[c.strip() for c in t.split(m.category_sep) if c.strip()] for t in text_col(m.categories)]
    table = ItemTable(
        title=text_col(m.title),
        categories=cats,
        text={c: text_col(c) for c in m.text},
        attributes={c: list(f[c].to_numpy(dtype=object)[keep]) for c in m.attributes},
        created_at=created,
        available=avail,
    )
    kept_ids = list(ids[keep])
    items = IdMap(kept_ids)
    rep.rows_out = len(kept_ids)
    return ItemCatalog(items, align_table(table, fast_indices(items, kept_ids)), rep)


def align_table(table: ItemTable, positions: np.ndarray) -> ItemTable:
    """Reorder table rows so row r moves to `positions[r]` (rows must cover 0..n-1)."""
    order = np.argsort(positions, kind="stable")

    def pick(col: Sequence[Any]) -> list[Any]:
        return [col[i] for i in order]

    return ItemTable(
        title=pick(table.title), categories=pick(table.categories),
        text={k: pick(v) for k, v in table.text.items()},
        attributes={k: pick(v) for k, v in table.attributes.items()},
        created_at=np.asarray(table.created_at)[order], available=np.asarray(table.available)[order],
    )


def load_events_file(
    path: str | Path,
    mapping: ColumnMapping | None = None,
    *,
    strict: bool = False,
    fmt: str | None = None,
    rules: CleaningRules | None = None,
    items: ItemCatalog | None = None,
    sep: str | None = None,
    encoding: str = "utf-8",
    names: Sequence[str] | None = None,
    name: str | None = None,
    keep_lines: bool = False,
) -> tuple[Dataset, CleaningReport]:
    """Read, clean and index an events file (CSV, TSV, JSONL or Parquet).

    With `items`, events on items missing from the catalog are dropped (rule
    `unknown_item`) and the data set uses the catalog's id map and item table. `names` gives
    column names for a CSV/TSV file without a header. Strict mode raises `DataError` on the
    first bad row; otherwise bad rows are dropped and counted in the returned report.
    `keep_lines` puts each kept event's file line in `dataset.info["lines"]` (event order).
    """
    path = Path(path)
    m = mapping or ColumnMapping()
    fields = m.fields()
    raw = read_table(path, list(dict.fromkeys(fields.values())), fmt=fmt, sep=sep, encoding=encoding,
                     names=names)
    frame = pd.DataFrame({canon: raw.frame[col] for canon, col in fields.items()})
    catalog = set(items.items.ids) if items is not None else None
    clean, _ = clean_events(
        frame, raw.lines, report=raw.report, fields=fields, rules=rules,
        timestamp_format=m.timestamp_format, default_kind=m.default_kind, kind_map=m.kind_map,
        catalog=catalog, catalog_name=f"the item catalog ({items.report.file})" if items else "",
        strict=strict, unit=raw.unit,
    )
    ds = events_to_dataset(name or path.stem.split(".")[0], clean, items=items,
                           has_timestamps=m.timestamp is not None)
    ds.info["source"] = str(path)
    ds.info["cleaning"] = raw.report.to_dict()
    if keep_lines:
        ds.info["lines"] = clean["line"].to_numpy()
    if items is not None:
        ds.info["item_cleaning"] = items.report.to_dict()
    return ds, raw.report


def events_to_dataset(name: str, events: pd.DataFrame, *, items: ItemCatalog | None = None,
                      has_timestamps: bool = True) -> Dataset:
    """A Dataset from cleaned events (columns user, item, timestamp, kind, value).

    Without timestamps, each user's events get their position (0, 1, ...) in file order.
    """
    users = IdMap(pd.unique(events["user"].to_numpy(dtype=object)))
    imap = items.items if items is not None else IdMap(pd.unique(events["item"].to_numpy(dtype=object)))
    ts = events["timestamp"].to_numpy(dtype=np.int64)
    if not has_timestamps:
        ts = events.groupby("user", sort=False).cumcount().to_numpy(dtype=np.int64)
    inter = Interactions(fast_indices(users, events["user"].to_numpy(dtype=object)),
                         fast_indices(imap, events["item"].to_numpy(dtype=object)), ts,
                         events["kind"].to_numpy(), events["value"].to_numpy())
    return Dataset(name, users, imap, inter, item_table=items.table if items is not None else None,
                   has_timestamps=has_timestamps)
