"""The serving engine end to end, in process: fake encoder, SQLite store in tmp_path, toy catalog.
The engine serves the pipeline (`lmrec.pipeline.RecPipeline`); by default the shipped
serve-default config (transitions + LM profile + popularity channels, learned online)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lmrec.serving.engine import Engine, EngineConfig, TrainingBusy
from lmrec.stores.records import EventRecord, ItemRecord, UserRecord
from lmrec.testing.toy import GENRES, toy_dataset


def toy_items(n_items: int = 48) -> list[ItemRecord]:
    """The toy data set's items as records: title "<genre> movie <i>", one genre category."""
    table = toy_dataset(n_items=n_items).item_table
    assert table is not None
    return [ItemRecord(str(i + 1), title=table.title[i], categories=tuple(table.categories[i]),
                       text=f"A {table.categories[i][0]} film.", attributes={"brand": "toy"})
            for i in range(n_items)]


def genre(engine: Engine, item_id: str) -> str:
    rec = engine.get_item(item_id)
    assert rec is not None
    return rec.categories[0]


def ids_of(genre_name: str, items: list[ItemRecord]) -> list[str]:
    return [r.item_id for r in items if r.categories[0] == genre_name]


def config(home: Path, **kw: object) -> EngineConfig:
    return EngineConfig(home=home, encoder="fake", index="flat", **kw)


@pytest.fixture
def items() -> list[ItemRecord]:
    return toy_items()


@pytest.fixture
def engine(tmp_path: Path, items: list[ItemRecord]) -> Engine:
    eng = Engine.open(config(tmp_path))
    eng.upsert_items(items)
    yield eng
    eng.close()


def views(user: str, item_ids: list[str], start: float = 1000.0, kind: str = "view") -> list[EventRecord]:
    return [EventRecord(user, i, kind, 1.0, start + n) for n, i in enumerate(item_ids)]


# --- recommend -------------------------------------------------------------------------------
def test_unknown_user_gets_popular_items(engine: Engine, items: list[ItemRecord]) -> None:
    hot = ids_of("drama", items)[:2]
    engine.ingest(views("a", hot) + views("b", hot) + views("c", hot[:1]))
    r = engine.recommend("nobody", k=5)
    assert [i.item_id for i in r.items[:2]] == [hot[0], hot[1]]
    assert all(i.sources == ("popular",) for i in r.items)
    assert len(r.items) == 5 and r.model_version == engine.model_version != ""
    assert r.model_version.endswith("serve-default")


def test_empty_engine_still_answers(tmp_path: Path) -> None:
    with Engine.open(config(tmp_path)) as eng:
        assert eng.recommend("u", k=3).items == []
        assert eng.search("anything", k=3).items == []
        eng.upsert_items(toy_items(6))
        r = eng.recommend("u", k=3)  # no events at all: popularity (all 0) lists items in id order
        assert [i.item_id for i in r.items] == ["1", "2", "3"]
        assert all(i.sources == ("popular",) for i in r.items)


def test_known_user_gets_items_of_their_genre(engine: Engine, items: list[ItemRecord]) -> None:
    engine.ingest(views("u1", ids_of("comedy", items)[:4]))
    recs = engine.recommend("u1", k=4)
    assert [genre(engine, i.item_id) for i in recs.items] == ["comedy"] * 4
    assert all("lm" in i.sources for i in recs.items)


def test_other_users_transitions_reach_the_next_request(engine: Engine, items: list[ItemRecord]) -> None:
    """A global statistic learned online: once others went from item a to item b, a user who
    just saw a gets b from the transitions channel, without any training."""
    a, b = ids_of("drama", items)[0], ids_of("scifi", items)[3]
    assert b not in {i.item_id for i in engine.recommend("me", k=5).items}
    engine.ingest([e for u in range(3) for e in views(f"o{u}", [a, b], start=10.0 * u)])
    engine.ingest(views("me", [a], start=100.0))
    top = engine.recommend("me", k=3, explain=True).items[0]
    assert top.item_id == b and "transitions" in top.sources


