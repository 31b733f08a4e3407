"""The in-memory data model: id maps, columnar interactions, item and user tables, Dataset."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Sequence

import numpy as np
import scipy.sparse as sp

from lmrec.types import EventKind


def _sort_key(values: Sequence[str]) -> list[str]:
    """Order ids numerically when every id is an integer, otherwise lexicographically."""
    try:
        return sorted(values, key=int)
    except ValueError:
        return sorted(values)


class IdMap:
    """Bidirectional map between original (string) ids and dense indices 0..n-1.

    Built from a set of ids, indices follow the numeric order of the ids when all ids are
    integers (so sorting by index equals sorting by id), otherwise lexicographic order.
    New ids can be appended at run time with `add`.
    """

    def __init__(self, ids: Iterable[Any] = (), *, sort: bool = True) -> None:
        uniq = list(dict.fromkeys(str(i) for i in ids))
        if sort:
            uniq = _sort_key(uniq)
        self._ids: list[str] = uniq
        self._index: dict[str, int] = {v: i for i, v in enumerate(uniq)}

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, id_: Any) -> bool:
        return str(id_) in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and self._ids == other._ids

    def __repr__(self) -> str:
        return f"IdMap(n={len(self)})"

    @property
    def ids(self) -> list[str]:
        return self._ids

    def index(self, id_: Any) -> int:
        """Index of one original id; KeyError naming the id when unknown."""
        try:
            return self._index[str(id_)]
        except KeyError:
            raise KeyError(f"unknown id {id_!r}") from None

    def get(self, id_: Any, default: int = -1) -> int:
        return self._index.get(str(id_), default)

    def indices(self, ids: Iterable[Any], *, missing: int | None = None) -> np.ndarray:
        """Indices of many ids. Unknown ids raise KeyError unless `missing` gives a fill value."""
        if missing is None:
            return np.fromiter((self.index(i) for i in ids), dtype=np.int64)
        return np.fromiter((self._index.get(str(i), missing) for i in ids), dtype=np.int64)

    def to_ids(self, indices: Iterable[int]) -> list[str]:
        return [self._ids[int(i)] for i in indices]

    def add(self, id_: Any) -> int:
        """Index of `id_`, appending it if new (for items/users that arrive at run time)."""
        key = str(id_)
        idx = self._index.get(key)
        if idx is None:
            idx = len(self._ids)
            self._ids.append(key)
            self._index[key] = idx
        return idx

    def forget(self, id_: Any) -> int:
        """Unmap `id_` (erasure): its index stays taken (arrays are indexed by it) but holds a
        placeholder no valid id can equal, so `get(id_)` is -1 and a later `add(id_)` gives a
        fresh index. Returns the index it had (-1 when unknown)."""
        idx = self._index.pop(str(id_), -1)
        if idx >= 0:
            placeholder = f"\x00erased:{idx}"
            self._ids[idx] = placeholder
            self._index[placeholder] = idx
        return idx

    def copy(self) -> IdMap:
        out = IdMap(sort=False)
        out._ids = list(self._ids)
        out._index = dict(self._index)
        return out


@dataclass
class Interactions:
    """Columnar interaction events over dense user/item indices.

    `timestamp` is int64 seconds since the epoch; for data without real times (Amazon
    sequences) it holds the position in the user's sequence and `Dataset.has_timestamps`
    is False. `value` is the rating for rating events, otherwise 1.0 (or an event weight).
    """

    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    kind: np.ndarray | None = None
    value: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.user = np.asarray(self.user, dtype=np.int64)
        self.item = np.asarray(self.item, dtype=np.int64)
        self.timestamp = np.asarray(self.timestamp, dtype=np.int64)
        n = len(self.user)
        if self.kind is None:
            self.kind = np.full(n, int(EventKind.VIEW), dtype=np.int8)
        if self.value is None:
            self.value = np.ones(n, dtype=np.float32)
        self.kind = np.asarray(self.kind, dtype=np.int8)
        self.value = np.asarray(self.value, dtype=np.float32)
        for name in ("item", "timestamp", "kind", "value"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Interactions: column {name!r} has {len(getattr(self, name))} rows, user has {n}")

    def __len__(self) -> int:
        return len(self.user)

    @classmethod
    def empty(cls) -> Interactions:
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, z)

    def select(self, mask_or_index: np.ndarray) -> Interactions:
        """Rows selected by a boolean mask or an index array."""
        m = mask_or_index
        return Interactions(self.user[m], self.item[m], self.timestamp[m], self.kind[m], self.value[m])

    @staticmethod
    def concat(parts: Sequence[Interactions]) -> Interactions:
        parts = [p for p in parts if p is not None]
        if not parts:
            return Interactions.empty()
        return Interactions(
            np.concatenate([p.user for p in parts]),
            np.concatenate([p.item for p in parts]),
            np.concatenate([p.timestamp for p in parts]),
            np.concatenate([p.kind for p in parts]),
            np.concatenate([p.value for p in parts]),
        )

    def sorted(self) -> Interactions:
        """Sorted by (user, timestamp, item): each user's history in time order, ties by item index."""
        order = np.lexsort((self.item, self.timestamp, self.user))
        return self.select(order)

    def to_csr(self, n_users: int, n_items: int, *, binary: bool = True,
               weights: np.ndarray | None = None) -> sp.csr_matrix:
        """User x item sparse matrix; duplicates are summed, then clipped to 1 when `binary`."""
        data = np.ones(len(self), dtype=np.float32) if weights is None else np.asarray(weights, np.float32)
        m = sp.csr_matrix((data, (self.user, self.item)), shape=(n_users, n_items), dtype=np.float32)
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        m.sort_indices()
        return m

    def per_user(self, n_users: int) -> list[np.ndarray]:
        """Item indices of each user in (timestamp, item) order; empty arrays for users without events."""
        s = self.sorted()
        bounds = np.searchsorted(s.user, np.arange(n_users + 1))
        return [s.item[bounds[u]:bounds[u + 1]] for u in range(n_users)]


