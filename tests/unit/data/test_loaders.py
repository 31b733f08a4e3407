"""Registered data set loaders: counts from each PROVENANCE.md, splits, metadata, errors."""

from __future__ import annotations

import numpy as np
import pytest

from lmrec.data.loaders import (
    DATASETS, FAQ_SETS, INTERACTION_DATASETS, RELEVANCE_SETS, dataset_folder, load_dataset, load_relevance,
)
from lmrec.data.loaders.amazon import split_item_text


def test_registry_names_and_folders(tmp_path):
    assert set(INTERACTION_DATASETS) == {"ml-100k", "ml-latest-small", "ml-1m", "amazon-scientific"}
    assert set(RELEVANCE_SETS) == {"homedepot", "qbqtc"}
    assert set(FAQ_SETS) == {"bitext-faq"}
    assert set(DATASETS) == set(INTERACTION_DATASETS) | set(RELEVANCE_SETS) | set(FAQ_SETS)
    assert dataset_folder("ml-1m", tmp_path) == tmp_path / "movielens-1m"
    assert dataset_folder("qbqtc", tmp_path).name == "qbqtc-zh-search-relevance"


def test_missing_folder_message(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError) as e:
        load_dataset("ml-100k", tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "movielens-100k") in msg and "LMREC_DATA_DIR" in msg
    assert "lmrec data download ml-100k" in msg
    with pytest.raises(FileNotFoundError) as e:
        load_relevance("homedepot", tmp_path)
    assert "homedepot-search-relevance" in str(e.value) and "download" not in str(e.value)
    monkeypatch.setenv("LMREC_DATA_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(FileNotFoundError, match="elsewhere/movielens-1m"):
        load_dataset("ml-1m")


def test_missing_file_inside_folder(tmp_path):
    (tmp_path / "movielens-100k").mkdir()
    (tmp_path / "movielens-100k" / "u.data").write_text("1\t1\t5\t1\n")
    with pytest.raises(FileNotFoundError, match="missing file.*u.item"):
        load_dataset("ml-100k", tmp_path)


def test_wrong_kind_and_unknown_name(tmp_path):
    for name in ("homedepot", "ml-1m"):
        (tmp_path / DATASETS[name].folder).mkdir()
    with pytest.raises(ValueError, match="use load_relevance"):
        load_dataset("homedepot", tmp_path)
    with pytest.raises(ValueError, match="use load_dataset"):
        load_relevance("ml-1m", tmp_path)
    with pytest.raises(ValueError, match="unknown data set 'ml-20m'"):
        load_dataset("ml-20m", tmp_path)


@pytest.mark.parametrize("text, expected", [
    ("PORTER-CABLE Sanding Roll. Industrial & Scientific Abrasive & Finishing Products Manual Sanding "
     "Products Sanding Rolls. PORTER-CABLE. ",
     ("PORTER-CABLE Sanding Roll", ["Industrial & Scientific", "Abrasive & Finishing Products"],
      "Manual Sanding Products Sanding Rolls", "PORTER-CABLE")),
    ("Mr. Heater Kit 3/8. Industrial & Scientific Hydraulics, Pneumatics & Plumbing Fittings. Mr. Heater. ",
     ("Mr. Heater Kit 3/8", ["Industrial & Scientific", "Hydraulics, Pneumatics & Plumbing"], "Fittings",
      "Mr. Heater")),
    ("TPI Exhaust Fan, 120 Volt. . TPI. ", ("TPI Exhaust Fan, 120 Volt", [], "", "TPI")),
    ("Glue. Industrial & Scientific Unheard Of Department. Acme. ",
     ("Glue", ["Industrial & Scientific"], "Unheard Of Department", "Acme")),
    ("Just a title. and some words", ("Just a title", [], "and some words", "")),
])
def test_split_amazon_item_text(text, expected):
    assert split_item_text(text) == expected


@pytest.mark.shared_data("ml-100k")
def test_ml100k(shared_data_dir):
    ds = load_dataset("ml-100k", shared_data_dir)
    s = ds.summary()
    assert (s["users"], s["items"], s["interactions"]) == (943, 1682, 100_000)
    assert s["event_kinds"] == {"rating": 100_000} and ds.has_timestamps
    inter = ds.interactions
    assert sorted(np.unique(inter.value).tolist()) == [1, 2, 3, 4, 5]
    row = np.flatnonzero((inter.user == ds.users.index("196")) & (inter.item == ds.items.index("242")))
    assert len(row) == 1 and inter.value[row[0]] == 3 and inter.timestamp[row[0]] == 881250949
    assert ds.items.ids[:3] == ["1", "2", "3"] and ds.items.ids[-1] == "1682"
    t = ds.item_table
    assert t.title[0] == "Toy Story (1995)"
    assert t.categories[0] == ["Animation", "Children's", "Comedy"]
    assert t.attributes["release_date"][0] == "01-Jan-1995" and t.created_at[0] == 788918400
    assert (t.created_at == -1).sum() == 1  # one movie has no release date
    assert ds.user_attributes["occupation"][ds.users.index("1")] == "technician"
    assert ds.user_attributes["age"][ds.users.index("2")] == 53
    g = ds.given_split
    assert set(g) == {"train", "test"} and (len(g["train"]), len(g["test"])) == (90_570, 9_430)
    assert np.all(np.bincount(g["test"].user, minlength=943) == 10)


@pytest.mark.shared_data("ml-latest-small")
def test_ml_latest_small(shared_data_dir):
    ds = load_dataset("ml-latest-small", shared_data_dir)
    s = ds.summary()
    assert (s["users"], s["items"], s["interactions"]) == (610, 9742, 100_836)
    assert s["items_with_events"] == 9724 and ds.given_split is None
    assert ds.interactions.value.min() == 0.5 and ds.interactions.value.max() == 5.0
    t = ds.item_table
    toy = ds.items.index("1")
    assert t.title[toy] == "Toy Story (1995)" and "Animation" in t.categories[toy]
    assert "pixar" in t.text["tags"][toy] and t.attributes["imdb_id"][toy] == "0114709"
    assert t.attributes["year"][toy] == 1995
    assert sum(1 for c in t.categories if not c) == 34  # "(no genres listed)"
    assert "(no genres listed)" not in {g for c in t.categories for g in c}


@pytest.mark.shared_data("ml-1m")
def test_ml1m(shared_data_dir):
    ds = load_dataset("ml-1m", shared_data_dir)
    s = ds.summary()
    assert (s["users"], s["items"], s["interactions"]) == (6040, 3260, 998_539)
    assert not ds.has_timestamps and s["event_kinds"] == {"view": 998_539}
    g = ds.given_split
    assert (len(g["train"]), len(g["test"])) == (801_218, 197_321)
    # user 1 (processed idx 0) starts with movie 1193 (processed idx 0) in train.txt
    u1 = ds.interactions.per_user(ds.n_users)[ds.users.index("1")]
    assert ds.items.ids[u1[0]] == "1193"
    # test positions continue after the user's train positions
    tr, te = g["train"], g["test"]
    u = ds.users.index("1")
    assert te.timestamp[te.user == u].min() == tr.timestamp[tr.user == u].max() + 1
    pairs = ds.interactions.user * ds.n_items + ds.interactions.item
    assert len(np.unique(pairs)) == 998_539
    t = ds.item_table
    assert t.title[ds.items.index("1")] == "Toy Story (1995)" and all(t.title)
    ua = ds.user_attributes
    assert (ua["gender"][u], ua["age"][u], ua["occupation"][u]) == ("F", 1, "K-12 student")


@pytest.mark.shared_data("amazon-scientific")
def test_amazon_scientific(shared_data_dir):
    ds = load_dataset("amazon-scientific", shared_data_dir)
    s = ds.summary()
    assert (s["users"], s["items"], s["interactions"]) == (8442, 4385, 59_384)
    assert not ds.has_timestamps and s["event_kinds"] == {"purchase": 59_384}
    g = ds.given_split
    assert (len(g["valid"]), len(g["test"])) == (8442, 8442)
    assert len(g["train"]) == 59_384 - 2 * 8442
    assert ds.info["truncated_users"] == 3 and ds.info["inconsistent_valid"] == 0
    # user 0 of the processed files: items 0..12 then test target 13 (valid target 12)
    u = ds.users.index("ABW8NXS7SV55K")
    seq = ds.interactions.per_user(ds.n_users)[u]
    assert len(seq) == 14 and ds.items.ids[seq[0]] == "B00TNNWMXI"
    assert g["test"].item[g["test"].user == u][0] == seq[-1]
    assert g["valid"].item[g["valid"].user == u][0] == seq[-2]
    t = ds.item_table
    assert all(t.text["full_text"]) and sum(bool(x) for x in t.title) == 4385
    i = ds.items.index("B0000223SI")
    assert t.attributes["brand"][i] == "PORTER-CABLE"
    assert t.categories[i] == ["Industrial & Scientific", "Abrasive & Finishing Products"]


@pytest.mark.shared_data("homedepot")
def test_homedepot(shared_data_dir):
    rs = load_relevance("homedepot", shared_data_dir)
    s = rs.summary()
    assert (s["judgments"], s["queries"], s["items"]) == (74_067, 11_795, 54_667)
    assert s["grade_range"] == [1.0, 3.0] and rs.grade.dtype == np.float32
    q = rs.queries.index("angle bracket")
    items, grades = rs.judged(q)
    assert "100001" in rs.items.to_ids(items)
    assert rs.item_text[rs.items.index("100001")] == "Simpson Strong-Tie 12-Gauge Angle"
    assert s["judgments_per_query"]["max"] == 16


@pytest.mark.shared_data("qbqtc")
def test_qbqtc(shared_data_dir):
    rs = load_relevance("qbqtc", shared_data_dir)
    s = rs.summary()
    assert s["judgments"] == 25_000 and s["parts"] == {"dev": 20_000, "test": 5_000}
    assert s["grade_counts"] == {"0": 4894 + 1209, "1": 12592 + 3159, "2": 2514 + 632}
    assert rs.queries[rs.query_idx[0]] == "小孩咳嗽感冒"
    assert rs.item_text[rs.item_idx[0]].startswith("小孩感冒过后久咳嗽")
    train, test = rs.query_split(0.2, seed=1)
    assert len(train) + len(test) == 25_000 and not set(train.queries) & set(test.queries)