def test_ingest_shifts_the_next_recommendation(engine: Engine, items: list[ItemRecord]) -> None:
    engine.ingest(views("u1", ids_of("comedy", items)[:4]))
    before = Counter(genre(engine, i.item_id) for i in engine.recommend("u1", k=5).items)
    assert before.most_common(1)[0][0] == "comedy"
    engine.ingest(views("u1", ids_of("horror", items)[:5], start=2000.0, kind="purchase"))
    after = Counter(genre(engine, i.item_id) for i in engine.recommend("u1", k=5).items)
    assert after.most_common(1)[0][0] == "horror"


def test_seen_items_are_filtered(engine: Engine, items: list[ItemRecord]) -> None:
    seen = ids_of("action", items)[:5]
    engine.ingest(views("u1", seen))
    got = {i.item_id for i in engine.recommend("u1", k=20).items}
    assert not got & set(seen)
    assert len(got) == 20


def test_learning_kinds_are_configurable(tmp_path: Path, items: list[ItemRecord]) -> None:
    with Engine.open(config(tmp_path, train_kinds=("purchase",))) as eng:
        eng.upsert_items(items)
        viewed = ids_of("action", items)[:3]
        eng.ingest(views("u1", viewed))
        got = [i.item_id for i in eng.recommend("u1", k=len(items)).items]
        assert set(viewed) <= set(got)  # views are stored, but neither learned from nor consumed here
        eng.ingest(views("u1", viewed[:1], start=5000.0, kind="purchase"))
        assert viewed[0] not in {i.item_id for i in eng.recommend("u1", k=10).items}


def test_explanations(engine: Engine, items: list[ItemRecord]) -> None:
    history = ids_of("scifi", items)[:3]
    engine.ingest(views("u1", history))
    r = engine.recommend("u1", k=3, explain=True)
    for rank, it in enumerate(r.items, 1):
        ex = it.explanation
        assert ex is not None and ex["channels"] == list(it.sources) and ex["item_id"] == it.item_id
        assert ex["rank"] == rank and ex["title"] == engine.get_item(it.item_id).title
        because = ex["because"]
        assert because["item_id"] in history
        assert because["title"] == engine.get_item(because["item_id"]).title
        # the named history item is the one whose vector matches best, with its true cosine
        vec = engine.catalog.vector(engine.catalog.slot(it.item_id))
        cos = {h: float(engine.catalog.vector(engine.catalog.slot(h)) @ vec) for h in history}
        assert because["item_id"] == max(cos, key=cos.get)
        assert because["cosine"] == pytest.approx(cos[because["item_id"]], abs=1e-4)
        assert ex["shared_categories"] == ["scifi"]
        assert set(ex["stage_scores"]) >= {"merge", *it.sources}
    assert engine.recommend("u1", k=3).items[0].explanation is None


# --- items -----------------------------------------------------------------------------------
def test_new_item_is_searchable_and_recommendable_at_once(engine: Engine, items: list[ItemRecord]) -> None:
    engine.ingest(views("u1", ids_of("romance", items)[:4]))
    engine.upsert_items([ItemRecord("new-1", title="romance movie zeppelin", categories=("romance",),
                                    text="A romance film.")])
    hits = engine.search("zeppelin", k=3)
    assert hits.items[0].item_id == "new-1"
    assert set(hits.items[0].sources) == {"bm25", "dense"}
    assert "new-1" in {i.item_id for i in engine.recommend("u1", k=10).items}


def test_delete_removes_the_item_everywhere(engine: Engine, items: list[ItemRecord]) -> None:
    target = ids_of("horror", items)[0]
    engine.ingest(views("a", [target]) + views("b", [target]))  # the most popular item
    engine.ingest(views("u1", ids_of("horror", items)[1:4]))
    assert target in {i.item_id for i in engine.recommend("u1", k=10).items}
    assert engine.recommend("new-user", k=1).items[0].item_id == target
    assert engine.delete_item(target) is True
    assert engine.get_item(target) is None
    assert engine.store.get_item(target) is None
    with pytest.raises(KeyError):
        engine.similar(target)
    for r in (engine.recommend("u1", k=47), engine.recommend("new-user", k=47),
              engine.search(engine.catalog.text(0), k=47), engine.similar(ids_of("horror", items)[1], k=46)):
        assert target not in {i.item_id for i in r.items}
    assert engine.delete_item(target) is False
    assert engine.stats()["n_items"] == len(items) - 1


