"""Reading knowledge-graph triple files, with a cleaning report as for events.

A triple file is CSV / TSV (by extension; `.txt` is tab-separated) with the columns `head`,
`relation`, `tail` (a header row is optional: a file whose first row is not `head, relation,
tail` is read as three unnamed columns), and optionally `head_type` / `tail_type` ("item" or
"entity"). Without type columns, `heads` says what heads are: "items" (every head is a
catalog item id; the usual item -> attribute file) or "auto" (a head is an item when it is a
known item id, else an entity). A node written `item:<id>` is always an item. Tails are
entities unless typed or written `item:<id>`.

Rows are never a crash: each rule drops the row and is counted in the report with examples
(file, line, field, reason): malformed_row (not three fields), missing_field (empty head,
relation or tail), bad_relation (a relation name with nothing printable), unknown_item (an
item id not in the catalog), self_loop (head == tail), duplicate (an earlier identical
triple). Relation names are normalised (control characters removed, spaces and odd characters
become "_"), counted as repaired.

Example:
    >>> import io, numpy as np
    >>> from lmrec.data.dataset import Dataset, IdMap, Interactions
    >>> ds = Dataset("d", IdMap("u"), IdMap(["m1", "m2"]), Interactions.empty())
    >>> t, rep = read_triples(io.StringIO("m1\\tdirector\\tp7\\nm2\\tdirector\\tp7\\nm9\\tdirector\\tp7\\n"),
    ...                       ds, name="kg.tsv", sep="\\t")
    >>> len(t), rep.counts
    (2, {'unknown_item': 1})
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from lmrec.data.cleaning import CleaningReport, DataError, RowIssue
from lmrec.data.dataset import Dataset

__all__ = ["read_triples", "TRIPLE_COLUMNS", "empty_triples", "attach_triples"]

TRIPLE_COLUMNS = ["head", "relation", "tail", "head_item", "tail_item"]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ODD = re.compile(r"[^\w.:/\-]+", re.UNICODE)


def empty_triples() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=bool if c.endswith("_item") else object) for c in TRIPLE_COLUMNS})


def _sep_for(name: str) -> str:
    return "," if name.lower().endswith(".csv") else "\t"


def read_triples(source: str | Path | io.TextIOBase, dataset: Dataset, *, name: str | None = None,
                 sep: str | None = None, heads: Literal["items", "auto"] = "items",
                 strict: bool = False) -> tuple[pd.DataFrame, CleaningReport]:
    """Triples of `source` checked against `dataset`'s catalog: (frame with TRIPLE_COLUMNS,
    report). With `strict` the first bad row raises DataError naming file, line and field."""
    label = name or (str(source) if isinstance(source, (str, Path)) else "triples")
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"triple file not found: {path}")
        raw = path.read_bytes().decode("utf-8", errors="replace")
    else:
        raw = source.read()
    sep = sep or _sep_for(label)
    report = CleaningReport(file=label)
    lines = raw.splitlines()
    first = [c.strip().lower() for c in lines[0].split(sep)] if lines else []
    header = first[:3] == ["head", "relation", "tail"]
    cols = first if header else ["head", "relation", "tail"]
    start = 2 if header else 1
    recs: list[tuple[int, list[str]]] = []
    for n, ln in enumerate(lines[1:] if header else lines, start=start):
        if not ln.strip():
            continue
        parts = ln.split(sep)
        if len(parts) != len(cols):
            report.add("malformed_row", [RowIssue(label, n, None, ln[:80],
                                                  f"expected {len(cols)} fields ({', '.join(cols)}), got {len(parts)}")])
            continue
        recs.append((n, [p.strip() for p in parts]))
    report.rows_in = len(recs) + report.counts.get("malformed_row", 0)
    at = {c: k for k, c in enumerate(cols)}
    seen: set[tuple[str, str, str, bool, bool]] = set()
    out: list[tuple[str, str, str, bool, bool]] = []
    for n, row in recs:
        h, r, t = row[at["head"]], row[at["relation"]], row[at["tail"]]
        missing = next((f for f, v in (("head", h), ("relation", r), ("tail", t)) if not v), None)
        if missing:
            report.add("missing_field", [RowIssue(label, n, missing, "", f"empty {missing}")])
            continue
        rel = _ODD.sub("_", _CONTROL.sub("", r)).strip("_")
        if not rel:
            report.add("bad_relation", [RowIssue(label, n, "relation", r[:40], "relation name has no printable characters")])
            continue
        if rel != r:
            report.add("relation_renamed", [RowIssue(label, n, "relation", r[:40], f"relation name normalised to {rel!r}")],
                       repaired=True)
        hi, h = _node(h, row[at["head_type"]] if "head_type" in at else None, dataset, heads == "items" or None)
        ti, t = _node(t, row[at["tail_type"]] if "tail_type" in at else None, dataset, False)
        bad = next((f for f, is_item, v in (("head", hi, h), ("tail", ti, t)) if is_item and v not in dataset.items),
                   None)
        if bad:
            report.add("unknown_item", [RowIssue(label, n, bad, (h if bad == "head" else t)[:40],
                                                 "item is not in the item catalog")])
            continue
        if h == t:  # the same id on both ends, whatever their types
            report.add("self_loop", [RowIssue(label, n, "tail", t[:40], "head and tail are the same node")])
            continue
        key = (h, rel, t, hi, ti)
        if key in seen:
            report.add("duplicate", [RowIssue(label, n, None, None, "exact duplicate of an earlier triple")])
            continue
        seen.add(key)
        out.append(key)
    report.rows_out = len(out)
    if strict and (issue := report.first_issue()) is not None:
        raise DataError(issue.message(), issue)
    frame = pd.DataFrame(out, columns=TRIPLE_COLUMNS) if out else empty_triples()
    return frame, report


def _node(value: str, kind: str | None, dataset: Dataset, head_default: bool | None) -> tuple[bool, str]:
    """(is it an item, its id)."""
    if value.startswith("item:"):
        return True, value[5:]
    if kind:
        k = kind.strip().lower()
        if k not in ("item", "entity"):
            return False, value
        return k == "item", value
    if head_default is None:  # auto: a known item id is an item
        return value in dataset.items, value
    return head_default, value


def attach_triples(dataset: Dataset, frame: pd.DataFrame) -> Dataset:
    """`dataset` with `frame`'s triples added to its own (duplicates dropped)."""
    old = dataset.triples if dataset.triples is not None else empty_triples()
    both = pd.concat([old, frame[TRIPLE_COLUMNS]], ignore_index=True).drop_duplicates(ignore_index=True)
    dataset.triples = both
    return dataset


def triples_from_arrays(head: np.ndarray, relation: np.ndarray, tail: np.ndarray, head_item: np.ndarray,
                        tail_item: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"head": np.asarray(head, str).astype(object), "relation": np.asarray(relation, str).astype(object),
                         "tail": np.asarray(tail, str).astype(object), "head_item": np.asarray(head_item, bool),
                         "tail_item": np.asarray(tail_item, bool)})
