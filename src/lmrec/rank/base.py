"""What the stages after recall share: the request (`Query`), a behaviour `Event`, a small
registry that builds a stage from its name and parameters, and the `Ranker` interface.

Every stage after recall (features, rankers, re-rankers) is named in a pipeline config and
built by name from a `Registry`, so each can be swapped alone. Stage parameters are pydantic
models with `extra="forbid"`: a misspelt key fails with a message naming it.

Example:
    >>> reg = Registry("greeter")
    >>> @reg.register("hello")
    ... class Hello:
    ...     def __init__(self, name: str = "world") -> None:
    ...         self.name = name
    >>> reg.create("hello", {"name": "lmrec"}).name
    'lmrec'
    >>> reg.create("bye")
    Traceback (most recent call last):
    ...
    lmrec.rank.base.UnknownStageError: unknown greeter 'bye'; known: hello
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Self, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from lmrec.data.dataset import Interactions
from lmrec.types import EventKind, config_hash

__all__ = ["Query", "Event", "events_of", "Registry", "UnknownStageError", "StageConfig", "RankData",
           "Ranker", "RANKERS"]

T = TypeVar("T")


@dataclass(frozen=True)
class Query:
    """One request to the stages after recall.

    `user` is an internal user index (None: anonymous); `text` a search query (None: plain
    recommendation); `time` the request time in the data's time unit (None: the user's last
    event, which is what offline replays use, so training and serving see the same clock);
    `context` holds per-request business data, e.g. `{"blocked": [item indices]}`.
    """

    user: int | None = None
    text: str | None = None
    time: int | None = None
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """One behaviour event over internal indices (what `update(event)` halves consume)."""

    user: int
    item: int
    timestamp: int
    kind: EventKind = EventKind.VIEW
    value: float = 1.0


def events_of(inter: Interactions) -> Iterator[Event]:
    """The rows of `inter` as Events, in (timestamp, user, item) order: the order a live
    system would have seen them in."""
    order = np.lexsort((inter.item, inter.user, inter.timestamp))
    for i in order:
        yield Event(int(inter.user[i]), int(inter.item[i]), int(inter.timestamp[i]),
                    EventKind(int(inter.kind[i])), float(inter.value[i]))


class UnknownStageError(ValueError):
    """A stage name that is not registered; the message lists the known names."""


class StageConfig(BaseModel):
    """Base of every stage's parameters: typed, validated, JSON round-trippable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Registry(Generic[T]):
    """Names -> stage factories (a class or callable taking the parameters as keywords, or a
    lazy "package.module:Attr" string imported on first use)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, str | Callable[..., T]] = {}

    def register(self, name: str, factory: str | Callable[..., T] | None = None, *,
                 replace: bool = False) -> Any:
        """Register `factory` under `name`; without `factory`, a decorator."""
        if factory is None:
            def deco(obj: Callable[..., T]) -> Callable[..., T]:
                self.register(name, obj, replace=replace)
                return obj
            return deco
        if not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string")
        if name in self._entries and not replace and self._entries[name] is not factory:
            raise ValueError(f"{self.kind} {name!r} is already registered; pass replace=True to override it")
        self._entries[name] = factory
        return factory

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Callable[..., T]:
        try:
            entry = self._entries[name]
        except KeyError:
            raise UnknownStageError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module), attr)
            self._entries[name] = entry
        return entry

    def create(self, name: str, params: Mapping[str, Any] | None = None) -> T:
        """A new stage `name` built with `params` (pydantic names any bad field)."""
        return self.get(name)(**dict(params or {}))


@dataclass
class RankData:
    """Training (or scoring) data of a ranker: one row per (query, candidate) pair.

    `X` holds the tabular features (columns named by `columns`), `groups` the number of
    consecutive rows of each query, `labels` one column per task ("click", the main one, is
    0/1; others may be graded). `vectors` holds per-row embeddings for neural rankers without
    copying them per row: name -> (table (m, dim), index (n_rows,)), row j's vector being
    `table[index[j]]` (e.g. "item": the catalog's item vectors and each row's item,
    "user": one profile per query and each row's query).
    """

    X: np.ndarray
    columns: list[str]
    groups: np.ndarray
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    vectors: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.X = np.asarray(self.X, dtype=np.float32)
        self.groups = np.asarray(self.groups, dtype=np.int64)
        n = len(self.X)
        if self.X.ndim != 2 or self.X.shape[1] != len(self.columns):
            raise ValueError(f"RankData: X has shape {self.X.shape}, columns name {len(self.columns)}")
        if int(self.groups.sum()) != n:
            raise ValueError(f"RankData: groups sum to {int(self.groups.sum())}, X has {n} rows")
        for name, col in self.labels.items():
            if len(col) != n:
                raise ValueError(f"RankData: label {name!r} has {len(col)} rows, X has {n}")
        for name, (table, index) in self.vectors.items():
            if len(index) != n:
                raise ValueError(f"RankData: vector index {name!r} has {len(index)} rows, X has {n}")
            if len(index) and (index.min() < 0 or index.max() >= len(table)):
                raise ValueError(f"RankData: vector index {name!r} points outside its table of {len(table)}")

    def __len__(self) -> int:
        return len(self.X)

    @property
    def offsets(self) -> np.ndarray:
        return np.r_[0, np.cumsum(self.groups)]

    @property
    def row_group(self) -> np.ndarray:
        """The group of every row."""
        return np.repeat(np.arange(len(self.groups)), self.groups)

    def group_sums(self, values: np.ndarray) -> np.ndarray:
        """Sum of `values` (one per row) within each group (0 for empty groups)."""
        return np.bincount(self.row_group, weights=np.asarray(values, np.float64), minlength=len(self.groups))

    def vector(self, name: str, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Row vectors of embedding `name` for `rows`."""
        table, index = self.vectors[name]
        return table[index[rows]]

    def select_groups(self, which: np.ndarray) -> RankData:
        """The rows of the groups at positions `which` (in that order)."""
        off = self.offsets
        which = np.asarray(which, dtype=np.int64)
        rows = np.concatenate([np.arange(off[g], off[g + 1]) for g in which]) if len(which) else \
            np.zeros(0, np.int64)
        return RankData(self.X[rows], list(self.columns), self.groups[which],
                        {k: v[rows] for k, v in self.labels.items()},
                        {k: (t, i[rows]) for k, (t, i) in self.vectors.items()})

    @staticmethod
    def concat(parts: list[RankData]) -> RankData:
        """Rows of several RankData with the same columns, in order. Vector tables shared by
        every part (the same array) stay shared; others are stacked and re-indexed."""
        if not parts:
            raise ValueError("RankData.concat needs at least one part")
        cols = parts[0].columns
        for p in parts[1:]:
            if p.columns != cols:
                raise ValueError("RankData.concat: parts have different columns")
        labels = {k: np.concatenate([p.labels[k] for p in parts]) for k in parts[0].labels}
        vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for k in parts[0].vectors:
            tables = [p.vectors[k][0] for p in parts]
            if all(t is tables[0] for t in tables):
                vectors[k] = (tables[0], np.concatenate([p.vectors[k][1] for p in parts]))
            else:
                shift = np.r_[0, np.cumsum([len(t) for t in tables])[:-1]]
                vectors[k] = (np.concatenate(tables), np.concatenate([p.vectors[k][1] + s for p, s in zip(parts, shift)]))
        return RankData(np.concatenate([p.X for p in parts]), list(cols),
                        np.concatenate([p.groups for p in parts]), labels, vectors)


class Ranker(ABC):
    """Orders the candidates of each query: `fit(RankData)` with labels, `score(RankData)`
    returns one float per row (higher = better). Saved as a folder with config.json."""

    name: ClassVar[str] = "ranker"
    Config: ClassVar[type[StageConfig]] = StageConfig

    def __init__(self, **params: Any) -> None:
        self.config = self.Config(**params)
        self.columns: list[str] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params.items())})"

    @property
    def params(self) -> dict[str, Any]:
        return self.config.model_dump()

    @property
    def is_fitted(self) -> bool:
        return self.columns is not None

    def fit(self, data: RankData) -> Self:
        """Train on labelled groups; returns self."""
        if "click" not in data.labels:
            raise ValueError(f"{self.name}: RankData needs a 'click' label column, has {sorted(data.labels)}")
        self.columns = list(data.columns)
        self._fit(data)
        return self

    def score(self, data: RankData) -> np.ndarray:
        """One score per row of `data` (float32); the columns must be those seen in fit."""
        if self.columns is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
        if list(data.columns) != self.columns:
            missing = sorted(set(self.columns) - set(data.columns))
            raise ValueError(f"{self.name}: feature columns differ from training (missing: {missing})")
        if not len(data):
            return np.zeros(0, np.float32)
        return np.asarray(self._score(data), dtype=np.float32).reshape(-1)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        cfg = {"ranker": self.name, "params": self.params, "columns": self.columns}
        cfg["config_hash"] = config_hash(cfg)
        (path / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
        if self.columns is not None:
            self._save(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Ranker:
        """Load any registered ranker saved with `save`."""
        path = Path(path)
        cfg = json.loads((path / "config.json").read_text())
        ranker = RANKERS.create(cfg["ranker"], cfg["params"])
        ranker.columns = cfg["columns"]
        if ranker.columns is not None:
            ranker._load(path)
        return ranker

    @abstractmethod
    def _fit(self, data: RankData) -> None: ...

    @abstractmethod
    def _score(self, data: RankData) -> np.ndarray: ...

    def _save(self, path: Path) -> None:
        pass

    def _load(self, path: Path) -> None:
        pass


RANKERS: Registry[Ranker] = Registry("ranker")
RANKERS.register("none", "lmrec.rank.ltr:PassthroughRanker")
RANKERS.register("lambdarank", "lmrec.rank.ltr:LambdaRankRanker")
RANKERS.register("ctr", "lmrec.rank.ctr:CTRRanker")
