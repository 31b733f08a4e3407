"""Popularity bias and user-group metrics: definitions, the evaluator's figures, the reports."""

import numpy as np
import pytest
import scipy.sparse as sp

from lmrec.data.splits import temporal_leave_one_out
from lmrec.eval import fairness as F
from lmrec.eval import report
from lmrec.eval.evaluator import evaluate
from lmrec.recall.popular import MostPopular
from lmrec.testing.toy import toy_dataset


def test_head_is_the_top_share_ties_low_index_never_unseen():
    pop = np.array([3, 7, 3, 0, 1, 0, 0, 0, 0, 0])
    assert np.flatnonzero(F.head_items(pop, 0.2)).tolist() == [0, 1]  # ceil(2): 7, then 3 at index 0
    assert np.flatnonzero(F.head_items(pop, 0.3)).tolist() == [0, 1, 2]
    # 60% would be 6 items, but only 4 were ever seen
    assert np.flatnonzero(F.head_items(pop, 0.6)).tolist() == [0, 1, 2, 4]
    assert not F.head_items(np.zeros(5)).any()
    with pytest.raises(ValueError):
        F.head_items(pop, 1.5)


def test_item_popularity_counts_distinct_users():
    m = sp.csr_matrix((np.ones(4), ([0, 0, 1, 1], [2, 2, 2, 0])), shape=(2, 4))  # a duplicate (0, 2)
    assert F.item_popularity(m).tolist() == [1, 0, 2, 0]
    assert F.item_popularity(m, n_items=6).tolist() == [1, 0, 2, 0, 0, 0]


def test_gini_extremes_and_known_value():
    n = 8
    even = np.arange(n).reshape(4, 2)  # every item shown once
    assert F.exposure_gini(even, n) == pytest.approx(0.0)
    one = np.zeros((5, 1), np.int64)  # one item takes every slot
    assert F.exposure_gini(one, n) == pytest.approx((n - 1) / n)
    # counts [2, 1, 0, 1]: sorted [0, 1, 1, 2], sum 4 -> (-3*0 - 1*1 + 1*1 + 3*2) / (4*4)
    assert F.exposure_gini(np.array([[0, 1], [0, 3]]), 4) == pytest.approx(6 / 16)
    # over an explicit candidate set: item 5 is not rankable, so not counted
    assert F.exposure_gini(np.array([[0], [2]]), np.array([0, 2])) == pytest.approx(0.0)
    assert np.isnan(F.exposure_gini(np.full((2, 3), -1), 4))


def test_long_tail_share_counts_filled_slots_only():
    head = np.array([True, True, False, False])
    recs = np.array([[0, 2, -1], [3, 1, 2]])  # 5 filled slots, 3 of them tail
    assert F.long_tail_share(recs, head) == pytest.approx(3 / 5)
    assert F.long_tail_share(recs, head, k=1) == pytest.approx(1 / 2)
    assert F.long_tail_share(np.array([[9]]), head) == 1.0  # an item newer than the head: tail


def test_activity_deciles_equal_sizes_and_order():
    rng = np.random.default_rng(0)
    act = rng.integers(1, 300, 1000)
    labels, ranges = F.activity_deciles(act)
    sizes = [int((labels == f"d{d}").sum()) for d in range(1, 11)]
    assert sizes == [100] * 10
    means = [act[labels == f"d{d}"].mean() for d in range(1, 11)]
    assert means == sorted(means)
    assert ranges[0].startswith(str(act.min())) and ranges[-1].endswith(str(act.max()))


@pytest.mark.parametrize("age,band", [(1, "under 18"), (7, "under 18"), (18, "18-24"), (24, "18-24"),
                                      (25, "25-34"), (45, "45-49"), (50, "50-55"), (56, "56+"), (73, "56+"),
                                      (None, None), ("", None), (float("nan"), None)])
def test_age_bands(age, band):
    assert F.age_band(age) == band


@pytest.fixture(scope="module")
def split():
    ds = toy_dataset(n_users=120, n_items=50, events_per_user=10, seed=4)
    ds.user_attributes = {"gender": ["F" if u % 3 else "M" for u in range(ds.n_users - 5)],
                          "age": [None if u == 2 else 15 + u % 50 for u in range(ds.n_users)]}
    return temporal_leave_one_out(ds)


def test_popularity_ranking_has_no_long_tail_without_masking():
    sp_ = temporal_leave_one_out(toy_dataset(n_users=120, n_items=200, events_per_user=3, seed=4))
    model = MostPopular().fit(sp_.train_valid, sp_.dataset)
    res = evaluate(model, sp_, stage="test", ks=(5,))
    # users saw 2 items: the 5 most popular unseen items are all within the 40-item head
    assert res.metrics["longtail@5"] == 0.0
    assert res.metrics["gini@5"] > 0.9
    assert res.info["head_items"] == 40  # 20% of 200


def test_random_ranking_is_mostly_tail_and_fairer(split):
    rng = np.random.default_rng(0)
    res = evaluate(lambda users: rng.random((len(users), split.dataset.n_items)), split, stage="test")
    assert 0.6 < res.metrics["longtail@10"] < 0.95
    pop = evaluate(MostPopular().fit(split.train_valid, split.dataset), split, stage="test")
    assert pop.metrics["longtail@10"] < 0.5 * res.metrics["longtail@10"]
    assert res.metrics["gini@10"] < pop.metrics["gini@10"]


