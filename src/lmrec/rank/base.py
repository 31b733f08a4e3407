"""The ranker interface: `RankData` (one row per (query, candidate) pair) and `Ranker`
(`fit(RankData)` with labels, `score(RankData)`), built by name from `RANKERS`."""

from __future__ import annotations

import json
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from lmrec.component import RANKERS, Component, ComponentConfig
from lmrec.types import config_hash

__all__ = ["RankData", "Ranker", "RANKERS"]


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


class Ranker(Component):
    """Orders the candidates of each query: `fit(RankData)` with labels, `score(RankData)`
    returns one float per row (higher = better). Saved as a folder with config.json."""

    name: ClassVar[str] = "ranker"
    Config: ClassVar[type[ComponentConfig]] = ComponentConfig

    def __init__(self, config: ComponentConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.columns: list[str] | None = None

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

