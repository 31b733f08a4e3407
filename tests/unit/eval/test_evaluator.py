"""The full-ranking evaluator: masking, truth filtering, candidates, batching, ties, and the
checkerboard data set where the right answer is known."""

import json
import math

import numpy as np
import pytest

from lmrec.data.dataset import Dataset, IdMap, Interactions
from lmrec.data.splits import Split, temporal_leave_one_out
from lmrec.eval.evaluator import EvalResult, evaluate, evaluate_scores
from lmrec.recall.base import Recommender
from lmrec.recall.popular import MostPopular
from lmrec.testing.checkerboard import checkerboard_split, item_groups, user_groups
from lmrec.testing.toy import toy_dataset


def _inter(pairs):
    u = [p[0] for p in pairs]
    i = [p[1] for p in pairs]
    return Interactions(np.array(u, dtype=np.int64), np.array(i, dtype=np.int64), np.arange(len(pairs)))


def small_split(candidates=None, valid_candidates=None) -> Split:
    """4 users, 8 items.

    train: u0 {0, 1}, u1 {2}, u2 {0}, u3 {5};  valid: u0 {2}, u1 {3}
    test:  u0 {3, 3 (repeat), 1 (also in train)}, u1 {2 (in train)}, u2 {4}, u3 {7}
    """
    train = _inter([(0, 0), (0, 1), (1, 2), (2, 0), (3, 5)])
    valid = _inter([(0, 2), (1, 3)])
    test = _inter([(0, 3), (0, 3), (0, 1), (1, 2), (2, 4), (3, 7)])
    ds = Dataset("small", IdMap([f"u{i}" for i in range(4)], sort=False), IdMap(range(8)),
                 Interactions.concat([train, valid, test]))
    info = {} if valid_candidates is None else {"valid_candidates": np.asarray(valid_candidates)}
    return Split("hand", ds, train, valid, test, candidates=candidates, info=info)


class LowIndexFirst:
    """Scores item i as -i: lower item indices rank first, no ties."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items

    def score(self, users):
        return np.broadcast_to(-np.arange(self.n_items, dtype=np.float32), (len(users), self.n_items))


class FixedScores(Recommender):
    """A Recommender whose scores are -item index, whatever it was fitted on."""

    name = "fixed"

    def _fit(self, matrix, train, dataset):
        pass

    def _score(self, users):
        return np.tile(-np.arange(self.n_items, dtype=np.float32), (len(users), 1))


def test_masking_and_truth_filtering():
    split = small_split()
    res = evaluate(LowIndexFirst(8), split, stage="test", ks=(10,))
    # u1's only test item is in train -> no truth -> skipped; u3's item 7 is fine
    assert res.users.tolist() == [0, 2, 3]
    assert res.info["truth_dropped_seen"] == 2  # u0 item 1 and u1 item 2
    assert res.info["truth_items"] == 3  # u0 {3} (repeat removed), u2 {4}, u3 {7}
    assert res.info["users_evaluated"] == 3 and res.info["users_with_stage_events"] == 4
    seen = {0: {0, 1, 2}, 2: {0}, 3: {5}}
    for row, u in enumerate(res.users):
        assert not seen[u] & set(res.recs[row].tolist())
    # u0 list: 3 4 5 6 7 -> truth {3} at rank 1; u2: 1 2 3 4 -> rank 4; u3: 0 1 2 3 4 6 7 -> rank 7
    np.testing.assert_allclose(res.per_user["NDCG@10"], [1, 1 / math.log2(5), 1 / math.log2(8)])
    np.testing.assert_allclose(res.per_user["MRR@10"], [1, 1 / 4, 1 / 7])
    assert res.recs[0].tolist() == [3, 4, 5, 6, 7, -1, -1, -1, -1, -1]  # 8 items - 3 seen = 5 left
    assert np.isneginf(res.scores[0, 5:]).all() and res.scores[0, 0] == -3
    # Precision divides by K even for a padded list
    assert res.per_user["Precision@10"][0] == pytest.approx(0.1)


def test_candidates_restrict_ranking_and_truth():
    split = small_split(candidates=np.array([6, 3, 4]))
    res = evaluate(LowIndexFirst(8), split, stage="test", ks=(10,))
    # u3's item 7 is not a candidate -> dropped from truth, u3 skipped
    assert res.users.tolist() == [0, 2]
    # u0's item 1, u1's item 2 and u3's item 7 are outside the candidates (checked before "seen")
    assert res.info["truth_dropped_not_candidate"] == 3 and res.info["truth_dropped_seen"] == 0
    assert res.recs[0].tolist()[:4] == [3, 4, 6, -1]
    assert set(res.recs[res.recs >= 0].tolist()) <= {3, 4, 6}
    assert res.metrics["coverage@10"] == pytest.approx(1.0)  # all 3 candidates appear
    assert res.metrics["HR@10"] == 1.0


def test_valid_stage_masks_train_only_and_uses_valid_candidates():
    res = evaluate(LowIndexFirst(8), small_split(), stage="valid", ks=(10,))
    # u0: seen {0, 1}, list 2 3 ..., valid item 2 at rank 1; u1: seen {2}, list 0 1 3 -> rank 3
    assert res.users.tolist() == [0, 1]
    np.testing.assert_allclose(res.per_user["MRR@10"], [1, 1 / 3])
    res = evaluate(LowIndexFirst(8), small_split(valid_candidates=[3, 7]), stage="valid", ks=(10,))
    assert res.users.tolist() == [1] and res.recs[0].tolist()[:3] == [3, 7, -1]
    with pytest.raises(ValueError, match="stage"):
        evaluate(LowIndexFirst(8), small_split(), stage="train")


def test_model_fitted_on_held_out_data_is_refused():
    split = small_split()
    leaky = FixedScores().fit(split.train_valid, split.dataset)
    with pytest.raises(ValueError, match="contains the valid interactions"):
        evaluate(leaky, split, stage="valid")
    with pytest.warns(UserWarning, match="right part of the split"):
        evaluate(FixedScores().fit(split.train, split.dataset), split, stage="test")
    ok = evaluate(FixedScores().fit(split.train_valid, split.dataset), split, stage="test")
    assert ok.users.tolist() == [0, 2, 3]


class HashScores:
    """Deterministic coarse scores per (user, item), many ties; independent of the batch."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items

    def score(self, users):
        u = np.asarray(users)[:, None]
        return (((u * 7919 + np.arange(self.n_items) * 104729) % 13) / 13).astype(np.float32)