@dataclass
class ItemTable:
    """Item metadata aligned with the item IdMap (row i describes item index i).

    `text` holds extra text fields (description, brand, ...) by name; `attributes` holds
    any other per-item values. Missing values are empty strings / empty lists / None.
    """

    title: list[str]
    categories: list[list[str]]
    text: dict[str, list[str]] = field(default_factory=dict)
    attributes: dict[str, list[Any]] = field(default_factory=dict)
    created_at: np.ndarray | None = None  # int64 seconds, -1 when unknown
    available: np.ndarray | None = None  # bool

    def __post_init__(self) -> None:
        n = len(self.title)
        if len(self.categories) != n:
            raise ValueError("ItemTable: categories must have one entry per item")
        for k, v in {**self.text, **self.attributes}.items():
            if len(v) != n:
                raise ValueError(f"ItemTable: field {k!r} must have one entry per item")
        if self.created_at is None:
            self.created_at = np.full(n, -1, dtype=np.int64)
        if self.available is None:
            self.available = np.ones(n, dtype=bool)

    def __len__(self) -> int:
        return len(self.title)

    @classmethod
    def blank(cls, n: int) -> ItemTable:
        return cls(title=[""] * n, categories=[[] for _ in range(n)])

    def item_text(self, i: int, fields: Sequence[str] | None = None) -> str:
        """A single text for item i: title, categories, then the extra text fields."""
        parts = [self.title[i]]
        if self.categories[i]:
            parts.append(", ".join(self.categories[i]))
        for name in fields if fields is not None else self.text:
            val = self.text.get(name, [""] * len(self))[i]
            if val:
                parts.append(val)
        return ". ".join(p for p in parts if p)


