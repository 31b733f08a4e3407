"""Data sets of one's own through a data-set spec (issue 16, item 1): every split method, the
errors naming file and field, and the CLI commands reading a spec."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lmrec.cli.main import app
from lmrec.data.cleaning import DataError
from lmrec.data.loaders import load_dataset, load_dataset_path
from lmrec.data.spec import load_spec
from lmrec.eval.experiment import make_split, run_experiment

GENRES = ("shoes", "jackets", "bags")


def _write(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture()
def shop(tmp_path: Path) -> Path:
    """A small shop: 45 products in 3 categories, 60 customers who mostly buy in one category,
    times interleaved across customers, a fold column (train / test) and next-item rows."""
    rng = np.random.default_rng(0)
    _write(tmp_path / "products.csv", ["sku", "name", "description", "category_path"],
           [[f"sku{i}", f"Product {i}", f"a fine {GENRES[i % 3]} item", f"fashion>{GENRES[i % 3]}"]
            for i in range(45)])
    rows = []
    for u in range(60):
        times = np.sort(rng.integers(1_700_000_000, 1_700_900_000, size=10))
        for j, t in enumerate(times):
            i = int(rng.choice(np.arange(u % 3, 45, 3))) if rng.random() < 0.85 else int(rng.integers(45))
            rows.append([f"c{u}", f"sku{i}", int(t), "buy" if j % 2 else "view", "test" if j == 9 else "train"])
    order = rng.permutation(len(rows))
    _write(tmp_path / "events.csv", ["customer", "sku", "time", "action", "fold"], [rows[k] for k in order])
    nxt = [[" ".join(f"sku{i}" for i in rng.choice(np.arange(s % 3, 45, 3), 3, replace=False)),
            f"sku{int(rng.choice(np.arange(s % 3, 45, 3)))}"] for s in range(40)]
    nxt.append(["sku1 sku404", "sku999"])   # unknown target: dropped and reported
    nxt.append(["sku2 sku404", "sku5"])     # one unknown history item: kept without it
    _write(tmp_path / "next.csv", ["history", "target"], nxt)
    (tmp_path / "shop.toml").write_text(
        'name = "shop"\n[events]\npath = "events.csv"\nuser = "customer"\nitem = "sku"\ntimestamp = "time"\n'
        'kind = "action"\nkind_map = { buy = "purchase" }\n'
        '[items]\npath = "products.csv"\nid = "sku"\ntitle = "name"\ntext = ["description"]\n'
        'categories = "category_path"\ncategory_sep = ">"\n', encoding="utf-8")
    return tmp_path


def _with(shop: Path, name: str, extra: str) -> Path:
    p = shop / name
    p.write_text((shop / "shop.toml").read_text(encoding="utf-8") + extra, encoding="utf-8")
    return p


def test_spec_loads_events_items_and_kinds(shop: Path) -> None:
    ds = load_dataset(str(shop / "shop.toml"))
    assert (ds.name, ds.n_users, ds.n_items, len(ds.interactions)) == ("shop", 60, 45, 600)
    s = ds.summary()
    assert s["event_kinds"] == {"view": 300, "purchase": 300}
    assert ds.item_table is not None and ds.item_table.categories[ds.items.index("sku4")] == ["fashion", "jackets"]
    assert ds.item_table.text["description"][ds.items.index("sku4")] == "a fine jackets item"
    split = make_split(ds)  # default: temporal leave-one-out, every customer's last event is test
    assert split.name == "temporal-loo" and len(split.test) == 60


@pytest.mark.parametrize("body, field", [
    ('[events]\npath = "events.csv"\nuser = 3\n', "events.user"),
    ('[events]\npath = "events.csv"\nuzer = "x"\n', "events.uzer"),
    ('[events]\npath = "e.csv"\n[split]\nmethod = "given"\n', "split"),
    ('[events]\npath = "e.csv"\n[split]\nmethod = "random"\n', "split.method"),
    ('[events]\npath = "e.csv"\n[cleaning]\nk_core = 0\n', "cleaning.k_core"),
    ('name = "x"\n', "events"),
])
def test_bad_spec_names_file_and_field(tmp_path: Path, body: str, field: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(body, encoding="utf-8")
    with pytest.raises(ValueError) as e:
        load_spec(p)
    assert str(e.value).startswith(f"{p}: {field}")


def test_not_toml_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[events\npath=", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_spec(p)


def test_position_order_allows_the_temporal_split(tmp_path: Path) -> None:
    _write(tmp_path / "plays.csv", ["user_id", "item_id"],
           [[f"u{u}", f"i{(u + j) % 7}"] for u in range(5) for j in range(4)])
    (tmp_path / "plays.toml").write_text('[events]\npath = "plays.csv"\norder = "position"\n', encoding="utf-8")
    ds = load_dataset(str(tmp_path / "plays.toml"))
    assert not ds.has_timestamps and ds.info["order"] == "position"
    split = make_split(ds)
    # the test event of each user is the last row of that user in the file
    last = {f"u{u}": f"i{(u + 3) % 7}" for u in range(5)}
    got = dict(zip(ds.users.to_ids(split.test.user), ds.items.to_ids(split.test.item)))
    assert got == last
    # without a spec the same file (no timestamp column) is refused with a reason
    (tmp_path / "plain.toml").write_text('[events]\npath = "plays.csv"\ntimestamp = ""\norder = "timestamp"\n',
                                         encoding="utf-8")
    with pytest.raises(ValueError, match="needs a timestamp column"):
        load_spec(tmp_path / "plain.toml")


def test_given_split_from_a_column(shop: Path) -> None:
    ds = load_dataset(str(_with(shop, "given.toml", '[split]\nmethod = "given"\ncolumn = "fold"\n')))
    split = make_split(ds)
    assert split.name == "given" and len(split.test) == 60 and len(split.train) + len(split.valid) == 540
    # every test event is a customer's last (the fold column said so)
    last_time = {}
    for u, t in zip(split.train_valid.user, split.train_valid.timestamp):
        last_time[u] = max(last_time.get(u, 0), t)
    assert all(t >= last_time[u] for u, t in zip(split.test.user, split.test.timestamp))


def test_given_split_bad_label_names_the_line(shop: Path) -> None:
    text = (shop / "events.csv").read_text(encoding="utf-8").splitlines()
    text[5] = text[5].rsplit(",", 1)[0] + ",holdout"
    (shop / "events.csv").write_text("\n".join(text) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"events.csv line 6: field 'fold': split label 'holdout'"):
        load_dataset(str(_with(shop, "given.toml", '[split]\nmethod = "given"\ncolumn = "fold"\n')))


def test_time_ratio_split(shop: Path) -> None:
    ds = load_dataset(str(_with(shop, "ratio.toml", '[split]\nmethod = "time-ratio"\ntest_fraction = 0.2\n')))
    split = make_split(ds)
    assert split.name == "time-ratio"
    assert split.train.timestamp.max() < split.valid.timestamp.min() <= split.valid.timestamp.max() \
        < split.test.timestamp.min()
    assert 0.1 < len(split.test) / len(ds.interactions) <= 0.2
    users_before = set(split.train_valid.user.tolist())
    assert set(split.test.user.tolist()) <= users_before


def test_session_split_scores_rows_without_stand_in_users(shop: Path, tmp_path: Path) -> None:
    ds = load_dataset(str(_with(shop, "sess.toml", '[split]\nmethod = "sessions"\ntest = { path = "next.csv" }\n')))
    rows = ds.info["sessions"]["test"]
    assert len(rows) == 41  # 42 rows, the unknown target dropped
    report = ds.info["sessions_cleaning"]["test"]
    assert report["counts"] == {"unknown_item": 1} and report["repaired"] == {"unknown_item": 1}
    assert report["examples"]["unknown_item"][0]["line"] == 42
    n_users = ds.n_users
    res = run_experiment("transitions", make_split(ds))
    assert ds.n_users == n_users  # nothing added for the sessions
    assert res.row["split"] == "sessions" and res.row["users"] == 41
    # the category structure is learnable: far better than chance (10 of 45 items = 0.22)
    assert res.row["HR@10"] > 0.4
    pop = run_experiment("popular", make_split(ds))
    assert res.row["NDCG@10"] > pop.row["NDCG@10"]
    out = res.test.save_recs(tmp_path / "recs.jsonl", ds, 5)
    first = json.loads(out.read_text().splitlines()[0])
    assert first["session"] == "2" and len(first["items"]) == 5


def test_sessions_tuning_needs_validation_rows(shop: Path) -> None:
    ds = load_dataset(str(_with(shop, "sess.toml", '[split]\nmethod = "sessions"\ntest = { path = "next.csv" }\n')))
    with pytest.raises(ValueError, match="tuning needs validation rows"):
        run_experiment("ease", make_split(ds), grid={"lam": [10, 100]})
    ds = load_dataset(str(_with(shop, "sess2.toml", '[split]\nmethod = "sessions"\ntest = { path = "next.csv" }\n'
                                                    'valid = { path = "next.csv" }\n')))
    res = run_experiment("ease", make_split(ds), grid={"lam": [10, 100]})
    assert len(res.tuning) == 2 and res.row["tuned_on"] == "valid"


def test_a_bare_events_file_reads_with_default_columns(tmp_path: Path) -> None:
    _write(tmp_path / "ev.csv", ["user_id", "item_id", "timestamp"],
           [["a", "x", 1], ["a", "y", 2], ["b", "x", 3], ["", "y", 4]])
    ds, report = load_dataset_path(tmp_path / "ev.csv")
    assert (ds.name, len(ds.interactions), report.counts) == ("ev", 3, {"missing_id": 1})
    with pytest.raises(DataError, match="line 5"):
        load_dataset_path(tmp_path / "ev.csv", strict=True)


runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "120"})


def test_cli_eval_info_and_search_take_a_spec(shop: Path) -> None:
    spec = str(shop / "shop.toml")
    r = _run("eval", "--dataset", spec, "--model", "ease")
    assert r.exit_code == 0, r.output
    assert "shop" in r.output and "temporal-loo" in r.output
    r = _run("data", "info", spec)
    assert r.exit_code == 0 and "default_split" in r.output
    r = _run("search", "jackets", "--dataset", spec, "--retriever", "bm25")
    assert r.exit_code == 0, r.output
    assert "sku1 " in r.output or "sku4 " in r.output
    r = _run("recommend", "--dataset", spec, "--model", "ease", "--user", "c1")
    assert r.exit_code == 0, r.output


def test_cli_unknown_path_is_one_line(tmp_path: Path) -> None:
    r = _run("eval", "--dataset", str(tmp_path / "missing.toml"), "--model", "ease")
    assert r.exit_code == 1
    assert "no such data-set spec" in r.output and "Traceback" not in r.output
    r = _run("eval", "--dataset", "nonsense", "--model", "ease")
    assert r.exit_code == 1 and "or the path of a data-set spec" in r.output


def test_clean_writes_a_spec_every_command_reads(shop: Path) -> None:
    given = _with(shop, "given.toml", '[split]\nmethod = "given"\ncolumn = "fold"\n')
    out = shop / "clean" / "events.parquet"
    r = _run("data", "clean", str(given), "--out", str(out))
    assert r.exit_code == 0, r.output
    spec_path = out.with_suffix(".toml")
    assert spec_path.is_file() and (shop / "clean" / "events.items.parquet").is_file()
    a, b = load_dataset(str(given)), load_dataset(str(spec_path))
    assert (b.n_users, b.n_items, len(b.interactions)) == (a.n_users, a.n_items, len(a.interactions))
    assert b.info["default_split"] == "given"
    sa, sb = make_split(a), make_split(b)
    assert (len(sa.train), len(sa.test)) == (len(sb.train), len(sb.test))
    assert b.item_table is not None and b.item_table.title == a.item_table.title
    assert sorted(b.summary()["event_kinds"].items()) == sorted(a.summary()["event_kinds"].items())


def test_load_writes_a_spec_into_a_service_store(shop: Path) -> None:
    from lmrec.stores.sql import open_store

    home = shop / "home"
    r = _run("data", "load", str(shop / "shop.toml"), "--home", str(home))
    assert r.exit_code == 1 and "--create" in r.output  # a misspelt home is not created silently
    r = _run("data", "load", str(shop / "shop.toml"), "--home", str(home), "--create")
    assert r.exit_code == 0, r.output
    store = open_store(f"sqlite:///{home / 'lmrec.db'}")
    try:
        assert (store.count_items(), store.count_events()) == (45, 600)
        item = store.get_item("sku4")
        assert item is not None
        assert item.title == "Product 4" and item.categories == ("fashion", "jackets")
        assert "jackets" in item.text
    finally:
        store.close()