def test_batch_size_invariance():
    split = temporal_leave_one_out(toy_dataset())
    cats = split.dataset.item_table.categories
    runs = [evaluate(HashScores(split.dataset.n_items), split, batch_size=b, item_categories=cats)
            for b in (1, 7, 1000)]
    for r in runs[1:]:
        assert np.array_equal(r.users, runs[0].users)
        assert np.array_equal(r.recs, runs[0].recs)
        assert r.metrics == runs[0].metrics
        for k, v in r.per_user.items():
            assert np.array_equal(v, runs[0].per_user[k]), k


def test_ties_go_to_the_lower_item_index():
    split = temporal_leave_one_out(toy_dataset())
    n = split.dataset.n_items
    res = evaluate(lambda users: np.zeros((len(users), n), np.float32), split, ks=(10,))
    seen = split.train_valid.to_csr(split.dataset.n_users, n)
    for row, u in enumerate(res.users):
        unseen = np.setdiff1d(np.arange(n), seen[u].indices)
        assert res.recs[row].tolist() == unseen[:10].tolist()


def test_matches_a_per_user_reference_implementation():
    split = temporal_leave_one_out(toy_dataset(seed=3))
    ds = split.dataset
    model = MostPopular().fit(split.train_valid, ds)
    res = evaluate(model, split, ks=(5, 10), batch_size=16)
    seen = split.train_valid.to_csr(ds.n_users, ds.n_items)
    pop = model.popularity
    for row, u in enumerate(res.users):
        s = set(seen[u].indices.tolist())
        truth = set(split.test.item[split.test.user == u].tolist()) - s
        ranking = sorted((i for i in range(ds.n_items) if i not in s), key=lambda i: (-pop[i], i))[:10]
        ranks = [r + 1 for r, i in enumerate(ranking) if i in truth]
        dcg = sum(1 / math.log2(r + 1) for r in ranks)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(truth), 10)))
        assert res.recs[row].tolist() == ranking
        assert res.per_user["NDCG@10"][row] == pytest.approx(dcg / idcg)
        assert res.per_user["HR@10"][row] == (1.0 if ranks else 0.0)
        assert res.per_user["MRR@10"][row] == pytest.approx(1 / ranks[0] if ranks else 0.0)
        assert res.per_user["Recall@10"][row] == pytest.approx(len(ranks) / len(truth))
        assert res.per_user["Precision@5"][row] == pytest.approx(sum(r <= 5 for r in ranks) / 5)
    assert res.metrics["HR@10"] == pytest.approx(res.per_user["HR@10"].mean())


