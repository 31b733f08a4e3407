"""Versions of the served pipeline: fitted on the store's events and catalog, saved as
folders, listed and loaded.

A version is a folder `<home>/models/<version>/` holding the fitted `RecPipeline`
(`pipeline/`, the `RecPipeline.save` format: config.json + arrays, no pickle) and `meta.json`
(version, pipeline config, overrides, `last_seq`: the last event the fit saw, event / item /
user counts, fit seconds, the pipeline's fit info). Versions are named
`<UTC time>-<config name>` so they sort by age; a folder appears only complete (written
under a hidden temporary name, then renamed).

`store_dataset` turns the store into the `Dataset` a pipeline fits on: items in the id order
every loader uses (numeric when all ids are integers), text from the service's item template,
events of the learning kinds in commit order, user attributes. For the same events and items
it is the data set `lmrec eval` builds from files, so the service and offline evaluation fit
the same models.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmrec.data.dataset import Dataset, IdMap, Interactions, ItemTable
from lmrec.stores.records import ItemRecord, RecordStore
from lmrec.types import EventKind

__all__ = ["Version", "store_dataset", "item_row", "train_version", "list_versions", "load_version",
           "new_version_name", "mark_active", "active_version"]

PIPELINE = "pipeline"
META = "meta.json"
ACTIVE = "active.json"  # the version a service last swapped in (what a restart serves by default)


@dataclass
class Version:
    """A fitted pipeline and what is known about it."""

    name: str
    pipeline: Any  # lmrec.pipeline.RecPipeline
    meta: dict[str, Any]

    @property
    def last_seq(self) -> int:
        return int(self.meta.get("last_seq", 0))


def item_row(rec: ItemRecord) -> dict[str, Any]:
    """An item record as the fields of a pipeline's item table (`upsert_item_rows`)."""
    return {"title": rec.title, "categories": list(rec.categories), "text": {"description": rec.text},
            "attributes": dict(rec.attributes), "created_at": int(rec.created_at) if rec.created_at else -1,
            "available": bool(rec.available)}


KG_TRIPLES = Path("kg") / "triples.tsv"  # a home's imported knowledge-graph triples (`lmrec kg import`)


def read_home_triples(home: Path) -> Any:
    """The triples `lmrec kg import` kept in `home` (a DataFrame), or None."""
    path = Path(home) / KG_TRIPLES
    if not path.is_file():
        return None
    import pandas as pd

    return pd.read_csv(path, sep="\t", dtype={"head": str, "relation": str, "tail": str}, keep_default_na=False)


def store_dataset(store: RecordStore, *, kinds: Sequence[str], template: str, has_timestamps: bool = True,
                  name: str = "service", home: Path | None = None) -> tuple[Dataset, int]:
    """The store as a `Dataset` (see the module docstring) and the last event seq it holds.

    Items that events name but the catalog does not hold (deleted, or never upserted) are
    kept as unavailable items without text, so every event has its item. With `home`, the
    knowledge-graph triples imported there (`lmrec kg import`) come with the data set."""
    last_seq = store.last_seq()
    keep = set(kinds)
    users, items, ts, kind, value = [], [], [], [], []
    for e in store.events(after_seq=0):
        if e.seq is not None and e.seq > last_seq:
            break
        if e.kind not in keep:
            continue
        users.append(e.user_id)
        items.append(e.item_id)
        ts.append(e.timestamp)
        kind.append(int(EventKind.parse(e.kind)))
        value.append(e.value)
    records = {r.item_id: r for r in store.items()}
    imap = IdMap([*records, *items])
    umap = IdMap(users)
    table = ItemTable.blank(len(imap))
    table.available = np.zeros(len(imap), bool)
    ds = Dataset(name, umap, imap, Interactions.empty(), item_table=table, has_timestamps=has_timestamps,
                 template=template)
    from lmrec.data.dataset import upsert_item_rows

    if records:
        upsert_item_rows(ds, list(records), [item_row(r) for r in records.values()])
    inter = Interactions(umap.indices(users), imap.indices(items),
                         np.floor(np.asarray(ts, np.float64)).astype(np.int64) if ts else np.zeros(0, np.int64),
                         np.asarray(kind, np.int8), np.asarray(value, np.float32))
    attrs: dict[str, list[Any]] = {}
    for u, user_id in enumerate(umap.ids):
        rec = store.get_user(user_id)
        for key, v in (rec.attributes if rec is not None else {}).items():
            attrs.setdefault(key, [None] * len(umap))[u] = v
    ds.interactions, ds.user_attributes = inter, attrs
    if home is not None and (triples := read_home_triples(home)) is not None:
        from lmrec.kg.triples import attach_triples

        attach_triples(ds, triples)
    return ds, last_seq


