"""Train / validation / test splits for offline evaluation.

A `Split` holds three interaction sets over the same id maps. Models are tuned by fitting on
`train` and scoring `valid` (excluding train items), then refit on `train + valid` and scored on
`test` (excluding train and valid items). `candidates` optionally restricts the ranked catalog
(the cold-start split ranks only items unseen in training).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from lmrec.data.dataset import Dataset, Interactions


@dataclass
class Split:
    name: str
    dataset: Dataset
    train: Interactions
    valid: Interactions
    test: Interactions
    candidates: np.ndarray | None = None  # item indices that may be recommended; None = whole catalog
    info: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def train_valid(self) -> Interactions:
        """train + valid (computed once: the parts are not changed after the split is made)."""
        return Interactions.concat([self.train, self.valid])

    def summary(self) -> dict[str, Any]:
        return {
            "split": self.name,
            "train": len(self.train),
            "valid": len(self.valid),
            "test": len(self.test),
            "test_users": int(len(np.unique(self.test.user))),
            "candidates": None if self.candidates is None else int(len(self.candidates)),
            **{k: v for k, v in self.info.items() if not isinstance(v, np.ndarray)},
        }


def temporal_leave_one_out(dataset: Dataset, *, min_train: int = 1) -> Split:
    """Per user, sort events by (timestamp, item id); the last is test, the second-to-last
    validation, the rest train.

    Item indices follow the numeric order of the original item ids, so ties in timestamp
    (frequent in ML-100k) are broken by item id. Users with fewer than `min_train + 2` events
    keep all of them in train and are not evaluated. Repeated (user, item) events are kept.
    """
    s = dataset.interactions.sorted()
    n = len(s)
    if n == 0:
        raise ValueError(f"{dataset.name}: no interactions to split")
    starts = np.r_[0, np.flatnonzero(np.diff(s.user)) + 1]
    ends = np.r_[starts[1:], n]
    lengths = ends - starts
    eligible = lengths >= min_train + 2
    role = np.zeros(n, dtype=np.int8)  # 0 train, 1 valid, 2 test
    role[ends[eligible] - 1] = 2
    role[ends[eligible] - 2] = 1
    return Split(
        "temporal-loo", dataset, s.select(role == 0), s.select(role == 1), s.select(role == 2),
        info={"evaluated_users": int(eligible.sum()), "skipped_users": int((~eligible).sum())},
    )


def random_holdout(inter: Interactions, fraction: float, *, seed: int = 0,
                   min_keep: int = 1) -> tuple[Interactions, Interactions]:
    """Per user, move a random `fraction` of events (at least one when the user keeps
    `min_keep`) to a held-out part. Used to carve a validation set out of a given random split."""
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(inter)), inter.user))
    u = inter.user[order]
    starts = np.r_[0, np.flatnonzero(np.diff(u)) + 1] if len(u) else np.zeros(0, dtype=np.int64)
    ends = np.r_[starts[1:], len(u)] if len(u) else np.zeros(0, dtype=np.int64)
    held = np.zeros(len(inter), dtype=bool)
    for a, b in zip(starts, ends):
        size = b - a
        k = int(round(size * fraction))
        if k == 0 and size > min_keep:
            k = 1
        k = min(k, max(size - min_keep, 0))
        held[order[a:a + k]] = True
    return inter.select(~held), inter.select(held)


def given_split(dataset: Dataset, *, valid_fraction: float = 0.1, seed: int = 0) -> Split:
    """The data set's own split (`dataset.given_split`). When it has no validation part, a
    seeded random `valid_fraction` of each user's train events becomes validation."""
    g = dataset.given_split
    if not g or "train" not in g or "test" not in g:
        raise ValueError(f"{dataset.name}: this data set has no given split")
    train, test = g["train"], g["test"]
    if "valid" in g:
        valid = g["valid"]
        info = {"valid_source": "given"}
    else:
        train, valid = random_holdout(train, valid_fraction, seed=seed)
        info = {"valid_source": f"random {valid_fraction:.0%} of train per user, seed {seed}"}
    return Split("given", dataset, train, valid, test, info=info)


def cold_start_items(dataset: Dataset, *, test_fraction: float = 0.1, valid_fraction: float = 0.05) -> Split:
    """Cold-start item split on the timeline (cutoffs by event count).

    Items whose first event falls in the last `test_fraction` of the timeline are new items.
    train: every event before the validation cutoff; valid: every event between the two
    cutoffs (so train + valid = everything before the test cutoff); test: events on new items
    after the test cutoff. `candidates` are the new test items: models rank only them, and the
    evaluator keeps only truth inside the candidates. Validation ranks the items first seen
    between the cutoffs (`info['valid_candidates']`).
    """
    if not dataset.has_timestamps:
        raise ValueError(f"{dataset.name}: a cold-start split needs real timestamps")
    inter = dataset.interactions.sorted()
    ts = np.sort(inter.timestamp)
    t_test = ts[min(int(len(ts) * (1 - test_fraction)), len(ts) - 1)]
    t_valid = ts[min(int(len(ts) * (1 - test_fraction - valid_fraction)), len(ts) - 1)]
    never = np.iinfo(np.int64).max
    first_seen = np.full(dataset.n_items, never, dtype=np.int64)
    np.minimum.at(first_seen, inter.item, inter.timestamp)
    test_items = np.flatnonzero((first_seen >= t_test) & (first_seen != never))
    valid_items = np.flatnonzero((first_seen >= t_valid) & (first_seen < t_test))
    is_new_test = np.zeros(dataset.n_items, dtype=bool)
    is_new_test[test_items] = True
    train = inter.select(inter.timestamp < t_valid)
    valid = inter.select((inter.timestamp >= t_valid) & (inter.timestamp < t_test))
    test = inter.select((inter.timestamp >= t_test) & is_new_test[inter.item])
    return Split(
        "coldstart", dataset, train, valid, test, candidates=test_items,
        info={"test_cutoff": int(t_test), "valid_cutoff": int(t_valid),
              "new_items_test": int(len(test_items)), "new_items_valid": int(len(valid_items)),
              "valid_candidates": valid_items,
              # new items have no events: CF models score them all alike, so break ties at random
              "tie_break": "random"},
    )


