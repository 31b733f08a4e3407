"""A data set of one's own, described in a small TOML file (a *data-set spec*).

Every command that takes `--dataset NAME` also takes the path of such a file (or of an events
file, read with the default columns `user_id`, `item_id`, `timestamp`). Paths inside the spec
are relative to the spec's folder. Example (`shop.toml`):

    name = "shop"

    [events]
    path = "events.csv"
    user = "customer"
    item = "sku"
    timestamp = "time"             # omit, or "", for files without times: then `order`
    timestamp_format = "iso"       # unix | unix_ms | iso | a strftime pattern (default: detect)
    kind = "action"                # optional; default_kind = "purchase" when there is none
    kind_map = { buy = "purchase", basket = "cart" }
    order = "timestamp"            # "position": the rows of a user are in time order, no times

    [items]                        # optional: item text makes the LM models work
    path = "products.csv"
    id = "sku"
    title = "name"
    text = ["description"]
    categories = "category_path"
    category_sep = ">"

    [split]                        # how `lmrec eval` splits it
    method = "temporal-loo"        # | "given" (column) | "time-ratio" | "sessions" | "coldstart-random"
    # column = "fold"              # given: a column of the events file with train / valid / test
    # test_fraction = 0.1          # time-ratio: the last 10% of the timeline is test ...
    # valid_fraction = 0.1         # ... and the 10% before it validation
    # test = { path = "next_item.csv", history = "history", target = "target" }   # sessions
    # valid = { path = "next_item_valid.csv" }                                     # sessions, for --tune

    [cleaning]
    k_core = 5                     # keep users and items with at least 5 events
    rating_range = [1, 5]

A "sessions" split scores "history -> next item" rows (a file whose `history` column holds the
item ids of a session separated by spaces, and whose `target` column the item(s) that came
next) without stand-in users: models are fitted on every event of the events file and answer
each row from its history alone (`lmrec.eval.sessions`).

Errors name the spec file and the field (`shop.toml: events.user: ...`); bad rows of the data
files are dropped and reported (file, line, field) as for `lmrec data validate`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lmrec.data.cleaning import CleaningReport, CleaningRules, DataError, RowIssue
from lmrec.data.dataset import Dataset, Interactions
from lmrec.data.loaders.generic import ItemMapping

__all__ = ["DataSpec", "SessionRows", "load_spec", "load_spec_dataset", "is_spec_path", "spec_toml"]

EVENT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt")
SPLIT_METHODS = ("temporal-loo", "given", "time-ratio", "sessions", "coldstart", "coldstart-random")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileSection(_Strict):
    path: Path
    format: str | None = Field(None, description="csv | tsv | jsonl | parquet (default: from the extension)")
    sep: str | None = None
    encoding: str = "utf-8"


class EventsSection(FileSection):
    names: list[str] | None = Field(None, description="column names of a CSV/TSV file without a header row")
    user: str = "user_id"
    item: str = "item_id"
    timestamp: str | None = "timestamp"
    timestamp_format: str | None = None
    kind: str | None = None
    value: str | None = None
    default_kind: str = "view"
    kind_map: dict[str, str] = Field(default_factory=dict)
    order: Literal["timestamp", "position"] | None = Field(
        None, description="timestamp (default with a timestamp column) or position: file order is time order")

    @model_validator(mode="after")
    def _order(self) -> EventsSection:
        if self.timestamp == "":
            self.timestamp = None
        if self.order is None:
            self.order = "timestamp" if self.timestamp else "position"
        if self.order == "timestamp" and not self.timestamp:
            raise ValueError("order = 'timestamp' needs a timestamp column (set events.timestamp)")
        if self.order == "position":
            self.timestamp = None  # the rows' order is the time order; a time column is not read
        return self


class ItemsSection(FileSection, ItemMapping):
    """The item file and its columns (`ItemMapping`'s fields: id, title, text, categories, ...)."""


class SessionsFile(FileSection):
    history: str = "history"
    target: str = "target"
    item_sep: str | None = Field(None, description="separator of the item ids in a cell (default: whitespace)")


class SplitSection(_Strict):
    method: Literal["temporal-loo", "given", "time-ratio", "sessions", "coldstart", "coldstart-random"] = \
        "temporal-loo"
    column: str | None = None
    test_fraction: float = Field(0.1, gt=0, lt=1)
    valid_fraction: float = Field(0.1, gt=0, lt=1)
    test: SessionsFile | None = None
    valid: SessionsFile | None = None

    @model_validator(mode="after")
    def _needs(self) -> SplitSection:
        if self.method == "given" and not self.column:
            raise ValueError("method 'given' needs `column`: the events column holding train / valid / test")
        if self.method == "sessions" and self.test is None:
            raise ValueError("method 'sessions' needs `test = { path = ... }`: the history -> target rows")
        if self.method != "sessions" and (self.test is not None or self.valid is not None):
            raise ValueError("`test` / `valid` files belong to method 'sessions'")
        if self.test_fraction + self.valid_fraction >= 1:
            raise ValueError("test_fraction + valid_fraction must be below 1")
        return self


class CleaningSection(_Strict):
    k_core: int | None = Field(None, ge=1)
    rating_range: tuple[float, float] | None = (0.5, 5.0)
    drop_duplicates: bool = True


class DataSpec(_Strict):
    """A data set of one's own: events (+ items), how to split it, how to clean it."""

    name: str | None = None
    description: str = ""
    template: str | None = Field(None, description="item text template (a format string over item fields)")
    events: EventsSection
    items: ItemsSection | None = None
    split: SplitSection = Field(default_factory=SplitSection)
    cleaning: CleaningSection = Field(default_factory=CleaningSection)
    #: where the spec was read from (paths are relative to its folder); not part of the TOML
    source: Path | None = Field(None, exclude=True)

    def resolve(self, p: Path) -> Path:
        base = self.source.parent if self.source is not None else Path.cwd()
        return p if p.is_absolute() else base / p


def is_spec_path(name: str) -> bool:
    """Whether a `--dataset` value names a file or folder (a spec, an events file) rather than
    a registered data set."""
    p = Path(name)
    return p.suffix.lower() in (".toml", *EVENT_SUFFIXES) or p.exists() or "/" in name or "\\" in name


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(x) for x in loc) or "(top level)"


