"""Graded query-item relevance judgments (search relevance data sets)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmrec.data.dataset import IdMap


@dataclass
class RelevanceSet:
    """Judged (query, item, grade) triples over a list of queries and an item catalog.

    `queries[q]` is the text of query index q, `item_text[i]` the text of item index i (aligned
    with `items`). `part` optionally names the source part of each judgment (e.g. "dev").
    """

    name: str
    queries: list[str]
    items: IdMap
    item_text: list[str]
    query_idx: np.ndarray
    item_idx: np.ndarray
    grade: np.ndarray
    part: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.query_idx = np.asarray(self.query_idx, dtype=np.int64)
        self.item_idx = np.asarray(self.item_idx, dtype=np.int64)
        self.grade = np.asarray(self.grade, dtype=np.float32)
        n = len(self.query_idx)
        if len(self.item_idx) != n or len(self.grade) != n:
            raise ValueError(f"{self.name}: query_idx, item_idx and grade must have equal lengths")
        if self.part is not None:
            self.part = np.asarray(self.part, dtype=str)
            if len(self.part) != n:
                raise ValueError(f"{self.name}: part must have one entry per judgment")
        if len(self.item_text) != len(self.items):
            raise ValueError(f"{self.name}: item_text has {len(self.item_text)} rows, items {len(self.items)}")
        if n and (self.query_idx.min() < 0 or self.query_idx.max() >= len(self.queries)):
            raise ValueError(f"{self.name}: query index outside the query list")
        if n and (self.item_idx.min() < 0 or self.item_idx.max() >= len(self.items)):
            raise ValueError(f"{self.name}: item index outside the item map")
        self._order: np.ndarray | None = None
        self._bounds: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.grade)

    @property
    def n_queries(self) -> int:
        return len(self.queries)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def judged(self, query_i: int) -> tuple[np.ndarray, np.ndarray]:
        """Item indices and grades judged for query index `query_i` (in input order)."""
        if self._order is None:
            self._order = np.argsort(self.query_idx, kind="stable")
            self._bounds = np.searchsorted(self.query_idx[self._order], np.arange(self.n_queries + 1))
        assert self._bounds is not None
        if not 0 <= query_i < self.n_queries:
            raise IndexError(f"{self.name}: query index {query_i} out of range 0..{self.n_queries - 1}")
        sel = self._order[self._bounds[query_i]:self._bounds[query_i + 1]]
        return self.item_idx[sel], self.grade[sel]

    def summary(self) -> dict[str, Any]:
        per_query = np.bincount(self.query_idx, minlength=self.n_queries)
        grades, counts = np.unique(self.grade, return_counts=True)
        out: dict[str, Any] = {
            "name": self.name,
            "queries": self.n_queries,
            "items": self.n_items,
            "judgments": len(self),
            "judged_items": int(len(np.unique(self.item_idx))),
            "judgments_per_query": {"mean": float(per_query.mean()) if len(per_query) else 0.0,
                                    "median": float(np.median(per_query)) if len(per_query) else 0.0,
                                    "max": int(per_query.max()) if len(per_query) else 0},
            "grade_range": [float(grades.min()), float(grades.max())] if len(grades) else None,
            "grade_mean": float(self.grade.mean()) if len(self) else None,
        }
        if len(grades) <= 20:
            out["grade_counts"] = {f"{g:g}": int(c) for g, c in zip(grades, counts)}
        if self.part is not None:
            parts, pc = np.unique(self.part, return_counts=True)
            out["parts"] = {str(p): int(c) for p, c in zip(parts, pc)}
        return out

    def subset_queries(self, query_indices: np.ndarray, name: str | None = None) -> RelevanceSet:
        """The judgments of the given queries; queries are re-indexed in the given order, the
        item catalog is shared."""
        q = np.asarray(query_indices, dtype=np.int64)
        remap = np.full(self.n_queries, -1, dtype=np.int64)
        remap[q] = np.arange(len(q))
        mask = remap[self.query_idx] >= 0
        return RelevanceSet(
            name or self.name, [self.queries[i] for i in q], self.items, self.item_text,
            remap[self.query_idx[mask]], self.item_idx[mask], self.grade[mask],
            None if self.part is None else self.part[mask], dict(self.info),
        )

    def query_split(self, test_fraction: float = 0.2, seed: int = 0) -> tuple[RelevanceSet, RelevanceSet]:
        """Random split by query: a seeded `test_fraction` of the judged queries (and all their
        judgments) go to test, the rest to train. Both keep the full item catalog."""
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        judged = np.unique(self.query_idx)
        rng = np.random.default_rng(seed)
        perm = rng.permutation(judged)
        n_test = int(round(len(perm) * test_fraction))
        test_q, train_q = np.sort(perm[:n_test]), np.sort(perm[n_test:])
        return (self.subset_queries(train_q, f"{self.name}/train"),
                self.subset_queries(test_q, f"{self.name}/test"))
