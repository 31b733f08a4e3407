"""The live catalog: item records, their texts and vectors, the vector index and the keyword index.

Items keep the string ids of the platform; inside the engine each gets a dense integer slot
(the id the vector index and BM25 speak) that is never reused, so a deleted item's slot can
never be confused with a newer item's. Slots of deleted items are holes. An item with
`available=False` stays in the catalog (get_item, similar-to, explanations) but leaves the
vector and keyword indexes, so it is never retrieved.

Persistence (`save` / `load`): `<home>/index/` holds the vector index, the catalog's vector
matrix and a manifest with a fingerprint of the catalog (ids, texts, availability, encoder,
index parameters). `Engine.open` reloads it when the fingerprint matches the store's catalog,
and rebuilds (re-encoding only cache misses) otherwise.

Journal (`start_journal`): every change the index takes after the last save (or load) is
appended to `<home>/index.journal`: the item ids given new slots, the vectors added as one call
and the slots removed, in order. After a crash (no save at close) `replay_journal` applies them
to the saved index, which rebuilds the graph the process served, tombstones, insertion order and
HNSW levels included (a full rebuild gives an equally good but different HNSW graph, so some
rankings would change across the crash). The engine checks the result against the store's
catalog and rebuilds when they disagree (e.g. a write committed but killed before its journal
record).

Not thread-safe on its own: reads under the engine's read lock, `apply_*` under its write lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import string
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmrec.data.dataset import ItemTable
from lmrec.serving.keyword import LiveBM25
from lmrec.stores import build_index, load_index
from lmrec.stores.base import BaseVectorIndex
from lmrec.stores.records import ItemRecord
from lmrec.text.templates import TEMPLATES, render
from lmrec.types import config_hash

__all__ = ["Catalog", "PreparedItems", "item_texts", "DEFAULT_TEMPLATE"]

#: title, categories, brand and description: attributes such as price stay out of the text
DEFAULT_TEMPLATE = TEMPLATES["generic"]
_BUILT_IN_FIELDS = {"title", "categories", "category_path", "description"}
_FORMAT_VERSION = 1


def item_texts(records: Sequence[ItemRecord], template: str = DEFAULT_TEMPLATE) -> list[str]:
    """The embedding text of each record through a `lmrec.text.templates` format string.

    `{description}` is the record's `text`; any other field is read from `attributes`
    (missing -> empty, and a sentence whose fields are all empty is dropped).

    >>> item_texts([ItemRecord("1", title="Trail shoe", categories=("shoes",), text="Grippy sole.",
    ...                        attributes={"brand": "Fox"})])
    ['Trail shoe. shoes. Brand: Fox. Grippy sole.']
    """
    if not records:
        return []
    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f]
    extra = [f for f in dict.fromkeys(fields) if f not in _BUILT_IN_FIELDS]
    table = ItemTable(title=[r.title for r in records], categories=[list(r.categories) for r in records],
                      text={"description": [r.text for r in records]},
                      attributes={f: [_attr_text(r.attributes.get(f)) for r in records] for f in extra})
    return [render(template, table, i) for i in range(len(records))]


def _attr_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value if v)
    return str(value)


@dataclass
class PreparedItems:
    """Items ready to enter the catalog: texts rendered and vectors encoded (outside any lock)."""

    records: list[ItemRecord]
    texts: list[str]
    vectors: np.ndarray  # (n, dim) normalised float32


def fingerprint(records: Sequence[ItemRecord], texts: Sequence[str], extra: dict[str, Any]) -> str:
    """Hash of what the saved index depends on: each item's id, text and availability, plus
    `extra` (encoder name, index kind and parameters, template)."""
    h = hashlib.sha256(json.dumps(extra, sort_keys=True).encode())
    for rec, text in sorted(zip(records, texts), key=lambda p: p[0].item_id):
        h.update(f"{rec.item_id}\x1f{int(rec.available)}\x1f{text}\x1e".encode())
    return h.hexdigest()


class Catalog:
    """Records, texts and vectors by slot, plus the vector index and keyword index of the
    available items."""

    def __init__(self, dim: int, *, index_kind: str, index_params: dict[str, Any],
                 write_lock: Callable[[], AbstractContextManager[Any]],
                 bm25_rebuild_fraction: float = 0.05, bm25_rebuild_min: int = 256,
                 bm25_background: bool = True) -> None:
        self.dim = int(dim)
        self.index_kind, self.index_params = index_kind, dict(index_params)
        self._slot: dict[str, int] = {}
        self._ids: list[str | None] = []
        self._records: list[ItemRecord | None] = []
        self._texts: list[str] = []
        self._vectors = np.zeros((0, self.dim), dtype=np.float32)
        self._live = np.zeros(0, dtype=bool)
        self.dirty = False  # changed since the last save / load
        self.index: BaseVectorIndex = build_index(index_kind, self.dim, **self.index_params)
        self.keyword = LiveBM25(write_lock, rebuild_fraction=bm25_rebuild_fraction, rebuild_min=bm25_rebuild_min,
                                background=bm25_background)
        self.journal: IndexJournal | None = None
        self.saved_as: str | None = None   # config hash of the saved folder the index equals (None: empty)

    # --- reads --------------------------------------------------------------------------
    def __len__(self) -> int:
        """Items in the catalog (available or not, deleted ones excluded)."""
        return len(self._slot)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._slot

    def slot(self, item_id: str) -> int | None:
        return self._slot.get(item_id)

    def item_id(self, slot: int) -> str:
        item_id = self._ids[slot]
        if item_id is None:
            raise KeyError(f"slot {slot} belongs to a deleted item")
        return item_id

    def ids_of(self, slots: Iterable[int]) -> list[str]:
        """Item ids of the slots that still hold an item (deleted slots are skipped)."""
        return [i for i in (self._ids[s] for s in slots if 0 <= s < len(self._ids)) if i is not None]

    def record(self, slot: int) -> ItemRecord:
        rec = self._records[slot]
        if rec is None:
            raise KeyError(f"slot {slot} belongs to a deleted item")
        return rec

    def get(self, item_id: str) -> ItemRecord | None:
        s = self._slot.get(item_id)
        return None if s is None else self._records[s]

    def text(self, slot: int) -> str:
        return self._texts[slot]

    def vector(self, slot: int) -> np.ndarray:
        return self._vectors[slot]

    def vectors(self, slots: Sequence[int] | np.ndarray) -> np.ndarray:
        return self._vectors[np.asarray(slots, dtype=np.int64)]

    @property
    def live(self) -> np.ndarray:
        """Boolean mask by slot: in the catalog and available (what may be served)."""
        return self._live[:len(self._ids)]

    @property
    def n_live(self) -> int:
        return int(np.count_nonzero(self.live))

    @property
    def n_slots(self) -> int:
        return len(self._ids)

    def is_live(self, slot: int) -> bool:
        return 0 <= slot < len(self._ids) and bool(self._live[slot])

    # --- writes (under the engine's write lock) ----------------------------------------------
    def _grow(self, n_slots: int) -> None:
        if n_slots <= len(self._vectors):
            return
        cap = max(n_slots, 2 * len(self._vectors), 64)
        vecs = np.zeros((cap, self.dim), dtype=np.float32)
        vecs[:len(self._vectors)] = self._vectors
        live = np.zeros(cap, dtype=bool)
        live[:len(self._live)] = self._live
        self._vectors, self._live = vecs, live

    def _assign(self, item_id: str) -> int:
        s = self._slot.get(item_id)
        if s is None:
            s = len(self._ids)
            self._grow(s + 1)
            self._ids.append(item_id)
            self._records.append(None)
            self._texts.append("")
            self._slot[item_id] = s
        return s

    def apply_upsert(self, prepared: PreparedItems) -> list[int]:
        """Put prepared items into the catalog and both indexes; returns their slots. An item
        whose text and availability did not change keeps its index entries (re-syncing a
        catalog must not fill the HNSW graph with tombstones)."""
        self.dirty = True
        slots, live, gone, new = [], [], [], []
        for rec, text, vec in zip(prepared.records, prepared.texts, prepared.vectors):
            if rec.item_id not in self._slot:
                new.append(rec.item_id)
            s = self._assign(rec.item_id)
            unchanged = self._records[s] is not None and self._texts[s] == text and bool(self._live[s]) == rec.available
            self._records[s], self._texts[s], self._vectors[s] = rec, text, vec
            self._live[s] = rec.available
            slots.append(s)
            if not unchanged:
                (live if rec.available else gone).append(s)
        if live:
            self.index.add(live, self._vectors[live])
            for s in live:
                self.keyword.add(s, self._texts[s])
        for s in gone:
            self.index.remove([s])
            self.keyword.remove(s)
        if self.journal is not None:
            self.journal.append({"op": "upsert", "new": new, "add": live, "remove": gone},
                                self._vectors[live] if live else None)
        return slots

    def apply_delete(self, item_id: str) -> int | None:
        """Remove an item everywhere; returns its (retired) slot, None when unknown."""
        s = self._slot.pop(item_id, None)
        if s is None:
            return None
        self.dirty = True
        self._ids[s], self._records[s], self._texts[s] = None, None, ""
        self._live[s] = False
        self.index.remove([s])
        self.keyword.remove(s)
        if self.journal is not None:
            self.journal.append({"op": "delete", "slot": s})
        return s

    # --- building and persistence ------------------------------------------------------------
    def build(self, prepared: PreparedItems, *, build_threads: int | None = None,
              slots: Sequence[str | None] | None = None, index: BaseVectorIndex | None = None) -> None:
        """Fill an empty catalog. `slots` (item id per slot, None for holes) and a loaded `index`
        come from a saved catalog; otherwise slots follow `prepared` and the index is built."""
        if slots is not None:
            self._ids = list(slots)
            self._slot = {i: s for s, i in enumerate(self._ids) if i is not None}
        else:
            self._ids = [r.item_id for r in prepared.records]
            self._slot = {i: s for s, i in enumerate(self._ids)}
            if len(self._slot) != len(self._ids):
                raise ValueError("catalog records contain duplicate item ids")
        self._grow(len(self._ids))
        self._records = [None] * len(self._ids)
        self._texts = [""] * len(self._ids)
        order = np.asarray([self._slot[r.item_id] for r in prepared.records], dtype=np.int64)
        for s, rec, text in zip(order.tolist(), prepared.records, prepared.texts):
            self._records[s], self._texts[s] = rec, text
            self._live[s] = rec.available
        if len(order):
            self._vectors[order] = prepared.vectors
        live = np.flatnonzero(self.live)
        if index is not None:
            self.index = index
        else:
            self.index = build_index(self.index_kind, self.dim, **{**self.index_params, "threads": build_threads})
            if len(live):
                self.index.add(live, self._vectors[live])
        self.index.threads = self.index_params.get("threads", 1)
        self.keyword.fit(live, [self._texts[s] for s in live.tolist()])
        self.dirty = index is None  # a fresh build is not on disk yet

    def records(self) -> list[ItemRecord]:
        return [r for r in self._records if r is not None]

    def save(self, folder: Path, extra: dict[str, Any]) -> Path:
        """Write the index, vectors and manifest to `folder`, replacing it atomically (a crash
        leaves either the old or the new folder, never a mix)."""
        folder = Path(folder)
        tmp = folder.with_name(folder.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        records = [r for r in self._records if r is not None]
        texts = [t for r, t in zip(self._records, self._texts) if r is not None]
        self.index.save(tmp / "vectors")
        np.save(tmp / "catalog_vectors.npy", self._vectors[:len(self._ids)])
        (tmp / "slots.json").write_text(json.dumps(self._ids), encoding="utf-8")
        manifest = {"format": _FORMAT_VERSION, "fingerprint": fingerprint(records, texts, extra), "extra": extra,
                    "n_slots": len(self._ids), "n_items": len(records)}
        manifest["config_hash"] = config_hash(manifest)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        self.saved_as = manifest["config_hash"]
        old = folder.with_name(folder.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old.exists():
            shutil.rmtree(old)
        self.dirty = False
        if self.journal is not None:   # the saved folder holds everything journaled so far
            self.journal.restart(self.saved_as)
        return folder

    def start_journal(self, path: Path) -> None:
        """Journal every later index change to `path` (from the current state: the saved
        folder it was loaded from or saved to, or an empty catalog)."""
        if self.journal is not None:
            self.journal.close()
        self.journal = IndexJournal(Path(path), self.dim)
        self.journal.restart(self.saved_as)


@dataclass
class SavedCatalog:
    """What `load_saved` read: slots, the catalog vector matrix and the vector index."""

    slots: list[str | None]
    vectors: np.ndarray
    index: BaseVectorIndex
    saved_as: str | None = None   # the manifest's config hash


def load_saved(folder: Path, records: Sequence[ItemRecord], texts: Sequence[str],
               extra: dict[str, Any]) -> SavedCatalog | None:
    """The saved catalog in `folder` when it matches `records` / `texts` / `extra` exactly,
    else None (missing, corrupt or stale: the caller rebuilds)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        stored = manifest.pop("config_hash", None)
        if stored != config_hash(manifest) or manifest.get("format") != _FORMAT_VERSION:
            return None
        if manifest["fingerprint"] != fingerprint(records, texts, extra):
            return None
        slots = json.loads((folder / "slots.json").read_text(encoding="utf-8"))
        vectors = np.load(folder / "catalog_vectors.npy")
        if vectors.shape != (len(slots), extra["dim"]):
            return None
        index = load_index(folder / "vectors")
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
    return SavedCatalog(slots, vectors, index, stored)