def test_unavailable_items_are_kept_but_never_served(engine: Engine, items: list[ItemRecord]) -> None:
    target = items[0]
    engine.upsert_items([ItemRecord(target.item_id, title=target.title, categories=target.categories,
                                    text=target.text, available=False)])
    assert engine.get_item(target.item_id).available is False
    assert target.item_id not in {i.item_id for i in engine.search(target.title, k=48).items}
    assert len(engine.similar(target.item_id, k=5).items) == 5  # still a valid query item
    engine.upsert_items([target])
    assert engine.search(target.title, k=1).items[0].item_id == target.item_id


def test_similar_excludes_the_item_itself(engine: Engine, items: list[ItemRecord]) -> None:
    src = ids_of("comedy", items)[0]
    r = engine.similar(src, k=5, explain=True)
    assert src not in [i.item_id for i in r.items] and len(r.items) == 5
    assert [genre(engine, i.item_id) for i in r.items] == ["comedy"] * 5
    scores = [i.score for i in r.items]
    assert scores == sorted(scores, reverse=True)
    assert r.items[0].explanation["shared_categories"] == ["comedy"]
    with pytest.raises(KeyError):
        engine.similar("no-such-item")


# --- search ----------------------------------------------------------------------------------
def test_search_is_personalised_by_the_profile(engine: Engine, items: list[ItemRecord]) -> None:
    engine.ingest(views("fan", ids_of("horror", items)[:6]))
    plain = engine.search("movie", k=5)
    mine = engine.search("movie", k=5, user_id="fan", explain=True)

    def horror(r: object) -> int:
        return [genre(engine, i.item_id) for i in r.items].count("horror")

    assert horror(mine) > horror(plain)  # a nudge: the profile reorders close candidates
    assert all(i.explanation["profile_cosine"] is not None for i in mine.items)
    assert "movi" in mine.items[0].explanation["matched_terms"]
    engine.config.personal_weight = 10.0  # a strong weight lets the profile dominate
    assert horror(engine.search("movie", k=5, user_id="fan")) == 5


def test_search_bm25_finds_chinese_terms(engine: Engine) -> None:
    engine.upsert_items([ItemRecord("zh-1", title="男士轻便跑步鞋", categories=("shoes",)),
                         ItemRecord("zh-2", title="不锈钢厨师刀", categories=("knives",))])
    r = engine.search("跑步鞋", k=2, explain=True)
    assert r.items[0].item_id == "zh-1" and "bm25" in r.items[0].sources
    assert {"跑步", "步鞋"} <= set(r.items[0].explanation["matched_terms"])


# --- models ----------------------------------------------------------------------------------
def _toy_events(items: list[ItemRecord]) -> list[EventRecord]:
    ds = toy_dataset(n_items=len(items))
    return [EventRecord(ds.users.ids[u], str(i + 1), "view", 1.0, float(t))
            for u, i, t in zip(ds.interactions.user, ds.interactions.item, ds.interactions.timestamp)]


EASE_ONLY = {"encoder": "fake", "channels": [{"name": "ease", "model": "ease", "params": {"lam": 10.0}},
                                             {"name": "popular", "model": "popular", "min_history": 0, "quota": 20}],
             "fallback": {"chain": ["popular"]}, "rank": {"ranker": "none", "features": [{"name": "channels"}]}}


