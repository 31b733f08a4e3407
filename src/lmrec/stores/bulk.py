"""Bulk import of a loaded data set (a registered one, or one's own from a data-set spec) into
a service's record store: its items with their text, categories and attributes, then its
events in time order, in batches. What `lmrec data load` and the MovieLens demo use."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from lmrec.data.dataset import Dataset
from lmrec.stores.records import EventRecord, ItemRecord
from lmrec.types import EventKind

__all__ = ["import_dataset"]


def _plain(v: Any) -> Any:
    """A JSON-friendly attribute value (numpy scalars to Python; NaN / None dropped)."""
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or (isinstance(v, float) and v != v):
        return None
    return v


def import_dataset(store: Any, ds: Dataset, *, batch: int = 10_000, items_only: bool = False,
                   on_progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Write `ds`'s items and events into `store`; returns {"items": n, "events": n}.

    Item text: title, the other text fields joined (as `text`), categories, attributes.
    Events keep their kind and value; a data set ordered by position only (no times) gets
    times one second apart per user ending now, so each user's order is kept and nothing is
    dated before the epoch. `on_progress(done, total)` is called after each event batch."""
    t = ds.item_table
    records = []
    for i, item_id in enumerate(ds.items.ids):
        if t is None:
            records.append(ItemRecord(item_id))
            continue
        attrs = {k: _plain(v[i]) for k, v in t.attributes.items()}
        created = int(np.asarray(t.created_at)[i]) if len(t.created_at) else -1
        records.append(ItemRecord(
            item_id, title=t.title[i] or "", text=". ".join(str(v[i]) for v in t.text.values() if v[i]),
            categories=tuple(t.categories[i]), attributes={k: v for k, v in attrs.items() if v is not None},
            available=bool(np.asarray(t.available)[i]), created_at=float(max(created, 0))))
    for s in range(0, len(records), batch):
        store.upsert_items(records[s:s + batch])
    if items_only:
        return {"items": len(records), "events": 0}
    x = ds.interactions
    ts = x.timestamp.astype(np.float64)
    if not ds.has_timestamps:  # positions: keep each user's order, end at the import time
        ts = time.time() - (x.timestamp.max() if len(x) else 0) + ts
    order = np.argsort(ts, kind="stable")
    users, item_ids = ds.users.ids, ds.items.ids
    kinds = {int(k): EventKind(int(k)).name.lower() for k in np.unique(x.kind)} if len(x) else {}
    done = 0
    for s in range(0, len(order), batch):
        rows = order[s:s + batch]
        store.append_events([EventRecord(users[x.user[j]], item_ids[x.item[j]], kinds[int(x.kind[j])],
                                         float(x.value[j]), float(ts[j])) for j in rows])
        done += len(rows)
        if on_progress is not None:
            on_progress(done, len(order))
    return {"items": len(records), "events": int(len(order))}
