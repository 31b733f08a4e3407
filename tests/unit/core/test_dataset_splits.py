"""Data model and split tests on small hand-made data."""

import numpy as np
import pytest

from lmrec.data.dataset import Dataset, IdMap, Interactions, ItemTable, build_dataset
from lmrec.data.splits import (
    cold_start_items, cold_start_random_items, given_split, random_holdout, temporal_leave_one_out,
)
from lmrec.testing.toy import cold_start_dataset
from lmrec.types import Candidates, EventKind, topk_indices


def test_idmap_numeric_order_and_add():
    m = IdMap(["10", "9", "100", "9"])
    assert m.ids == ["9", "10", "100"]
    assert m.index(10) == 1 and m.index("100") == 2
    with pytest.raises(KeyError, match="unknown id '7'"):
        m.index("7")
    assert m.add("7") == 3 and m.index("7") == 3
    assert list(m.indices(["7", "x"], missing=-1)) == [3, -1]


def test_idmap_mixed_ids_are_lexicographic():
    assert IdMap(["b", "a", "10"]).ids == ["10", "a", "b"]


def test_event_kind_parse():
    assert EventKind.parse("Purchase") is EventKind.PURCHASE
    assert EventKind.parse(4) is EventKind.RATING
    with pytest.raises(ValueError, match="unknown event kind 'like'"):
        EventKind.parse("like")


def test_interactions_csr_binarizes_duplicates():
    inter = Interactions([0, 0, 1], [1, 1, 0], [1, 2, 3])
    m = inter.to_csr(2, 3)
    assert m.toarray().tolist() == [[0, 1, 0], [1, 0, 0]]
    assert inter.to_csr(2, 3, binary=False).toarray()[0, 1] == 2


def test_dataset_rejects_out_of_range_indices():
    with pytest.raises(ValueError, match="item index outside"):
        Dataset("bad", IdMap(["a"]), IdMap(["x"]), Interactions([0], [3], [0]))
    with pytest.raises(ValueError, match="item table has 2 rows"):
        Dataset("bad", IdMap(["a"]), IdMap(["x"]), Interactions([0], [0], [0]), item_table=ItemTable.blank(2))


def _ds():
    # user a: items 5, 3 (same time: 3 before 5 by item id), 1 later, then 2, 4
    users = ["a"] * 5 + ["b"] * 2
    items = ["5", "3", "1", "2", "4", "1", "2"]
    ts = [10, 10, 20, 30, 40, 5, 6]
    return build_dataset("t", users, items, ts)


def test_temporal_loo_orders_by_time_then_item_id():
    ds = _ds()
    s = temporal_leave_one_out(ds)
    to_ids = ds.items.to_ids
    assert to_ids(s.test.item) == ["4"]  # only user a has >= 3 events
    assert to_ids(s.valid.item) == ["2"]
    # user a's train order: (10, '3'), (10, '5'), (20, '1'); user b keeps everything in train
    a = ds.users.index("a")
    assert to_ids(s.train.item[s.train.user == a]) == ["3", "5", "1"]
    assert s.info == {"evaluated_users": 1, "skipped_users": 1}
    assert len(s.train) + len(s.valid) + len(s.test) == len(ds.interactions)


def test_temporal_loo_tie_order_is_numeric_not_lexicographic():
    # ids 9 and 10 at the same time: numeric order puts 10 last (test), lexicographic would put 9 last
    ds = build_dataset("t", ["u"] * 3, ["1", "10", "9"], [1, 5, 5])
    s = temporal_leave_one_out(ds)
    assert ds.items.to_ids(s.test.item) == ["10"]
    assert ds.items.to_ids(s.valid.item) == ["9"]


def test_random_holdout_is_per_user_and_seeded():
    inter = Interactions(np.repeat(np.arange(5), 10), np.tile(np.arange(10), 5), np.zeros(50))
    tr, ho = random_holdout(inter, 0.2, seed=1)
    assert len(tr) + len(ho) == 50
    assert np.bincount(ho.user, minlength=5).tolist() == [2] * 5
    tr2, ho2 = random_holdout(inter, 0.2, seed=1)
    assert np.array_equal(ho.item, ho2.item)


