"""User-attribute ranker features: how much more (or less) popular the candidate is among users
who share the requesting user's demographic values (gender, age group, occupation, ...) than
among all users.

Example:
    >>> from lmrec.testing.toy import toy_dataset
    >>> from lmrec.types import Query
    >>> from lmrec.types import Candidates
    >>> ds = toy_dataset()
    >>> ds.user_attributes = {"group": ["a" if u % 2 else "b" for u in range(ds.n_users)]}
    >>> f = DemographicLift().fit(ds.interactions, ds)
    >>> f.columns
    ['demo:group:lift']
    >>> f.values(Query(user=0), Candidates(np.array([0, 1]), np.zeros(2))).shape
    (2, 1)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from lmrec.data.dataset import Dataset, Interactions
from lmrec.component import ComponentConfig
from lmrec.types import Event
from lmrec.rank.features import Feature, PairBatch

__all__ = ["DemographicLift", "demographic_attributes"]


def demographic_attributes(dataset: Dataset, max_values: int = 50) -> list[str]:
    """User attributes that group users: at least two and at most `max_values` distinct values
    among the users that have one (so zip codes and identifiers are left out)."""
    out = []
    for name, values in dataset.user_attributes.items():
        present = {str(v) for v in values if v is not None and str(v).strip()}
        if 2 <= len(present) <= max_values:
            out.append(name)
    return out


class DemographicConfig(ComponentConfig):
    """attributes: user attributes to use ("auto": see `demographic_attributes`); prior: the
    number of pseudo-events, at the item's overall share, that smooth each group's share."""

    attributes: list[str] | str = "auto"
    prior: float = Field(20.0, gt=0)


class DemographicLift(Feature):
    """Per user attribute, log of the candidate's share of the events of users with the same
    value over its share of all events (smoothed towards 0 for small groups); NaN where the
    user has no value for the attribute."""

    name = "demographic"
    Config = DemographicConfig
    config: DemographicConfig

    def _reset(self, dataset: Dataset) -> None:
        attrs = self.config.attributes
        if attrs == "auto":
            self.attrs = demographic_attributes(dataset)
        elif isinstance(attrs, str):
            raise ValueError(f"demographic.attributes must be a list of names or 'auto', got {attrs!r}")
        else:
            for a in attrs:
                if a not in dataset.user_attributes:
                    raise ValueError(f"demographic.attributes: {a!r} is not a user attribute; "
                                     f"known: {list(dataset.user_attributes)}")
            self.attrs = list(attrs)
        self.n_items = dataset.n_items
        # code of each user's value per attribute (-1: none); counts per (value, item)
        self.codes = np.full((dataset.n_users, len(self.attrs)), -1, np.int64)
        self.n_values: list[int] = []
        for j, a in enumerate(self.attrs):
            vocab: dict[Any, int] = {}
            for u, v in enumerate(dataset.user_attributes[a][:dataset.n_users]):
                if v is not None and str(v).strip():
                    self.codes[u, j] = vocab.setdefault(str(v), len(vocab))
            self.n_values.append(max(len(vocab), 1))
        self.counts = [np.zeros((n, self.n_items)) for n in self.n_values]
        self.item_total = np.zeros(self.n_items)

    def _fit_history(self, history: Interactions) -> None:
        keep = (history.user < len(self.codes)) & (history.item < self.n_items)
        users, items = history.user[keep], history.item[keep]
        self.item_total += np.bincount(items, minlength=self.n_items)
        for j in range(len(self.attrs)):
            c = self.codes[users, j]
            ok = c >= 0
            np.add.at(self.counts[j], (c[ok], items[ok]), 1.0)

    def _update_one(self, event: Event) -> None:
        if event.item >= self.n_items:
            return  # an item added after fit: no counts kept here
        self.item_total[event.item] += 1
        if event.user >= len(self.codes):
            return  # a user added after fit has no attributes here
        for j in range(len(self.attrs)):
            c = self.codes[event.user, j]
            if c >= 0:
                self.counts[j][c, event.item] += 1

    @property
    def columns(self) -> list[str]:
        return [f"demo:{a}:lift" for a in getattr(self, "attrs", [])]

    def compute(self, batch: PairBatch) -> np.ndarray:
        self._check_fitted()
        out = np.full((len(batch), len(self.attrs)), np.nan, np.float32)
        users, items = batch.users, batch.items
        known = (users >= 0) & (users < len(self.codes)) & (items < self.n_items)
        if not known.any() or not self.attrs:
            return out
        u, it = users[known], items[known]
        total = self.item_total.sum()
        overall = (self.item_total[it] + 1.0) / (total + self.n_items)
        prior = self.config.prior
        for j in range(len(self.attrs)):
            c = self.codes[u, j]
            has = c >= 0
            cc = np.maximum(c, 0)
            group_events = self.counts[j].sum(axis=1)[cc]
            share = (self.counts[j][cc, it] + prior * overall) / (group_events + prior)
            col = np.where(has, np.log(share / overall), np.nan)
            out[known, j] = col
        return out