def test_long_tail_share_matches_a_direct_count(split):
    """The evaluator's figure equals a count over its own lists and the train-valid popularity."""
    rng = np.random.default_rng(1)
    res = evaluate(lambda users: rng.random((len(users), split.dataset.n_items)), split, stage="valid")
    counts = np.zeros(split.dataset.n_items)
    for u, i in set(zip(split.train.user.tolist(), split.train.item.tolist())):
        counts[i] += 1
    head = set(np.lexsort((np.arange(len(counts)), -counts))[:10].tolist())
    slots = [int(i) for i in res.recs[:, :10].ravel() if i >= 0]
    assert res.metrics["longtail@10"] == pytest.approx(np.mean([i not in head for i in slots]))


def test_groups_partition_the_users(split):
    model = MostPopular().fit(split.train_valid, split.dataset)
    res = evaluate(model, split, stage="test")
    assert set(res.groups) == {"activity", "gender", "age"}
    n = len(res.users)
    overall = res.metrics["NDCG@10"]
    act = res.groups["activity"]
    assert [g["group"] for g in act] == [f"d{d}" for d in range(1, 11)]
    assert sum(g["users"] for g in act) == n
    # the users-weighted mean of the group means is the overall mean
    assert sum(g["users"] * g["NDCG@10"] for g in act) / n == pytest.approx(overall, abs=1e-5)
    gender = {g["group"]: g["users"] for g in res.groups["gender"]}
    # the last 5 users have no gender: they are left out of that grouping
    known = [u for u in res.users if u < split.dataset.n_users - 5]
    assert sum(gender.values()) == len(known)
    assert gender["M"] == sum(1 for u in known if u % 3 == 0)
    ages = [g["group"] for g in res.groups["age"]]
    assert ages == [b for _, b in F.AGE_BANDS if b in ages]  # band order, not alphabetical
    row = res.row(dataset="toy", model="popular")
    assert row["groups"]["activity"][0]["NDCG@10"] == act[0]["NDCG@10"]
    assert "gini@10" in row and "longtail@10" in row


def test_no_attributes_gives_activity_only():
    sp_ = temporal_leave_one_out(toy_dataset(n_users=40, seed=2))
    res = evaluate(MostPopular().fit(sp_.train_valid, sp_.dataset), sp_, stage="test")
    assert list(res.groups) == ["activity"]


def test_reports_show_fairness_tables_that_fit(split, tmp_path, monkeypatch):
    monkeypatch.setattr(report, "machine_description", lambda: "2 cores, no GPU")
    rows = []
    for name, scorer in [("popular", MostPopular().fit(split.train_valid, split.dataset)),
                         ("random", lambda u: np.random.default_rng(0).random((len(u), split.dataset.n_items)))]:
        res = evaluate(scorer, split, stage="test")
        rows.append(res.row(dataset="toy", split="temporal-loo", model=name, params={}))
    _, md = report.write_results("fair", rows, "cmd", out_dir=tmp_path)
    text = md.read_text()
    assert "## Popularity bias" in text
    assert "| model | NDCG@10 | coverage@10 | gini@10 | longtail@10 |" in text
    assert f"| popular | {rows[0]['NDCG@10']:.4f} |" in text
    assert "| activity | range | users | NDCG@10 popular | NDCG@10 random |" in text
    assert "### NDCG@10 by gender" in text and "### NDCG@10 by age" in text
    from rich.console import Console

    con = Console(width=80, record=True)
    for t in report.rich_tables(rows, width=80) + report.fairness_rich_tables(rows):
        con.print(t)
    lines = con.export_text().splitlines()
    assert max(len(ln) for ln in lines) <= 80
    assert not any("…" in ln for ln in lines), "a cell was cut to fit"
    assert report.fairness_markdown([{"model": "x", "NDCG@10": 0.1}]) == ""


def test_group_tables_per_data_set_and_transposed_for_many_rows(split):
    pop = MostPopular().fit(split.train_valid, split.dataset)
    res = evaluate(pop, split, stage="test")
    base = res.row(dataset="toy", model="popular")
    rows = [dict(base, label=f"run {j}") for j in range(3)]
    other = dict(base, dataset="other", label="elsewhere")
    other["groups"] = {"activity": [dict(g, users=g["users"] * 2) for g in base["groups"]["activity"]]}
    text = report.fairness_markdown(rows + [other])
    assert "### toy: NDCG@10 by activity" in text and "### other: NDCG@10 by activity" in text
    assert "### other: NDCG@10 by gender" not in text  # that data set has no gender groups
    toy = text.split("### toy: NDCG@10 by activity")[1].split("###")[0]
    assert "| NDCG@10 by activity | d1 | d2 |" in toy  # three rows: one line per run
    assert f"| run 0 | {base['groups']['activity'][0]['NDCG@10']:.4f} |" in toy
    users = [str(g["users"]) for g in base["groups"]["activity"]]
    assert "| users | " + " | ".join(users) + " |" in toy
    oth = text.split("### other: NDCG@10 by activity")[1].split("###")[0]
    first = base["groups"]["activity"][0]
    assert f"| d1 | {first['about']} | {2 * first['users']} |" in oth  # one row: a line per group
