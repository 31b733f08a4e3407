"""Random tie-breaking: a scorer that cannot tell items apart must get chance-level results."""

import numpy as np
import pytest

from lmrec.data.dataset import Interactions
from lmrec.data.splits import Split
from lmrec.eval.evaluator import evaluate_scores
from lmrec.testing.toy import toy_dataset


def _split(n_users=400, n_items=50):
    ds = toy_dataset(n_users=n_users, n_items=n_items)
    rng = np.random.default_rng(3)
    users = np.arange(n_users)
    test = Interactions(users, rng.integers(0, n_items, n_users), np.zeros(n_users))
    return Split("t", ds, Interactions.empty(), Interactions.empty(), test)


def test_index_ties_favour_low_ids_random_ties_are_chance():
    split = _split()
    zeros = lambda u: np.zeros((len(u), split.dataset.n_items), dtype=np.float32)  # noqa: E731
    by_index = evaluate_scores(zeros, split, ks=(10,), tie_break="index")
    assert (by_index.recs[:, :10] == np.arange(10)).all()
    rand = evaluate_scores(zeros, split, ks=(10,), tie_break="random", seed=1)
    assert not (rand.recs[:, :10] == np.arange(10)).all()
    # every user gets the same random order; HR@10 = share of test items among those 10 items
    top = set(rand.recs[0, :10].tolist())
    expected = np.mean([i in top for i in split.test.item])
    assert rand.metrics["HR@10"] == pytest.approx(expected)
    other = evaluate_scores(zeros, split, ks=(10,), tie_break="random", seed=2)
    assert set(other.recs[0, :10].tolist()) != top


def test_random_ties_do_not_change_a_strict_ranking():
    split = _split()
    n = split.dataset.n_items
    ranked = lambda u: np.tile(-np.arange(n, dtype=np.float32), (len(u), 1))  # noqa: E731
    a = evaluate_scores(ranked, split, ks=(10,), tie_break="index")
    b = evaluate_scores(ranked, split, ks=(10,), tie_break="random")
    assert np.array_equal(a.recs, b.recs)
    with pytest.raises(ValueError, match="tie_break"):
        evaluate_scores(ranked, split, tie_break="bogus")


def test_cold_start_split_asks_for_random_ties():
    from lmrec.data.splits import cold_start_items
    from lmrec.testing.toy import cold_start_dataset

    split = cold_start_items(cold_start_dataset(), test_fraction=0.05, valid_fraction=0.05)
    assert split.info["tie_break"] == "random"
