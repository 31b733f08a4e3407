"""The ranker's training window, labels and ranking metrics; RankData; user histories."""

from __future__ import annotations

import numpy as np
import pytest

from lmrec.data.dataset import Interactions
from lmrec.component import Registry, UnknownStageError
from lmrec.rank.base import RankData
from lmrec.types import Event
from lmrec.rank.history import UserHistory
from lmrec.rank.training import (WindowSpec, auc, candidate_labels, group_auc, group_ndcg, window_folds,
                                 window_split)
from lmrec.types import Candidates, EventKind


def _inter() -> Interactions:
    # user 0: items 10..15 at t=1..6; user 1: items 20, 21 at t=1, 2; user 2: items 30..33 at t=5..8
    users = [0] * 6 + [1] * 2 + [2] * 4
    items = list(range(10, 16)) + [20, 21] + list(range(30, 34))
    ts = list(range(1, 7)) + [1, 2] + list(range(5, 9))
    return Interactions(np.array(users), np.array(items), np.array(ts))


def test_user_last_window() -> None:
    hist, window = window_split(_inter(), WindowSpec(size=2, min_history=2))
    assert sorted(zip(window.user.tolist(), window.item.tolist())) == [(0, 14), (0, 15), (2, 32), (2, 33)]
    assert len(hist) + len(window) == 12  # user 1 (too short) keeps everything in history
    hist, window = window_split(_inter(), WindowSpec(size=2, min_history=3))
    assert window.user.tolist() == [0, 0]


def test_time_window() -> None:
    hist, window = window_split(_inter(), WindowSpec(strategy="time", fraction=0.25, min_history=1))
    cut = np.quantile(_inter().timestamp, 0.75)
    assert (window.timestamp > cut).all() and (hist.timestamp <= cut).all() | (hist.user == 1).any()
    assert set(window.user.tolist()) <= {0, 2}


def test_window_folds_step_back() -> None:
    folds = window_folds(_inter(), WindowSpec(size=1, min_history=2, repeats=3))
    assert [sorted(w.item.tolist()) for _, w in folds] == [[15, 33], [14, 32], [13]]
    for hist, window in folds:  # no fold's history reaches into its window or later
        for u in np.unique(window.user):
            assert hist.timestamp[hist.user == u].max() < window.timestamp[window.user == u].min()


def test_max_users_samples() -> None:
    _, window = window_split(_inter(), WindowSpec(size=1, min_history=1, max_users=1, seed=0))
    assert len(np.unique(window.user)) == 1


def test_candidate_labels() -> None:
    truth = Interactions(np.array([0, 0, 1]), np.array([3, 5, 3]), np.array([9, 9, 9]),
                         kind=np.array([EventKind.RATING, EventKind.PURCHASE, EventKind.RATING]),
                         value=np.array([5.0, 2.0, 3.0]))
    lists = [Candidates(np.array([5, 3, 7]), np.zeros(3)), Candidates(np.array([3, 5]), np.zeros(2))]
    lab = candidate_labels(np.array([0, 1]), lists, truth, high_value=4.0)
    assert lab["click"].tolist() == [1, 1, 0, 1, 0]
    assert lab["high"].tolist() == [0, 1, 0, 0, 0]
    assert lab["purchase"].tolist() == [1, 0, 0, 0, 0]


def test_auc_and_group_metrics_by_hand() -> None:
    assert auc(np.array([0.9, 0.8, 0.1, 0.2]), np.array([1, 0, 0, 1])) == pytest.approx(0.75)  # 3 of 4 pairs
    assert auc(np.array([3.0, 2.0, 1.0]), np.array([1, 1, 0])) == 1.0
    assert np.isnan(auc(np.array([1.0, 2.0]), np.array([0, 0])))
    scores = np.array([0.1, 0.9, 0.5, 1.0, 0.0, 0.3])
    labels = np.array([1, 0, 0, 0, 0, 0])
    groups = np.array([3, 3])
    nd = group_ndcg(scores, labels, groups, k=10)
    assert nd[0] == pytest.approx(1 / np.log2(4))  # the positive is ranked third
    assert np.isnan(nd[1])
    assert group_auc(scores, labels, groups) == 0.0