def load_spec(path: str | Path) -> DataSpec:
    """Read and validate a spec TOML; ValueError names the file and the bad field."""
    path = Path(path)
    if path.is_dir():
        path = path / "dataset.toml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such data-set spec")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid TOML: {e}") from None
    try:
        spec = DataSpec.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        raise ValueError(f"{path}: {_where(first['loc'])}: {first['msg']}") from None
    spec.source = path.resolve()
    return spec


class SessionRows:
    """"history -> next item" rows of a sessions file, as item indices of a data set."""

    def __init__(self, histories: list[np.ndarray], targets: list[np.ndarray], ids: list[str],
                 report: CleaningReport) -> None:
        self.histories, self.targets, self.ids, self.report = histories, targets, ids, report

    def __len__(self) -> int:
        return len(self.targets)


def read_sessions(spec: DataSpec, section: SessionsFile, dataset: Dataset, strict: bool) -> SessionRows:
    """Read a sessions file: item ids unknown to the data set are dropped from a history (and
    counted); a row whose targets are all unknown, or whose history is empty, is dropped."""
    from lmrec.data.loaders.tabular import read_table

    path = spec.resolve(section.path)
    raw = read_table(path, [section.history, section.target], fmt=section.format, sep=section.sep,
                     encoding=section.encoding)
    rep = raw.report
    index = {iid: i for i, iid in enumerate(dataset.items.ids)}
    hist_out, tgt_out, ids = [], [], []
    problems: dict[str, list[RowIssue]] = {"missing_id": [], "unknown_item": []}
    unknown_in_history = 0

    def cell(v: Any) -> list[str]:
        if v is None or (isinstance(v, float) and v != v):
            return []
        if isinstance(v, (list, tuple)):
            return [str(x).strip() for x in v if str(x).strip()]
        return [t for t in (str(v).split(section.item_sep) if section.item_sep else str(v).split()) if t.strip()]

    for r, (h, t) in enumerate(zip(raw.frame[section.history], raw.frame[section.target])):
        line = int(raw.lines[r])
        hs, ts = cell(h), cell(t)
        if not hs or not ts:
            field = section.history if not hs else section.target
            problems["missing_id"].append(RowIssue(raw.file, line, field, None, f"empty {field}", raw.unit))
            continue
        known_t = [index[x] for x in ts if x in index]
        if not known_t:
            problems["unknown_item"].append(RowIssue(
                raw.file, line, section.target, ts[0], f"target item {ts[0]!r} is not in the data set", raw.unit))
            continue
        known_h = [index[x] for x in hs if x in index]
        unknown_in_history += len(hs) - len(known_h)
        if not known_h:
            problems["unknown_item"].append(RowIssue(
                raw.file, line, section.history, hs[0], "no item of the history is in the data set", raw.unit))
            continue
        hist_out.append(np.asarray(known_h, np.int64))
        tgt_out.append(np.asarray(sorted(set(known_t)), np.int64))
        ids.append(str(line))
    for rule, issues in problems.items():
        rep.add(rule, issues[:5], count=len(issues))
    if unknown_in_history:
        rep.add("unknown_item", [], count=unknown_in_history, repaired=True)
    if strict:
        issue = rep.first_issue()
        if issue is not None:
            raise DataError(issue.message(), issue)
    rep.rows_out = len(tgt_out)
    return SessionRows(hist_out, tgt_out, ids, rep)


