"""Keeping a served pipeline in step with the store: events and item records mapped to the
pipeline's indices and folded in (`fold_events`), and its catalog brought up to the live one
(`sync_items`), for a version that was fitted on an older snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lmrec.serving.catalog import Catalog
from lmrec.serving.versions import Version, item_row
from lmrec.stores.records import EventRecord
from lmrec.types import Event, EventKind

__all__ = ["fold_events", "sync_items"]


def fold_events(version: Version, records: Sequence[EventRecord], kinds: Sequence[str], catalog: Catalog) -> None:
    """Map event records to the pipeline's indices and `update` it. An item the pipeline does
    not know yet joins its catalog (from the live catalog when it is there, else as an
    unavailable item without text) so the event is kept; new users get the next index."""
    pipe = version.pipeline
    ds = pipe.dataset
    keep = set(kinds)
    records = [r for r in records if r.kind in keep]
    if not records:
        return
    unknown = list(dict.fromkeys(r.item_id for r in records if r.item_id not in ds.items))
    if unknown:
        rows = [item_row(rec) if (rec := catalog.get(i)) is not None else {"available": False} for i in unknown]
        pipe.upsert_items(unknown, rows)
    events = [Event(ds.users.add(r.user_id), ds.items.index(r.item_id), int(np.floor(r.timestamp)),
                    EventKind.parse(r.kind), float(r.value)) for r in records]
    pipe.update(events)


def sync_items(pipe: Any, catalog: Catalog) -> None:
    """Make the pipeline's catalog match the live one: items added or changed since its fit
    are upserted, items deleted since are made unavailable."""
    ds = pipe.dataset
    table = ds.item_table
    changed, rows = [], []
    for rec in catalog.records():
        row = item_row(rec)
        i = ds.items.get(rec.item_id)
        if i < 0 or table is None or _row_differs(table, i, row):
            changed.append(rec.item_id)
            rows.append(row)
    if table is not None:
        live = {r.item_id for r in catalog.records()}
        for i, item_id in enumerate(ds.items.ids):
            if item_id not in live and bool(table.available[i]):
                changed.append(item_id)
                rows.append({"available": False})
    if changed:
        pipe.upsert_items(changed, rows)


def _row_differs(table: Any, i: int, row: dict[str, Any]) -> bool:
    if i >= len(table.title):
        return True
    return (table.title[i] != row["title"] or list(table.categories[i]) != row["categories"]
            or table.text.get("description", [""] * len(table.title))[i] != row["text"]["description"]
            or bool(table.available[i]) != row["available"]
            or any(table.attributes.get(k, [None] * len(table.title))[i] != v for k, v in row["attributes"].items()))