def _spec_file(tmp_path: Path, spec: dict, name: str = "ease-only.toml") -> str:
    import tomllib  # noqa: F401  (the file must be valid TOML: written by hand here)

    lines = [f'encoder = "{spec["encoder"]}"']
    for c in spec["channels"]:
        params = ", ".join(f"{k} = {v}" for k, v in c.get("params", {}).items())
        lines += ["[[channels]]", f'name = "{c["name"]}"', f'model = "{c["model"]}"', f"params = {{ {params} }}",
                  f'min_history = {c.get("min_history", 1)}', f'quota = {c.get("quota", 100)}']
    lines += ["[fallback]", 'chain = ["popular"]', "[rank]", 'ranker = "none"', 'features = [{ name = "channels" }]']
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_train_a_pipeline_and_hot_reload(engine: Engine, items: list[ItemRecord], tmp_path: Path) -> None:
    engine.ingest(_toy_events(items))
    base = engine.model_version
    cfg = _spec_file(tmp_path, EASE_ONLY)
    version = engine.train(cfg, activate=False)
    assert engine.model_version == base  # trained, not yet active
    assert (engine.models_dir / version / "meta.json").is_file()
    assert engine.reload(version) == version
    user = toy_dataset(n_items=len(items)).users.ids[0]
    r = engine.recommend(user, k=10, explain=True)
    assert r.model_version == version and all("ease" in i.sources for i in r.items)
    assert engine.stats()["model_version"] == version and engine.stats()["pipeline"]["channels"] == ["ease", "popular"]
    # the served list is the one the saved version gives offline for the same events
    from lmrec.pipeline import RecPipeline

    offline = RecPipeline.load(engine.models_dir / version / "pipeline")
    u = offline.dataset.users.index(user)
    assert [offline.dataset.items.ids[i] for i in offline.recommend(u, 10).items] == [i.item_id for i in r.items]
    # a user the model never saw, with history on known items, gets EASE candidates by fold-in
    engine.ingest(views("fresh", ["1", "7", "13"], start=5e6))
    assert any("ease" in i.sources for i in engine.recommend("fresh", k=10).items)
    v2 = engine.train(cfg)
    assert engine.model_version == v2 and engine.model_versions()[-2:] == [version, v2]
    assert engine.reload(version) == version
    # the reloaded version caught up with the events since its fit: "fresh" is known to it
    assert any("ease" in i.sources for i in engine.recommend("fresh", k=10).items)
    with pytest.raises(FileNotFoundError, match="not found"):
        engine.reload("no-such-version")


def test_training_a_bad_config_fails_before_any_work(engine: Engine, tmp_path: Path) -> None:
    from lmrec.serving.engine import PipelineConfigError

    with pytest.raises(PipelineConfigError, match="no-such-config"):
        engine.train("no-such-config.toml")
    with pytest.raises(PipelineConfigError, match="lamda"):
        engine.train(_spec_file(tmp_path, EASE_ONLY), {"channels": [{"name": "ease", "params": {"lamda": 1}}]})
    assert engine.training["state"] == "idle"


def test_a_learned_ranker_without_events_fails_clearly(engine: Engine) -> None:
    with pytest.raises(ValueError, match="rank.window"):
        engine.train("default.toml", {"encoder": "fake", "channels": [{"name": "lm", "params": {"encoder": "fake"}}]})
    assert engine.training["state"] == "failed" and "rank.window" in engine.training["error"]


def test_background_training_while_serving(engine: Engine, items: list[ItemRecord], tmp_path: Path) -> None:
    """Requests and events keep being served while a version trains in the background; the
    new version is swapped in with the events that arrived meanwhile."""
    engine.ingest(_toy_events(items))
    errors: list[BaseException] = []
    stop = threading.Event()
    served: set[str] = set()

    def traffic(t: int) -> None:
        try:
            n = 0
            while not stop.is_set():
                user = f"bg{t}-{n // 10}"  # a user sees 10 items at most: lists never run dry
                r = engine.recommend(user, k=5)
                assert len(r.items) == 5
                served.add(r.model_version)
                engine.ingest(views(user, [items[(n * 5 + t) % len(items)].item_id], start=1e6 + n))
                n += 1
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=traffic, args=(t,)) for t in range(2)]
    for th in threads:
        th.start()
    old = engine.model_version
    assert engine.train(_spec_file(tmp_path, EASE_ONLY), wait=False) is None
    with pytest.raises(TrainingBusy):
        engine.train(_spec_file(tmp_path, EASE_ONLY))
    deadline = time.monotonic() + 60
    while engine.model_version == old and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    stop.set()
    for th in threads:
        th.join()
    assert not errors, errors
    new = engine.model_version
    assert new != old and {old, new} <= served | {new}
    assert engine.training["state"] == "idle" and engine.training["last_version"] == new
    # every event, the ones that arrived during the fit included, is in the served history
    n_bg = sum(1 for e in engine.store.events() if e.user_id.startswith("bg"))
    pipe = engine.pipeline
    bg = [u for u in pipe.dataset.users.ids if u.startswith("bg")]
    assert sum(pipe.history.n_events(pipe.dataset.users.get(u)) for u in bg) == n_bg