def _given_labels(spec: DataSpec, dataset: Dataset, lines: np.ndarray, strict: bool) -> dict[str, Interactions]:
    """train / valid / test parts from the events file's split column, row by row."""
    from lmrec.data.loaders.tabular import read_table

    ev = spec.events
    col = spec.split.column
    assert col is not None
    raw = read_table(spec.resolve(ev.path), [col], fmt=ev.format, sep=ev.sep, encoding=ev.encoding,
                     names=ev.names)
    by_line = dict(zip(raw.lines.tolist(), (str(v).strip().lower() for v in raw.frame[col])))
    aliases = {"train": "train", "training": "train", "valid": "valid", "validation": "valid", "val": "valid",
               "dev": "valid", "test": "test", "testing": "test"}
    labels = np.empty(len(lines), dtype=object)
    for j, ln in enumerate(lines.tolist()):
        v = by_line.get(ln, "")
        if v not in aliases:
            raise DataError(f"{raw.file} line {ln}: field '{col}': split label {v!r} is not one of "
                            "train, valid, test", RowIssue(raw.file, ln, col, v, "bad split label", raw.unit))
        labels[j] = aliases[v]
    parts = {name: dataset.interactions.select(np.flatnonzero(labels == name)) for name in ("train", "valid", "test")}
    if not len(parts["train"]) or not len(parts["test"]):
        raise DataError(f"{raw.file}: column '{col}' must label some rows train and some test "
                        f"(found {', '.join(f'{k} {len(v)}' for k, v in parts.items())})")
    if not len(parts["valid"]):
        del parts["valid"]
    dataset.info["given_labels"] = labels  # event order; `lmrec data clean` writes them back out
    return parts


def load_spec_dataset(spec: DataSpec, *, strict: bool = False) -> tuple[Dataset, CleaningReport]:
    """Load the data set a spec describes (events, items, split, cleaning) and the events'
    cleaning report; the data set's `info` records the spec and its default split."""
    from lmrec.data.loaders.generic import ColumnMapping, load_events_file, load_items_file

    ev = spec.events
    try:
        mapping = ColumnMapping(user=ev.user, item=ev.item, timestamp=ev.timestamp, kind=ev.kind, value=ev.value,
                                default_kind=ev.default_kind, timestamp_format=ev.timestamp_format,
                                kind_map=ev.kind_map)
    except ValidationError as e:
        first = e.errors()[0]
        where = _where(first["loc"])
        raise ValueError(f"{spec.source}: events{'.' + where if where != '(top level)' else ''}: {first['msg']}") \
            from None
    catalog = None
    if spec.items is not None:
        it = spec.items
        imap = ItemMapping(**it.model_dump(exclude={"path", "format", "sep", "encoding"}))
        catalog = load_items_file(spec.resolve(it.path), imap, strict=strict, fmt=it.format, sep=it.sep,
                                  encoding=it.encoding)
    c = spec.cleaning
    rules = CleaningRules(kcore=c.k_core, rating_range=c.rating_range, drop_duplicates=c.drop_duplicates)
    name = spec.name or (spec.source.stem if spec.source is not None else "dataset")
    ds, report = load_events_file(spec.resolve(ev.path), mapping, strict=strict, fmt=ev.format, rules=rules,
                                  items=catalog, sep=ev.sep, encoding=ev.encoding, names=ev.names, name=name,
                                  keep_lines=spec.split.method == "given")
    lines = ds.info.pop("lines", None)
    if spec.template:
        ds.template = spec.template
    ds.info.update({"spec": str(spec.source), "order": ev.order, "default_split": spec.split.method,
                    "split_params": {"test_fraction": spec.split.test_fraction,
                                     "valid_fraction": spec.split.valid_fraction}})
    if spec.description:
        ds.info["description"] = spec.description
    if spec.split.method == "given":
        ds.given_split = _given_labels(spec, ds, np.asarray(lines), strict)
    if spec.split.method == "sessions":
        assert spec.split.test is not None
        sessions = {"test": read_sessions(spec, spec.split.test, ds, strict)}
        if spec.split.valid is not None:
            sessions["valid"] = read_sessions(spec, spec.split.valid, ds, strict)
        ds.info["sessions"] = sessions
        ds.info["sessions_cleaning"] = {k: v.report.to_dict() for k, v in sessions.items()}
    return ds, report


def spec_toml(spec: DataSpec) -> str:
    """The spec as TOML text (what `lmrec data clean` writes beside its output)."""
    lines = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    data = spec.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    for k in ("name", "description", "template"):
        if data.get(k) not in (None, ""):
            lines.append(f"{k} = {value(data[k])}")
    for section in ("events", "items", "split", "cleaning"):
        if section not in data:
            continue
        lines.append(f"\n[{section}]")
        for k, v in data[section].items():
            lines.append(f"{k} = {value(v)}")
    return "\n".join(lines) + "\n"
