"""Sequence preparation for the sequential models: ordering, the held-out last event,
training windows, padding and truncation."""

from __future__ import annotations

import numpy as np
import pytest

from lmrec.data.dataset import Interactions
from lmrec.models.sequences import IGNORE, PAD, Histories


def _hist(seqs: list[list[int]]) -> Histories:
    users = [u for u, s in enumerate(seqs) for _ in s]
    items = [i for s in seqs for i in s]
    ts = [t for s in seqs for t in range(len(s))]
    return Histories.from_interactions(Interactions(users, items, ts), len(seqs))


def test_order_is_timestamp_then_item_index() -> None:
    inter = Interactions([0, 0, 0, 0, 1], [9, 4, 7, 1, 3], [20, 10, 10, 30, 5])
    h = Histories.from_interactions(inter, n_users=3)
    assert h.of(0).tolist() == [4, 7, 9, 1]  # 4 and 7 tie at t=10: lower item index first
    assert h.of(1).tolist() == [3]
    assert h.of(2).tolist() == []


def test_holdout_last_removes_one_event_per_user_and_skips_repeats() -> None:
    h = _hist([[1, 2, 3], [5], [4, 6, 4], [7, 8]])
    rest, users, targets = h.holdout_last()
    assert [rest.of(u).tolist() for u in range(4)] == [[1, 2], [5], [4, 6], [7]]
    # user 2's last item (4) is already in their history: the evaluator would drop it
    assert users.tolist() == [0, 3] and targets.tolist() == [3, 8]


def test_last_window_is_most_recent_items() -> None:
    h = _hist([list(range(10)), [3, 4], [7]])
    spans = h.windows(max_len=4, mode="last")
    assert [h.items[a:b].tolist() for a, b in spans] == [[5, 6, 7, 8, 9], [3, 4]]


@pytest.mark.parametrize("max_len", [1, 2, 3, 5, 20])
def test_all_windows_predict_every_event_but_the_first_once(max_len: int) -> None:
    seqs = [list(range(100, 111)), [1, 2], [5], list(range(20, 27))]
    h = _hist(seqs)
    spans = h.windows(max_len=max_len, mode="all")
    assert (spans[:, 1] - spans[:, 0] <= max_len + 1).all() and (spans[:, 1] - spans[:, 0] >= 2).all()
    _, targets = h.training_batch(spans)
    predicted = sorted(targets[targets != IGNORE].tolist())
    assert predicted == sorted(i for s in seqs for i in s[1:])


def test_training_batch_is_right_padded_and_shifted() -> None:
    h = _hist([[3, 1, 2], [0, 5]])
    inputs, targets = h.training_batch(h.windows(max_len=5, mode="last"))
    assert inputs.tolist() == [[4, 2], [1, PAD]]  # tokens are index + 1
    assert targets.tolist() == [[1, 2], [5, IGNORE]]


def test_recent_truncates_to_max_len_and_marks_empty_users() -> None:
    h = _hist([[1, 2, 3, 4, 5], [], [9]])
    tokens, lengths = h.recent(np.array([0, 1, 2]), max_len=3)
    assert lengths.tolist() == [3, 0, 1]
    assert tokens.tolist() == [[4, 5, 6], [PAD, PAD, PAD], [10, PAD, PAD]]


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_len"):
        _hist([[1, 2]]).windows(max_len=0)
    with pytest.raises(ValueError, match="window mode"):
        _hist([[1, 2]]).windows(max_len=3, mode="middle")  # type: ignore[arg-type]
    with pytest.raises(IndexError, match="user index"):
        Histories.from_interactions(Interactions([0, 3], [1, 2], [0, 1]), n_users=2)
    with pytest.raises(ValueError, match="indptr"):
        Histories(np.array([0, 3]), np.array([1, 2]))