class IndexJournal:
    """Append-only file of index changes: a header line naming the base (the saved folder's
    config hash, or null for an empty catalog), then one JSON line per change, followed by the
    raw float32 vectors it added. Written before the engine answers; flushed to the OS (a
    killed process loses nothing; a machine crash can lose the tail, which the check at open
    then detects)."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path, self.dim = path, int(dim)
        self._f: Any = None
        self.bytes = 0   # written since the last restart

    def restart(self, base: str | None) -> None:
        self.close()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._f = os.fdopen(fd, "wb")
        self.bytes = 0
        self._write({"journal": 1, "base": base, "dim": self.dim}, None)

    def append(self, record: dict[str, Any], vectors: np.ndarray | None = None) -> None:
        if self._f is not None:
            self._write(record, vectors)

    def _write(self, record: dict[str, Any], vectors: np.ndarray | None) -> None:
        blob = json.dumps(record, separators=(",", ":")).encode() + b"\n"
        if vectors is not None:
            blob += np.ascontiguousarray(vectors, dtype="<f4").tobytes()
        self._f.write(blob)   # one write: a record is whole or (killed mid-way) a short tail
        self._f.flush()
        self.bytes += len(blob)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def replay_journal(path: Path, folder: Path, extra: dict[str, Any],
                   new_index: Callable[[], BaseVectorIndex]) -> tuple[list[str | None], BaseVectorIndex] | None:
    """(slots, index) of the saved catalog in `folder` (or an empty one from `new_index`)
    with the journal at `path` applied: the index as the process that wrote the journal
    served it. None when there is no journal or it does not belong to `folder`."""
    try:
        with open(path, "rb") as f:
            head = json.loads(f.readline())
            if head.get("journal") != 1 or head.get("dim") != extra["dim"]:
                return None
            if head["base"] is None:
                slots: list[str | None] = []
                index = new_index()
            else:
                manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
                if manifest.get("config_hash") != head["base"] or manifest.get("extra") != extra:
                    return None
                slots = json.loads((folder / "slots.json").read_text(encoding="utf-8"))
                index = load_index(folder / "vectors")
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:   # a record cut short by a crash: the check decides
                    break
                if rec["op"] == "delete":
                    slots[rec["slot"]] = None
                    index.remove([rec["slot"]])
                    continue
                slots.extend(rec["new"])
                if rec["add"]:
                    raw = f.read(4 * extra["dim"] * len(rec["add"]))
                    if len(raw) < 4 * extra["dim"] * len(rec["add"]):
                        break
                    index.add(rec["add"], np.frombuffer(raw, dtype="<f4").reshape(len(rec["add"]), extra["dim"]))
                for s in rec["remove"]:
                    index.remove([s])
    except (OSError, ValueError, KeyError, TypeError, IndexError, json.JSONDecodeError):
        return None
    return slots, index