def test_given_split_without_valid_carves_one_from_train():
    ds = _ds()
    ds.given_split = {"train": ds.interactions.select(np.arange(5)), "test": ds.interactions.select([5, 6])}
    s = given_split(ds, valid_fraction=0.2)
    assert len(s.valid) == 1 and len(s.train) == 4 and len(s.test) == 2
    with pytest.raises(ValueError, match="no given split"):
        given_split(_ds())


def test_cold_start_split_removes_new_items_from_training():
    ds = cold_start_dataset()
    s = cold_start_items(ds, test_fraction=0.05, valid_fraction=0.05)
    new = set(ds.items.to_ids(s.candidates))
    assert new and new <= {"10", "11"}
    assert not set(s.train_valid.item) & set(s.candidates)
    assert set(s.test.item) <= set(s.candidates)
    assert s.test.timestamp.min() >= s.info["test_cutoff"]


def test_cold_start_random_split_holds_out_items_entirely():
    ds = cold_start_dataset()
    s = cold_start_random_items(ds, test_fraction=0.2, valid_fraction=0.1, seed=3)
    test_items, valid_items = set(s.candidates.tolist()), set(s.info["valid_candidates"].tolist())
    active = set(np.unique(ds.interactions.item).tolist())
    assert test_items and valid_items and not test_items & valid_items
    assert len(test_items) == round(0.2 * len(active)) and len(valid_items) == round(0.1 * len(active))
    assert not set(s.train.item.tolist()) & (test_items | valid_items)
    assert set(s.valid.item.tolist()) <= valid_items and set(s.test.item.tolist()) <= test_items
    # every evaluated user has a history; no held-out event is lost except for users without one
    assert set(s.valid.user.tolist()) <= set(s.train.user.tolist())
    assert set(s.test.user.tolist()) <= set(s.train_valid.user.tolist())
    held = np.isin(ds.interactions.item, list(test_items))
    with_history = np.isin(ds.interactions.user, s.train_valid.user)
    assert len(s.test) == int((held & with_history).sum())
    again = cold_start_random_items(ds, test_fraction=0.2, valid_fraction=0.1, seed=3)
    assert again.candidates.tolist() == s.candidates.tolist()
    assert cold_start_random_items(ds, seed=4).candidates.tolist() != s.candidates.tolist()
    with pytest.raises(ValueError, match="test_fraction"):
        cold_start_random_items(ds, test_fraction=0.7, valid_fraction=0.4)


def test_topk_ties_and_candidates():
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0]], dtype=np.float32)
    assert topk_indices(scores, 2).tolist() == [[1, 2]]
    assert topk_indices(scores, 10).tolist() == [[1, 2, 4, 3, 0]]
    c = Candidates.from_scores(scores[0], 3, source="x", exclude=np.array([1]))
    assert c.items.tolist() == [2, 4, 3] and c.sources == [("x",)] * 3
    assert c.top(1).items.tolist() == [2]
    with pytest.raises(ValueError):
        Candidates(np.array([1, 2]), np.array([1.0]))


def test_settings_name_a_misspelt_key(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import pytest

    from lmrec.serving.config import ServiceConfig
    from lmrec.settings import SettingsError, load_settings

    monkeypatch.chdir(tmp_path)
    (tmp_path / "lmrec.toml").write_text('prot = 9000\n[engine]\nhome = "shop"\nconfgi = "ml-100k"\n')
    with pytest.raises(SettingsError) as e:
        load_settings(ServiceConfig)
    assert "prot" in str(e.value) and "engine.confgi" in str(e.value) and "lmrec.toml" in str(e.value)
    (tmp_path / "lmrec.toml").write_text('port = 9000\n[engine]\nhome = "shop"\nconfig = "ml-100k"\n')
    cfg = load_settings(ServiceConfig)
    assert cfg.port == 9000 and cfg.engine.config == "ml-100k"
    monkeypatch.setenv("LMREC_ENGINE__CONFIG", "serve-default")  # the environment wins over the file
    assert load_settings(ServiceConfig).engine.config == "serve-default"