class Oracle(Recommender):
    """Knows the checkerboard: own-group items score 1, others 0 (`flip` does the opposite)."""

    name = "oracle"

    def __init__(self, flip: bool = False) -> None:
        super().__init__()
        self.flip = flip

    def _fit(self, matrix, train, dataset):
        g = dataset.info["n_groups"]
        self.ug, self.ig = user_groups(dataset.n_users, g), item_groups(dataset.n_items, g)

    def _score(self, users):
        same = self.ug[users][:, None] == self.ig[None, :]
        return (same != self.flip).astype(np.float32)


@pytest.mark.parametrize("n_groups", [2, 3])
def test_checkerboard_oracle_and_anti_oracle(n_groups):
    split = checkerboard_split(users_per_group=10, items_per_group=15, n_groups=n_groups)
    ds = split.dataset
    # every test and validation item belongs to the user's group
    assert (split.info["item_group"][split.test.item] == split.info["user_group"][split.test.user]).all()
    oracle = evaluate(Oracle().fit(split.train_valid, ds), split, ks=(1, 10))
    assert len(oracle.users) == ds.n_users
    assert oracle.metrics["HR@1"] == 1.0 and oracle.metrics["NDCG@10"] == 1.0
    anti = evaluate(Oracle(flip=True).fit(split.train_valid, ds), split, ks=(10,))
    assert anti.metrics["HR@10"] == 0.0 and anti.metrics["NDCG@10"] == 0.0
    # validation: the test item is still unmasked, so the valid item is in the top 2
    val = evaluate(Oracle().fit(split.train, ds), split, stage="valid", ks=(2,))
    assert val.metrics["HR@2"] == 1.0


def test_result_row_se_and_save_recs(tmp_path):
    split = temporal_leave_one_out(toy_dataset())
    ds = split.dataset
    res = evaluate(MostPopular().fit(split.train_valid, ds), split, item_categories=ds.item_table.categories)
    assert {"ILD@10", "novelty@10", "coverage@20", "Recall@20", "Precision@10"} <= set(res.metrics)
    v = res.per_user["NDCG@10"]
    assert res.se("NDCG@10") == pytest.approx(v.std(ddof=1) / math.sqrt(len(v)))
    with pytest.raises(KeyError, match="catalog-level"):
        res.se("coverage@10")
    row = res.row(dataset="toy", split=split.name, model="popular", params={}, fit_s=0.1, seeds=1)
    assert list(row)[:4] == ["dataset", "split", "model", "params"]
    assert row["NDCG@10_se"] == pytest.approx(res.se("NDCG@10"), abs=1e-6)
    assert "HR@10_se" in row and row["users"] == len(res.users) and row["fit_s"] == 0.1
    json.dumps(row)  # plain JSON types only

    path = res.save_recs(tmp_path / "recs" / "top5.jsonl", ds, 5)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == len(res.users)
    first = lines[0]
    assert first["user"] == ds.users.ids[res.users[0]]
    assert first["items"] == ds.items.to_ids(res.recs[0, :5])
    assert first["scores"] == pytest.approx(res.scores[0, :5].tolist())

    lean = evaluate(MostPopular().fit(split.train_valid, ds), split, keep_recs=False)
    assert lean.recs is None and lean.metrics == {k: v for k, v in res.metrics.items() if "ILD" not in k}
    with pytest.raises(ValueError, match="keep_recs"):
        lean.save_recs(tmp_path / "x.jsonl", ds)


def test_any_scorer_shape_check_nan_and_progress():
    split = small_split()
    fn = lambda users: np.tile(-np.arange(8, dtype=np.float64), (len(users), 1))  # noqa: E731
    a = evaluate_scores(fn, split, ks=(10,))
    b = evaluate(fn, split, ks=(10,), progress=True)
    assert a.metrics == b.metrics and isinstance(a, EvalResult)
    with pytest.raises(ValueError, match="shape"):
        evaluate(lambda users: np.zeros((len(users), 3)), split)

    def with_nan(users):
        s = np.tile(-np.arange(8, dtype=np.float32), (len(users), 1))
        s[:, 3] = np.nan  # an item the scorer cannot score is never recommended
        return s

    res = evaluate(with_nan, split, ks=(10,))
    assert 3 not in res.recs and res.per_user["HR@10"][0] == 0.0


def test_no_user_to_evaluate_warns():
    split = small_split(candidates=np.array([6]))
    with pytest.warns(UserWarning, match="no user"):
        res = evaluate(LowIndexFirst(8), split)
    assert len(res.users) == 0 and math.isnan(res.metrics["HR@10"]) and res.per_user["HR@10"].shape == (0,)
