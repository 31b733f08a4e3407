"""RecPipeline: config loading and errors, fallback chain, online updates, explanations,
evaluation through the Recommender interface, persistence and the CLI command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lmrec.component import create, load_model, model_names
from lmrec.data.splits import temporal_leave_one_out
from lmrec.eval.evaluator import evaluate
from lmrec.pipeline import PipelineSpec, RecPipeline, load_spec
from lmrec.types import Event, Query
from lmrec.testing.toy import toy_dataset
from lmrec.types import EventKind

CHANNELS = [{"name": "ease", "model": "ease", "params": {"lam": 10.0}, "quota": 25},
            {"name": "lm", "model": "lm-recency", "params": {"encoder": "fake", "half_life": 3.0}, "quota": 25},
            {"name": "popular", "model": "popular", "quota": 10, "min_history": 0, "weight": 0.0,
             "fallback_only": True}]


def _spec(**over: object) -> dict:
    spec = {"encoder": "fake", "channels": CHANNELS, "fallback": {"chain": ["popular"], "min_candidates": 5},
            "rank": {"ranker": "none"}, "rerank": {"n": 20}}
    spec.update(over)
    return spec


@pytest.fixture(scope="module")
def ds():  # noqa: ANN201
    return toy_dataset(n_users=80, n_items=50, events_per_user=12)


@pytest.fixture(scope="module")
def pipe(ds) -> RecPipeline:  # noqa: ANN001
    return RecPipeline(spec=_spec()).fit(ds.interactions, ds)


def test_default_config_and_registry() -> None:
    assert "pipeline" in model_names()
    p = create("pipeline", {"config": "configs/default.toml"})
    assert isinstance(p, RecPipeline) and p.spec.rank.ranker == "lambdarank"
    assert [c.name for c in p.spec.channels][:2] == ["ease", "lm"]
    child = load_spec("configs/ml-100k.toml")  # extends default.toml
    assert child.channels[1].params["rating_weight"] is True and child.rank.window.size == 3
    assert RecPipeline("configs/default.toml").spec == p.spec  # a path as the only argument


@pytest.mark.parametrize("bad, field", [
    ({"channels": [{"name": "x", "model": "ease", "quota": 0}], "fallback": {}}, "quota"),
    ({"channels": [{"name": "x", "model": "ease", "params": {"lambda": 1}}], "fallback": {}}, "channels.0 (x)"),
    ({"channels": [{"name": "x", "model": "nope"}], "fallback": {}}, "unknown model 'nope'"),
    ({"rank": {"features": [{"name": "nope"}]}}, "unknown feature 'nope'"),
    ({"rank": {"params": {"lambdarank": {"num_leaves": "many"}}}}, "rank.params.lambdarank"),
    ({"rerank": {"stages": [{"name": "mmr", "params": {"lambda": 3}}]}}, "rerank.stages.0"),
    ({"fallback": {"chain": ["ghost"]}}, "'ghost' is not a channel"),
    ({"typo_section": {}}, "typo_section"),
    ({"encoder": "bert-huge"}, "unknown encoder 'bert-huge'"),
    ({"rank": {"features": [{"name": "lm", "params": {"recent": 0}}]}}, "rank.features.0"),
])
def test_bad_config_names_the_field(bad: dict, field: str) -> None:
    with pytest.raises(ValueError, match=re.escape(field)):
        create("pipeline", {"spec": _spec(**bad)})


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        load_spec("configs/missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("channels = [")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_spec(bad)
    loop = tmp_path / "loop.toml"
    loop.write_text('extends = "loop.toml"\n')
    with pytest.raises(ValueError, match="loops"):
        load_spec(loop)
    child = tmp_path / "child.toml"
    child.write_text(f'extends = "{Path("configs/default.toml").resolve()}"\n[rank]\nranker = "ctr"\n')
    assert load_spec(child).rank.ranker == "ctr"


def test_overrides_deep_merge() -> None:
    s = load_spec("configs/default.toml", {"rank": {"ranker": "none", "window": {"size": 1}}})
    assert s.rank.ranker == "none" and s.rank.window.size == 1 and s.rank.window.repeats == 3
    assert isinstance(s, PipelineSpec)


def test_recommend_explain_and_seen(pipe: RecPipeline, ds) -> None:  # noqa: ANN001
    c = pipe.recommend(3, k=8, explain=True)
    seen = set(ds.interactions.item[ds.interactions.user == 3].tolist())
    assert len(c) == 8 and not seen & set(c.items.tolist())
    assert [e["rank"] for e in c.explanations] == list(range(1, 9))
    assert all(set(e["channels"]) <= {"ease", "lm"} for e in c.explanations)
    assert all(e["because"]["item_id"] in {ds.items.ids[i] for i in seen} for e in c.explanations)
    lists = pipe.recommend([3, 4], k=5)
    assert isinstance(lists, list) and lists[0].items.tolist() == c.items[:5].tolist()
    allowed = np.arange(0, 50, 2)
    assert set(pipe.recommend(3, k=5, candidates=allowed).items.tolist()) <= set(allowed.tolist())
    with_seen = pipe.recommend(3, k=50, exclude_seen=False)
    assert seen & set(with_seen.items.tolist())


def test_new_user_falls_back_to_popular(ds) -> None:  # noqa: ANN001
    inter = ds.interactions
    keep = inter.user != 7
    pipe = RecPipeline(spec=_spec()).fit(inter.select(keep), ds)
    c = pipe.recommend(7, k=5, explain=True)
    assert len(c) == 5 and all(s == ("popular",) for s in c.sources)
    assert "because" not in c.explanations[0]


def test_update_changes_the_next_recommendation(ds) -> None:  # noqa: ANN001
    pipe = RecPipeline(spec=_spec()).fit(ds.interactions, ds)
    before = pipe.recommend(5, k=5)
    top = int(before.items[0])
    t = int(ds.interactions.timestamp.max()) + 10
    pipe.update([Event(5, top, t, EventKind.CLICK)])
    after = pipe.recommend(5, k=5, explain=True)
    assert top not in after.items.tolist()  # consumed: filtered at once
    assert after.explanations[0]["because"]["item_id"] in {ds.items.ids[top]} | {
        ds.items.ids[i] for i in ds.interactions.item[ds.interactions.user == 5]}
    assert pipe.history.last_time(5) == t
    new_user = ds.n_users + 2  # a user the channels never saw: fallback, and no crash
    pipe.update([Event(new_user, 1, t, EventKind.CLICK)])
    assert len(pipe.recommend(new_user, k=5)) == 5


def test_evaluator_and_rankers(ds) -> None:  # noqa: ANN001
    split = temporal_leave_one_out(toy_dataset(n_users=150, n_items=60, events_per_user=15, seed=2))
    out = {}
    for ranker, params in (("none", {}), ("lambdarank", {"n_estimators": 30, "min_child_samples": 10}),
                           ("ctr", {"epochs": 3, "hidden": 16})):
        p = create("pipeline", {"spec": _spec(rank={"ranker": ranker, "params": {ranker: params},
                                                    "window": {"size": 2, "min_history": 3, "repeats": 2}})})
        p.fit(split.train_valid, split.dataset)
        res = evaluate(p, split, stage="test", ks=(10,))
        out[ranker] = res.metrics["HR@10"]
        if ranker != "none":
            assert p.fit_info["folds"] == 2 and p.fit_info["train_positives"] > 0
            data = p.rank_data(np.unique(split.test.user), split.test)
            assert set(data.labels) == {"click", "high", "purchase"} and len(data.columns) == data.X.shape[1]
    for hr in out.values():
        assert hr > 1.3 * 10 / 45, out  # above a random ranking of the ~45 unseen items


def test_random_windows(ds) -> None:  # noqa: ANN001
    """strategy "random" holds out a random share of each user's events (data without a clock
    nor an order, like ML-1M's rows); the default "user-last" stays, clock or not (Amazon's
    sequences have an order but no clock)."""
    from dataclasses import replace

    clockless = replace(ds, has_timestamps=False)
    window = {"size": 2, "fraction": 0.25, "min_history": 3, "repeats": 2}
    p = RecPipeline(spec=_spec(rank={"ranker": "lambdarank", "params": {"lambdarank": {"n_estimators": 5}},
                                     "window": {**window, "strategy": "random"},
                                     "features": [{"name": "channels"}, {"name": "user"}]}))
    p.fit(clockless.interactions, clockless)
    assert p.fit_info["window_strategy"] == "random" and p.fit_info["folds"] == 2
    # about a quarter of each user's 12 events (3), not the fixed `size` of 2
    assert p.fit_info["window_events"] == 2 * 3 * ds.n_users
    q = RecPipeline(spec=_spec(rank={"ranker": "lambdarank", "params": {"lambdarank": {"n_estimators": 5}},
                                     "window": window, "features": [{"name": "channels"}, {"name": "user"}]}))
    q.fit(clockless.interactions, clockless)
    assert q.fit_info["window_strategy"] == "user-last" and q.fit_info["window_events"] == 2 * 2 * ds.n_users


def test_ml1m_config_loads() -> None:
    spec = load_spec("configs/ml-1m.toml")
    assert spec.rank.window.strategy == "random" and "lm" not in [c.name for c in spec.channels]
    assert "demographic" in [f.name for f in spec.rank.features]


def test_window_too_short_is_a_clear_error(ds) -> None:  # noqa: ANN001
    p = RecPipeline(spec=_spec(rank={"ranker": "lambdarank", "window": {"min_history": 100}}))
    with pytest.raises(ValueError, match="rank.window"):
        p.fit(ds.interactions, ds)
    with pytest.raises(RuntimeError, match="not fitted"):
        p.recommend(0)
    with pytest.raises(ValueError, match="user index"):
        RecPipeline(spec=_spec()).fit(ds.interactions, ds).candidates([Query(user=None)])


def test_save_load_after_updates(pipe: RecPipeline, ds, tmp_path: Path) -> None:  # noqa: ANN001
    p = RecPipeline(spec=_spec(rerank={"n": 20, "stages": [{"name": "seen"}, {"name": "thompson"}]}))
    p.fit(ds.interactions, ds)
    t = int(ds.interactions.timestamp.max()) + 1
    p.update([Event(2, 9, t, EventKind.IMPRESSION)])
    p.update([Event(2, 9, t + 1, EventKind.CLICK)])
    path = p.save(tmp_path / "pipe")
    assert json.loads((path / "config.json").read_text())["model"] == "pipeline"
    loaded = load_model(path)
    assert isinstance(loaded, RecPipeline)
    assert loaded.history.items(2).tolist() == p.history.items(2).tolist()
    np.testing.assert_array_equal(loaded.rerankers[1].wins, p.rerankers[1].wins)
    users = np.arange(0, 80, 7)
    np.testing.assert_array_equal(loaded.recall.channels["ease"].model.score(users),
                                  p.recall.channels["ease"].model.score(users))
    # deterministic stages give the same lists (the Thompson stage samples afresh)
    a, b = RecPipeline(spec=_spec()).fit(ds.interactions, ds), None
    b = load_model(a.save(tmp_path / "plain"))
    np.testing.assert_array_equal(a.score(users), b.score(users))


@pytest.mark.shared_data("ml-100k")
def test_cli_pipeline_on_ml100k(shared_data_dir: Path, tmp_path: Path) -> None:
    from lmrec.cli.main import app

    over = json.dumps({"encoder": "fake", "rank": {"ranker": "none"},
                       "channels": [{"name": "popular", "model": "popular", "quota": 30, "min_history": 0}]})
    res = CliRunner().invoke(app, ["pipeline", "--dataset", "ml-100k", "--config", "configs/default.toml",
                                   "--user", "196", "--k", "5", "--set", over, "--save", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert "recommendations for user 196" in res.output and (tmp_path / "p" / "config.json").is_file()
    bad = CliRunner().invoke(app, ["pipeline", "--dataset", "ml-100k", "--set", '{"rank": {"ranker": "x"}}'])
    assert bad.exit_code != 0 and "unknown ranker" in bad.output


@pytest.mark.shared_data("ml-100k")
def test_lmrec_eval_accepts_the_pipeline(shared_data_dir: Path, tmp_path: Path) -> None:
    from lmrec.cli.main import app

    params = json.dumps({"config": "configs/default.toml", "overrides": {
        "encoder": "fake", "rank": {"ranker": "none"}, "fallback": {"chain": []},
        "channels": [{"name": "ease", "drop": True}, {"name": "lm", "drop": True}, {"name": "als", "drop": True},
                     {"name": "popular", "quota": 30}]}})
    out = tmp_path / "rows.json"
    res = CliRunner().invoke(app, ["eval", "--dataset", "ml-100k", "--model", "pipeline", "--params", params,
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    row = json.loads(out.read_text())["rows"][0]
    assert row["model"] == "pipeline" and row["NDCG@10"] > 0


@pytest.mark.parametrize("path", sorted(Path(__file__).resolve().parents[2].joinpath("configs").glob("*.toml")),
                         ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path: Path) -> None:
    """Each configs/*.toml loads into a validated spec whose channels name registered models."""
    spec = load_spec(path)
    assert spec.channels, path
    names = set(model_names())
    assert {c.model for c in spec.channels} <= names, {c.model for c in spec.channels} - names


def test_extends_merges_channels_by_name(tmp_path: Path) -> None:
    base = load_spec("configs/default.toml")
    child = tmp_path / "child.toml"
    child.write_text(f'extends = "{Path("configs/default.toml").resolve()}"\n'
                     '[[channels]]\nname = "lm"\nweight = 3.0\n'
                     '[[channels]]\nname = "als"\ndrop = true\n'
                     '[[channels]]\nname = "new"\nbefore = "popular"\nmodel = "transitions"\n')
    spec = load_spec(child)
    assert [c.name for c in spec.channels] == ["ease", "lm", "new", "popular"]
    lm = next(c for c in spec.channels if c.name == "lm")
    base_lm = next(c for c in base.channels if c.name == "lm")
    assert lm.weight == 3.0 and lm.params == base_lm.params and lm.quota == base_lm.quota
    with pytest.raises(ValueError, match="cannot drop"):
        load_spec("configs/default.toml", {"channels": [{"name": "nope", "drop": True}]})
    with pytest.raises(ValueError, match="no entry 'nope'"):
        load_spec("configs/default.toml", {"channels": [{"name": "x", "model": "popular", "after": "nope"}]})
    # features and re-rank stages merge by name too
    spec = load_spec("configs/default.toml", {"rank": {"features": [{"name": "lm", "drop": True}]},
                                             "rerank": {"stages": [{"name": "mmr"}]}})
    assert "lm" not in [f.name for f in spec.rank.features]
    assert [s.name for s in spec.rerank.stages][-1] == "mmr"


def test_shipped_configs_resolve_by_name() -> None:
    from lmrec.pipeline.spec import resolve_config_path

    assert resolve_config_path("ml-100k").resolve() == resolve_config_path("configs/ml-100k.toml").resolve()
    assert resolve_config_path("serve-default.toml").name == "serve-default.toml"
    with pytest.raises(FileNotFoundError, match="serve-default"):  # the message lists the shipped ones
        resolve_config_path("no-such-config")