def test_scheduled_retraining(tmp_path: Path, items: list[ItemRecord]) -> None:
    with Engine.open(config(tmp_path, retrain_every_events=20)) as eng:
        eng.upsert_items(items)
        first = eng.model_version
        eng.ingest(_toy_events(items)[:25])
        deadline = time.monotonic() + 30
        while eng.model_version == first and time.monotonic() < deadline:
            time.sleep(0.1)
        assert eng.model_version != first and eng.stats()["events_since_train"] < 25


# --- durability and restart ------------------------------------------------------------------
def test_restart_restores_state_without_re_encoding(tmp_path: Path, items: list[ItemRecord],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    eng = Engine.open(EngineConfig(home=tmp_path, encoder="fake", index="hnsw"))
    eng.upsert_items(items)
    eng.ingest(views("u1", ids_of("drama", items)[:3]) + views("u2", ids_of("action", items)[:2]))
    eng.delete_item(ids_of("drama", items)[5])
    eng.ingest(views("u3", ids_of("comedy", items)[:2], start=3000.0))  # after the version's fit
    before = {u: [(i.item_id, i.sources) for i in eng.recommend(u, k=8).items] for u in ("u1", "u2", "u3", "u4")}
    search_before = [i.item_id for i in eng.search("action movie", k=5).items]
    stats = eng.stats()
    eng.close()

    from lmrec.serving.encoders import EngineEncoders

    def no_encoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("the saved index should have been reused")

    monkeypatch.setattr(EngineEncoders, "encode_items", no_encoding)
    eng = Engine.open(EngineConfig(home=tmp_path, encoder="fake", index="hnsw"))
    try:
        after = {u: [(i.item_id, i.sources) for i in eng.recommend(u, k=8).items] for u in ("u1", "u2", "u3", "u4")}
        assert after == before
        assert [i.item_id for i in eng.search("action movie", k=5).items] == search_before
        for key in ("n_items", "n_users", "n_events", "index_size", "model_version", "applied_seq"):
            assert eng.stats()[key] == stats[key], key
    finally:
        eng.close()


def test_stale_saved_index_is_rebuilt(tmp_path: Path, items: list[ItemRecord]) -> None:
    with Engine.open(config(tmp_path)) as eng:
        eng.upsert_items(items)
    from lmrec.stores.sql import open_store

    store = open_store(f"sqlite:///{tmp_path / 'lmrec.db'}")  # another writer changes the catalog
    store.upsert_items([ItemRecord("late", title="walrus documentary")])
    store.close()
    with Engine.open(config(tmp_path)) as eng:
        assert eng.search("walrus", k=1).items[0].item_id == "late"
        assert eng.stats()["n_items"] == len(items) + 1


def test_rankings_are_logged_for_joining_events(engine: Engine, items: list[ItemRecord]) -> None:
    engine.ingest(views("u1", [items[0].item_id]))
    r = engine.recommend("u1", k=3)
    s = engine.search("movie", k=2, user_id="u1")
    engine.flush_rankings()
    rec = engine.store.get_ranking(r.ranking_id)
    assert rec is not None and rec.endpoint == "recommend" and rec.user_id == "u1"
    assert list(rec.item_ids) == [i.item_id for i in r.items]
    assert rec.context["model_version"] == engine.model_version
    assert engine.store.get_ranking(s.ranking_id).endpoint == "search"
    clicked = r.items[0].item_id
    engine.ingest([EventRecord("u1", clicked, "click", ranking_id=r.ranking_id)])
    last = list(engine.store.events(user_id="u1"))[-1]
    assert last.ranking_id == r.ranking_id and last.timestamp > 0  # no timestamp -> server time


def test_timings_name_the_stages(engine: Engine, items: list[ItemRecord]) -> None:
    engine.ingest(views("u", [items[0].item_id]))
    assert {"recall:transitions", "recall:lm", "recall:popular", "merge", "features", "ranker", "rerank",
            "total"} <= set(engine.recommend("u", k=3).timings_ms)
    assert {"encode", "recall_dense", "recall_bm25", "merge", "total"} <= set(engine.search("x", k=3).timings_ms)


# --- input validation ------------------------------------------------------------------------
def test_bad_input_names_the_field_and_commits_nothing(engine: Engine) -> None:
    n = engine.store.count_events()
    with pytest.raises(ValueError, match=r"events\[1\]\.kind"):
        engine.ingest([EventRecord("u", "1"), EventRecord("u", "2", kind="teleport")])
    with pytest.raises(ValueError, match=r"events\[0\]\.user_id"):
        engine.ingest([EventRecord("", "1")])
    with pytest.raises(ValueError, match=r"events\[0\]\.value"):
        engine.ingest([EventRecord("u", "1", value=float("nan"))])
    assert engine.store.count_events() == n and engine.stats()["n_events"] == n
    with pytest.raises(ValueError, match=r"items\[0\]\.item_id"):
        engine.upsert_items([ItemRecord("")])
    with pytest.raises(ValueError, match="k must be"):
        engine.recommend("u", k=0)
    with pytest.raises(ValueError, match="query"):
        engine.search("   ")
    with pytest.raises(ValueError, match="user_id"):
        engine.recommend("")


def test_config_rejects_unknown_names(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="train_kinds"):
        EngineConfig(home=tmp_path, train_kinds=("stare",))
    with pytest.raises(ValidationError, match="not found"):
        EngineConfig(home=tmp_path, config="no-such-pipeline.toml")
    with pytest.raises(ValidationError, match="encoder"):
        EngineConfig(home=tmp_path, encoder="gpt-9")
    with pytest.raises(ValidationError, match="item_template"):
        EngineConfig(home=tmp_path, item_template="{title")
    with pytest.raises(ValidationError, match="extra"):
        EngineConfig(home=tmp_path, colour="blue")


def test_users_and_state(engine: Engine, items: list[ItemRecord]) -> None:
    engine.upsert_user(UserRecord("vip", {"tier": "gold"}))
    assert engine.store.get_user("vip").attributes == {"tier": "gold"}
    assert engine.stats()["n_users"] == 0  # users come into the pipeline with their first event
    engine.ingest(views("vip", [items[0].item_id]))
    assert engine.stats()["n_users"] == 1
    assert engine.ready


# --- concurrency -----------------------------------------------------------------------------
def test_concurrent_reads_and_writes(engine: Engine, items: list[ItemRecord]) -> None:
    errors: list[BaseException] = []
    n_threads, per_thread = 3, 25

    def writer(t: int) -> None:
        try:
            for n in range(per_thread):
                engine.ingest([EventRecord(f"w{t}", items[(t * 7 + n) % len(items)].item_id, "view", 1.0, 1e4 + n)])
                if n % 10 == 0:
                    engine.upsert_items([ItemRecord(f"new-{t}-{n}", title=f"{GENRES[n % 6]} movie extra {t} {n}",
                                                    categories=(GENRES[n % 6],))])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def reader(t: int) -> None:
        try:
            for n in range(per_thread):
                assert len(engine.recommend(f"w{t}", k=5).items) == 5
                engine.search("movie extra", k=5, user_id=f"w{t}")
                engine.similar(items[n].item_id, k=3)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=f, args=(t,)) for t in range(n_threads) for f in (writer, reader)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert engine.stats()["n_events"] == engine.store.count_events() == n_threads * per_thread
    assert engine.stats()["n_items"] == len(items) + n_threads * 3