def test_rank_data_checks_and_group_ops() -> None:
    X = np.arange(10, dtype=np.float32).reshape(5, 2)
    d = RankData(X, ["a", "b"], np.array([2, 0, 3]), {"click": np.array([0, 1, 0, 0, 1])},
                 {"item": (np.eye(4, dtype=np.float32), np.array([0, 1, 2, 3, 0]))})
    assert d.group_sums(d.labels["click"]).tolist() == [1, 0, 1]
    sub = d.select_groups(np.array([2, 0]))
    assert sub.groups.tolist() == [3, 2] and sub.X[:, 0].tolist() == [4, 6, 8, 0, 2]
    np.testing.assert_array_equal(sub.vector("item")[0], np.eye(4)[2])
    both = RankData.concat([d, sub])
    assert len(both) == 10 and both.vectors["item"][0] is d.vectors["item"][0]
    with pytest.raises(ValueError, match="groups sum"):
        RankData(X, ["a", "b"], np.array([2]))
    with pytest.raises(ValueError, match="columns name"):
        RankData(X, ["a"], np.array([5]))
    with pytest.raises(ValueError, match="outside its table"):
        RankData(X, ["a", "b"], np.array([5]), vectors={"item": (np.eye(2), np.arange(5))})


def test_registry() -> None:
    reg: Registry = Registry("thing")
    reg.register("a", dict)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", list)
    with pytest.raises(UnknownStageError, match="known: a"):
        reg.get("b")
    reg.register("lazy", "collections:OrderedDict")
    assert type(reg.create("lazy", {"x": 1})).__name__ == "OrderedDict"


def test_user_history_updates() -> None:
    h = UserHistory().fit(_inter(), 3)
    assert h.items(1).tolist() == [20, 21] and h.last_time(1) == 2 and h.n_events(0) == 6
    h.update([Event(1, 99, 0)])  # older than the user's history: still in time order
    h.update([Event(5, 7, 50, EventKind.CLICK)])  # a new user
    assert h.items(1).tolist() == [99, 20, 21]
    assert h.n_users == 6 and h.items(5).tolist() == [7] and h.items(4).tolist() == []
    assert h.lengths().tolist() == [6, 3, 4, 0, 0, 1]
    assert h.last_times().tolist() == [6, 2, 8, -1, -1, 50]
    m = h.seen_matrix(100)
    assert m.shape == (6, 100) and m[5, 7] == 1 and m[1, 99] == 1 and m.nnz == 14
    assert h.last_time(4) is None and h.items(99).tolist() == []
    with pytest.raises(ValueError, match=">= 0"):
        h.update([Event(-1, 3, 0)])


def test_random_window_holds_out_a_share_per_user() -> None:
    spec = WindowSpec(strategy="random", fraction=0.5, min_history=2, seed=3)
    hist, window = window_split(_inter(), spec)
    assert len(hist) + len(window) == 12
    counts = dict(zip(*np.unique(window.user, return_counts=True)))
    assert counts == {0: 3, 2: 2}  # user 1 (2 events) would keep fewer than min_history
    pairs = set(zip(hist.user.tolist(), hist.item.tolist()))
    assert not pairs & set(zip(window.user.tolist(), window.item.tolist()))
    again = window_split(_inter(), spec)[1]
    assert again.item.tolist() == window.item.tolist()  # seeded


def test_random_window_ignores_event_order() -> None:
    # user 0's window must not always be the last events: over seeds every event is held out
    seen = set()
    for seed in range(30):
        _, w = window_split(_inter(), WindowSpec(strategy="random", fraction=0.2, min_history=1, seed=seed))
        seen |= set(w.item[w.user == 0].tolist())
    assert seen == set(range(10, 16))


def test_random_window_folds_are_independent_draws() -> None:
    folds = window_folds(_inter(), WindowSpec(strategy="random", fraction=0.5, min_history=1, repeats=3))
    assert len(folds) == 3
    for hist, window in folds:
        assert len(hist) + len(window) == 12
    assert len({tuple(w.item.tolist()) for _, w in folds}) > 1