def cold_start_random_items(dataset: Dataset, *, test_fraction: float = 0.2, valid_fraction: float = 0.1,
                            seed: int = 0) -> Split:
    """Cold-start item split by held-out items (works without timestamps).

    A seeded random `test_fraction` of the items that have events become the new test items and
    another `valid_fraction` the new validation items; every event on them is removed from
    training. train: events on the remaining (warm) items; valid: events on the validation items
    of users with a train event; test: events on the test items of users with a train or
    validation event. So every evaluated user has a history, every truth item is unseen in
    training, and the set of new items is large enough to measure (unlike a short timeline
    window). `candidates` are the new test items; validation ranks `info['valid_candidates']`.
    """
    if not 0 < test_fraction < 1 or not 0 < valid_fraction < 1 or test_fraction + valid_fraction >= 1:
        raise ValueError(f"test_fraction={test_fraction} and valid_fraction={valid_fraction} must be in (0, 1) "
                         "and sum to less than 1")
    inter = dataset.interactions.sorted()
    active = np.flatnonzero(np.bincount(inter.item, minlength=dataset.n_items) > 0)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(active)
    n_test = max(1, int(round(len(active) * test_fraction)))
    n_valid = max(1, int(round(len(active) * valid_fraction)))
    test_items = np.sort(perm[:n_test])
    valid_items = np.sort(perm[n_test:n_test + n_valid])
    role = np.zeros(dataset.n_items, dtype=np.int8)  # 0 warm, 1 new in valid, 2 new in test
    role[valid_items] = 1
    role[test_items] = 2
    r = role[inter.item]
    train = inter.select(r == 0)
    has_train = np.zeros(dataset.n_users, dtype=bool)
    has_train[train.user] = True
    valid = inter.select((r == 1) & has_train[inter.user])
    has_history = has_train.copy()
    has_history[valid.user] = True
    test = inter.select((r == 2) & has_history[inter.user])
    return Split(
        "coldstart-random", dataset, train, valid, test, candidates=test_items,
        info={"new_items_test": int(len(test_items)), "new_items_valid": int(len(valid_items)),
              "valid_candidates": valid_items, "seed": seed,
              "test_fraction": test_fraction, "valid_fraction": valid_fraction,
              "tie_break": "random"},
    )


def time_ratio_split(dataset: Dataset, *, test_fraction: float = 0.1, valid_fraction: float = 0.1) -> Split:
    """A global split on the timeline: events in the last `test_fraction` of the time-sorted
    events are test, the `valid_fraction` before them validation, the rest train (cut-offs by
    event count; events at a cut-off's timestamp go to the later part). Only users with a
    train event are validated, and only users with a train or validation event are tested, so
    every evaluated user has a history; items first seen after a cut-off stay in the truth
    (a model that cannot recommend them pays for it, as it would online)."""
    if not dataset.has_timestamps:
        raise ValueError(f"{dataset.name}: a time-ratio split needs real timestamps (the data set is ordered "
                         "by position only; use temporal-loo)")
    if not 0 < test_fraction < 1 or not 0 < valid_fraction < 1 or test_fraction + valid_fraction >= 1:
        raise ValueError(f"test_fraction={test_fraction} and valid_fraction={valid_fraction} must be in (0, 1) "
                         "and sum to less than 1")
    inter = dataset.interactions.sorted()
    if not len(inter):
        raise ValueError(f"{dataset.name}: no interactions to split")
    ts = np.sort(inter.timestamp)
    t_test = ts[min(int(len(ts) * (1 - test_fraction)), len(ts) - 1)]
    t_valid = ts[min(int(len(ts) * (1 - test_fraction - valid_fraction)), len(ts) - 1)]
    train = inter.select(inter.timestamp < t_valid)
    has_train = np.zeros(dataset.n_users, dtype=bool)
    has_train[train.user] = True
    valid = inter.select((inter.timestamp >= t_valid) & (inter.timestamp < t_test) & has_train[inter.user])
    has_history = has_train.copy()
    has_history[valid.user] = True
    test = inter.select((inter.timestamp >= t_test) & has_history[inter.user])
    if not len(train) or not len(test):
        raise ValueError(f"{dataset.name}: the time-ratio split left train {len(train)} and test {len(test)} "
                         "events (too few distinct timestamps?)")
    return Split("time-ratio", dataset, train, valid, test,
                 info={"test_from": int(t_test), "valid_from": int(t_valid), "test_fraction": test_fraction,
                       "valid_fraction": valid_fraction})


def session_split(dataset: Dataset) -> Split:
    """"history -> next item" evaluation (`dataset.info["sessions"]`, from a data-set spec):
    models are fitted on every event; the test (and validation) rows are answered from their
    histories alone (`lmrec.eval.sessions.evaluate_session_stage`)."""
    sessions = dataset.info.get("sessions")
    if not sessions or "test" not in sessions:
        raise ValueError(f"{dataset.name}: no history -> next item rows (a spec's [split] method = 'sessions')")
    empty = Interactions.empty()
    return Split("sessions", dataset, dataset.interactions, empty, empty,
                 info={"sessions": sessions, "test_sessions": len(sessions["test"]),
                       "valid_sessions": len(sessions["valid"]) if "valid" in sessions else 0})