def test_search_profile_is_the_recency_mean_of_the_history(engine: Engine, items: list[ItemRecord]) -> None:
    hist = [items[i].item_id for i in (0, 5, 9, 14, 20)]
    engine.ingest([EventRecord("u", i, "view", 1.0, 100.0 + n) for n, i in enumerate(hist)])
    w = 2.0 ** (-np.arange(len(hist))[::-1] / engine.config.half_life)
    vecs = np.stack([engine.catalog.vector(engine.catalog.slot(i)) for i in hist])
    expected = w @ vecs
    np.testing.assert_allclose(engine._profile(engine._live, "u"), expected / np.linalg.norm(expected), atol=1e-5)


def test_two_engines_on_one_store_catch_up(tmp_path: Path, items: list[ItemRecord]) -> None:
    """Two server processes sharing a store: each folds in the other's events (sync, or the gap
    before its own next commit)."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a = Engine.open(config(tmp_path / "a", store_url=url))
    a.upsert_items(items)
    b = Engine.open(config(tmp_path / "b", store_url=url))
    try:
        assert len(b.catalog) == len(items)
        a.ingest(views("u1", ids_of("drama", items)[:3]))

        def n_events(eng: Engine, user: str) -> int:
            return eng.pipeline.history.n_events(eng.pipeline.dataset.users.get(user))

        assert n_events(b, "u1") == 0
        assert b.sync() == 3 and n_events(b, "u1") == 3
        a.ingest(views("u1", ids_of("drama", items)[3:5]))
        b.ingest(views("u2", ids_of("action", items)[:1]))  # b first takes a's two new events
        assert n_events(b, "u1") == 5 and b.stats()["n_events"] == 6
        assert a.sync() == 1  # a takes b's event (global statistics such as popularity see it too)
        assert [i.item_id for i in a.recommend("u1", k=5).items] == [i.item_id for i in b.recommend("u1", k=5).items]
    finally:
        a.close()
        b.close()


def test_reload_while_serving_drops_nothing(engine: Engine, items: list[ItemRecord], tmp_path: Path) -> None:
    engine.ingest([e for u in range(6) for e in views(f"u{u}", ids_of(GENRES[u], items)[:4], start=100.0 * u)])
    cfg = _spec_file(tmp_path, EASE_ONLY)
    versions = [engine.train(cfg, activate=False), engine.train(cfg, {"channels": [{"name": "ease", "params": {
        "lam": 1.0}}]}, activate=False)]
    base = engine.model_version
    seen_versions: set[str] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def serve() -> None:
        try:
            while not stop.is_set():
                r = engine.recommend("u1", k=5)
                assert len(r.items) == 5
                seen_versions.add(r.model_version)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=serve) for _ in range(2)]
    for th in threads:
        th.start()
    for n in range(10):
        engine.reload(versions[n % 2])
    stop.set()
    for th in threads:
        th.join()
    assert not errors, errors
    assert seen_versions <= {base, *versions} and seen_versions & set(versions)


def test_re_upserting_unchanged_items_leaves_the_indexes_alone(tmp_path: Path, items: list[ItemRecord]) -> None:
    with Engine.open(EngineConfig(home=tmp_path, encoder="fake", index="hnsw")) as eng:
        eng.upsert_items(items)
        delta = eng.stats()["bm25_delta"]
        eng.upsert_items(items)  # a platform re-syncing its catalog
        assert eng.catalog.index.n_tombstones == 0 and eng.stats()["bm25_delta"] == delta
        changed = ItemRecord(items[0].item_id, title="zebra documentary", categories=("drama",))
        eng.upsert_items([changed])
        assert eng.catalog.index.n_tombstones == 1
        assert eng.search("zebra", k=1).items[0].item_id == items[0].item_id
        assert eng.get_item(items[0].item_id).title == "zebra documentary"


# --- the sequential channel in the service ----------------------------------------------------
SEQ_TOML = """encoder = "fake"
[[channels]]
name = "seq"
model = "sasrec-text"
params = {{ encoder = "fake", hidden = 16, n_blocks = 1, max_len = 10, epochs = 3, id_fusion = "{fusion}", seed = 1 }}
quota = 30
[[channels]]
name = "popular"
model = "popular"
min_history = 0
quota = 20
weight = 0.0
[fallback]
chain = ["popular"]
[rank]
ranker = "none"
features = [{{ name = "channels" }}]
"""


def test_an_event_changes_the_next_list_through_the_sequential_channel(
        engine: Engine, items: list[ItemRecord], tmp_path: Path) -> None:
    pytest.importorskip("torch")
    engine.ingest(_toy_events(items))
    cfg = tmp_path / "seq.toml"
    cfg.write_text(SEQ_TOML.format(fusion="gate"))
    engine.train(str(cfg))
    user = toy_dataset(n_items=len(items)).users.ids[3]
    before = engine.recommend(user, k=10, explain=True)
    assert all("seq" in i.sources for i in before.items)
    # the transformer reads the user's latest items at request time: no refit, a new list
    engine.ingest(views(user, ids_of("horror", items)[:2], start=9e6))
    after = engine.recommend(user, k=10, explain=True)
    assert [i.item_id for i in after.items] != [i.item_id for i in before.items]
    assert after.model_version == before.model_version
    # the pipeline's sequential model scores the new history as a refit-free forward pass would
    pipe = engine.pipeline
    seq = pipe.recall.channels["seq"].model
    from lmrec.types import HistoryBatch

    u = pipe.dataset.users.index(user)
    batch = HistoryBatch.of([u], pipe.history)
    top = seq.user_scores(batch).top(0, 1, batch.distinct(0))[0][0]
    assert after.items[0].item_id == pipe.dataset.items.ids[top]


def test_a_new_item_is_recommended_by_the_text_aware_sequential_channel(
        engine: Engine, items: list[ItemRecord], tmp_path: Path) -> None:
    pytest.importorskip("torch")
    engine.ingest(_toy_events(items))
    cfg = tmp_path / "seq.toml"
    cfg.write_text(SEQ_TOML.format(fusion="none"))  # text only: a new item is scored like the others
    engine.train(str(cfg))
    engine.ingest(views("fan", ids_of("romance", items)[:6], start=9e6))
    twin = items[[r.item_id for r in items].index(ids_of("romance", items)[6])]
    engine.upsert_items([ItemRecord("brand-new", title=twin.title, categories=twin.categories, text=twin.text,
                                    attributes=twin.attributes)])
    seq = engine.pipeline.recall.channels["seq"].model
    new = engine.pipeline.dataset.items.index("brand-new")
    old = engine.pipeline.dataset.items.index(twin.item_id)
    from lmrec.types import HistoryBatch

    u = engine.pipeline.dataset.users.index("fan")
    s = seq.user_scores(HistoryBatch.of([u], engine.pipeline.history))
    got = s.at(0, np.array([new, old]))
    assert got[0] == pytest.approx(got[1], rel=1e-5)  # same text, same score: no refit needed
    ranked = [i.item_id for i in engine.recommend("fan", k=len(items)).items]
    assert "brand-new" in ranked and abs(ranked.index("brand-new") - ranked.index(twin.item_id)) <= 1


def test_a_restart_serves_the_version_served_last(tmp_path: Path, items: list[ItemRecord]) -> None:
    cfg_file = _spec_file(tmp_path, EASE_ONLY)
    with Engine.open(config(tmp_path / "home")) as eng:
        eng.upsert_items(items)
        eng.ingest(_toy_events(items))
        default = eng.model_version
        trained = eng.train(cfg_file)
        kept = eng.train(cfg_file, activate=False)  # saved, never served
    with Engine.open(config(tmp_path / "home")) as eng:  # the settings name no pipeline config
        assert eng.model_version == trained != default and kept in eng.model_versions()
    with Engine.open(config(tmp_path / "home", config=cfg_file)) as eng:  # they name one: its newest
        assert eng.model_version == kept
    with Engine.open(config(tmp_path / "home", model_version=default)) as eng:  # a pinned version
        assert eng.model_version == default


def test_concurrent_recommendations_are_coalesced_into_batches(engine: Engine, items: list[ItemRecord],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    engine.ingest(_toy_events(items))
    users = [f"u{u}" for u in range(12)] + ["nobody"]
    alone = {u: [i.item_id for i in engine.recommend(u, k=4 + n % 3).items] for n, u in enumerate(users)}
    sizes: list[int] = []
    real = engine._compute_batch

    def slow(batch):  # noqa: ANN001, ANN202 - the first batch is slow, so the others queue behind it
        sizes.append(len(batch))
        if len(sizes) == 1:
            time.sleep(0.3)
        return real(batch)

    monkeypatch.setattr(engine, "_compute_batch", slow)
    got: dict[str, list[str]] = {}
    barrier = threading.Barrier(len(users))

    def call(n: int, u: str) -> None:
        barrier.wait()
        if n:
            time.sleep(0.05)  # after the first call started its batch
        got[u] = [i.item_id for i in engine.recommend(u, k=4 + n % 3).items]

    threads = [threading.Thread(target=call, args=(n, u)) for n, u in enumerate(users)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert got == alone  # the same lists as one call at a time
    assert max(sizes) > 1 and sum(sizes) == len(users)
    with pytest.raises(ValueError, match="k must be"):
        engine.recommend("u1", k=0)