def new_version_name(models_dir: Path, label: str) -> str:
    """`<UTC time>-<label>`, unique in `models_dir` and sortable by age."""
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")[:40] or "pipeline"
    while True:
        version = f"{_dt.datetime.now(_dt.UTC).strftime('%Y%m%dT%H%M%S%f')}-{label}"
        if not (models_dir / version).exists():
            return version
        time.sleep(1e-6)


def train_version(models_dir: Path, dataset: Dataset, *, config: str, overrides: dict[str, Any] | None = None,
                  last_seq: int = 0, progress: Callable[[str], None] | None = None,
                  meta: dict[str, Any] | None = None) -> Version:
    """Fit the pipeline `config` (+ `overrides`) on `dataset` and save it as a new version."""
    from lmrec.pipeline import RecPipeline

    pipe = RecPipeline(config=config, overrides=dict(overrides or {}))
    pipe.progress = progress
    t0 = time.perf_counter()
    pipe.fit(dataset.interactions, dataset)
    fit_s = time.perf_counter() - t0
    models_dir.mkdir(parents=True, exist_ok=True)
    version = new_version_name(models_dir, Path(config).stem)
    tmp = models_dir / f".{version}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    if progress is not None:
        progress(f"saving version {version}")
    pipe.save(tmp / PIPELINE)
    info = {"version": version, "config": config, "overrides": dict(overrides or {}), "last_seq": int(last_seq),
            "n_events": len(dataset.interactions), "n_items": dataset.n_items, "n_users": dataset.n_users,
            "fit_s": round(fit_s, 3), "created_at": time.time(), "fit_info": pipe.fit_info, **(meta or {})}
    (tmp / META).write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, models_dir / version)
    return Version(version, pipe, info)


def mark_active(models_dir: Path, version: str) -> None:
    """Record `version` as the one being served (written atomically)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = models_dir / f".{ACTIVE}.tmp"
    tmp.write_text(json.dumps({"version": version, "at": time.time()}) + "\n", encoding="utf-8")
    os.replace(tmp, models_dir / ACTIVE)


def active_version(models_dir: Path) -> str | None:
    """The version last marked active, when it still exists."""
    try:
        version = json.loads((models_dir / ACTIVE).read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return version if version in list_versions(models_dir) else None


def list_versions(models_dir: Path) -> list[str]:
    """Saved versions, oldest first."""
    if not models_dir.is_dir():
        return []
    return sorted(p.name for p in models_dir.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / META).is_file())


def load_version(models_dir: Path, version: str | None = None) -> Version:
    """Load a saved version (the latest when None); FileNotFoundError naming what is missing."""
    from lmrec.pipeline import RecPipeline

    versions = list_versions(models_dir)
    if version is None:
        if not versions:
            raise FileNotFoundError(f"no saved pipeline versions in {models_dir}")
        version = versions[-1]
    if version not in versions:
        raise FileNotFoundError(f"model version {version!r} not found in {models_dir} "
                                f"(available: {', '.join(versions) or 'none'})")
    folder = models_dir / version
    meta = json.loads((folder / META).read_text(encoding="utf-8"))
    return Version(version, RecPipeline.load(folder / PIPELINE), meta)