@dataclass
class Dataset:
    """One data set in memory: id maps, interactions, optional item/user metadata and the
    data set's own given split (if it has one)."""

    name: str
    users: IdMap
    items: IdMap
    interactions: Interactions
    item_table: ItemTable | None = None
    user_attributes: dict[str, list[Any]] = field(default_factory=dict)
    has_timestamps: bool = True
    given_split: dict[str, Interactions] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    #: item text template (a `lmrec.text.templates.TEMPLATES` key or a format string);
    #: None: the template registered for `name`, else the generic text
    template: str | None = None
    #: knowledge-graph triples (`lmrec.kg.triples`): a DataFrame with columns head, relation,
    #: tail (ids as strings), head_item and tail_item (whether the node is a catalog item id)
    triples: Any = None

    def __post_init__(self) -> None:
        if len(self.interactions):
            if self.interactions.user.max() >= len(self.users) or self.interactions.user.min() < 0:
                raise ValueError(f"{self.name}: interaction user index outside the user map")
            if self.interactions.item.max() >= len(self.items) or self.interactions.item.min() < 0:
                raise ValueError(f"{self.name}: interaction item index outside the item map")
        if self.item_table is not None and len(self.item_table) != len(self.items):
            raise ValueError(f"{self.name}: item table has {len(self.item_table)} rows, item map {len(self.items)}")

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def with_interactions(self, interactions: Interactions) -> Dataset:
        return replace(self, interactions=interactions)

    def summary(self) -> dict[str, Any]:
        inter = self.interactions
        n_u = len(np.unique(inter.user)) if len(inter) else 0
        n_i = len(np.unique(inter.item)) if len(inter) else 0
        out: dict[str, Any] = {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": len(inter),
            "users_with_events": n_u,
            "items_with_events": n_i,
            "density": (len(inter) / (n_u * n_i)) if n_u and n_i else 0.0,
            "has_timestamps": self.has_timestamps,
            "has_item_text": self.item_table is not None and any(self.item_table.title),
            "event_kinds": {EventKind(k).name.lower(): int(c) for k, c in
                            zip(*np.unique(inter.kind, return_counts=True))} if len(inter) else {},
            "given_split": sorted(self.given_split) if self.given_split else None,
        }
        if self.has_timestamps and len(inter):
            out["time_range"] = [int(inter.timestamp.min()), int(inter.timestamp.max())]
        return out


def build_dataset(
    name: str,
    users: Sequence[Any],
    items: Sequence[Any],
    timestamps: Sequence[int] | np.ndarray,
    *,
    kinds: Sequence[int] | np.ndarray | None = None,
    values: Sequence[float] | np.ndarray | None = None,
    item_ids: Sequence[Any] | None = None,
    user_ids: Sequence[Any] | None = None,
    item_table: ItemTable | None = None,
    has_timestamps: bool = True,
) -> Dataset:
    """Build a Dataset from parallel columns of original ids.

    `item_ids` / `user_ids` give the full catalogs (e.g. items nobody interacted with yet);
    when given, `item_table` must be aligned with `IdMap(item_ids)` order.
    """
    umap = IdMap(user_ids if user_ids is not None else users)
    imap = IdMap(item_ids if item_ids is not None else items)
    inter = Interactions(umap.indices(users), imap.indices(items), np.asarray(timestamps, dtype=np.int64),
                         kinds, values)
    return Dataset(name, umap, imap, inter, item_table=item_table, has_timestamps=has_timestamps)


def upsert_item_rows(dataset: Dataset, ids: Sequence[Any], rows: Sequence[dict[str, Any]]) -> np.ndarray:
    """Add or change items of `dataset` in place (the live catalog of a served pipeline).

    `rows[j]` holds item `ids[j]`'s fields: "title", "categories" (a list), "text" (a dict of
    text fields by name), "attributes" (a dict), "created_at" (seconds, -1 unknown) and
    "available" (bool); missing fields keep their old value (new items: empty). New ids are
    appended to the item map; fields no item had before become new columns. Returns the
    items' indices.
    """
    if len(ids) != len(rows):
        raise ValueError(f"{len(ids)} item ids but {len(rows)} rows")
    if dataset.item_table is None:
        dataset.item_table = ItemTable.blank(dataset.n_items)
    t = dataset.item_table
    out = np.empty(len(ids), np.int64)
    for j, (item_id, row) in enumerate(zip(ids, rows)):
        i = dataset.items.add(item_id)
        out[j] = i
        n = len(t.title)
        if i >= n:  # a new row: every column grows
            grow = i + 1 - n
            t.title.extend([""] * grow)
            t.categories.extend([] for _ in range(grow))
            for col in t.text.values():
                col.extend([""] * grow)
            for col in t.attributes.values():
                col.extend([None] * grow)
            t.created_at = np.r_[t.created_at, np.full(grow, -1, np.int64)]
            t.available = np.r_[t.available, np.ones(grow, bool)]
        if "title" in row:
            t.title[i] = str(row["title"] or "")
        if "categories" in row:
            t.categories[i] = [str(c) for c in row["categories"] or ()]
        for name, value in (row.get("text") or {}).items():
            t.text.setdefault(name, [""] * len(t.title))[i] = str(value or "")
        for name, value in (row.get("attributes") or {}).items():
            t.attributes.setdefault(name, [None] * len(t.title))[i] = value
        if row.get("created_at") is not None:
            t.created_at[i] = int(row["created_at"])
        if "available" in row:
            t.available[i] = bool(row["available"])
    return out
