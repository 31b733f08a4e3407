"""One engine: a running service and the same home restarted serve the same lists.

After any sequence of item upserts, item deletions, user erasures and events, the lists of the
served pipeline (kept current incrementally) equal those of a service restarted from the same
home (the saved version loaded, synced with the store's catalog and caught up with the events
since its fit): same ids, same order, scores equal to float tolerance.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from lmrec.serving.engine import Engine, EngineConfig
from lmrec.stores.records import EventRecord, ItemRecord
from lmrec.testing.toy import toy_dataset

USERS = [f"u{j}" for j in range(16)]


def toy_items(n: int = 40, start: int = 0) -> list[ItemRecord]:
    table = toy_dataset(n_items=n + start).item_table
    assert table is not None
    return [ItemRecord(str(i + 1), title=table.title[i], categories=tuple(table.categories[i]),
                       text=f"{table.title[i]}: a {table.categories[i][0]} film.", attributes={"brand": "toy"})
            for i in range(start, start + n)]


def config(home: Path, **kw: object) -> EngineConfig:
    return EngineConfig(home=home, encoder="fake", index="flat", **kw)


def random_events(rng: random.Random, eng: Engine, item_ids: list[str], n: int, start: float) -> list[EventRecord]:
    live = [i for i in item_ids if eng.get_item(i) is not None]
    return [EventRecord(rng.choice(USERS), rng.choice(live), "view", 1.0, start + j) for j in range(n)]


def lists(eng: Engine, users: list[str]) -> dict[str, list[tuple[str, float]]]:
    return {u: [(i.item_id, i.score) for i in eng.recommend(u, k=12).items] for u in users}


def assert_same(before: dict[str, list[tuple[str, float]]], after: dict[str, list[tuple[str, float]]]) -> None:
    differ = [u for u in before if [i for i, _ in before[u]] != [i for i, _ in after[u]]]
    assert not differ, f"{len(differ)} of {len(before)} lists changed, e.g. {differ[0]}: " \
                       f"{before[differ[0]]} != {after[differ[0]]}"
    for u in before:
        assert [s for _, s in after[u]] == pytest.approx([s for _, s in before[u]], rel=1e-5, abs=1e-6), u


def restarted(home: Path, before: dict[str, list[tuple[str, float]]]) -> Engine:
    eng = Engine.open(config(home))
    assert_same(before, lists(eng, list(before)))
    return eng


@pytest.mark.parametrize("trained", [False, True], ids=["fit-empty", "trained-version"])
def test_deleting_items_then_restarting_keeps_every_list(tmp_path: Path, trained: bool) -> None:
    rng = random.Random(7)
    items = toy_items()
    ids = [r.item_id for r in items]
    eng = Engine.open(config(tmp_path))
    eng.upsert_items(items)
    eng.ingest(random_events(rng, eng, ids, 150, 1000.0))
    if trained:  # a version that knows the items deleted below, text and all
        eng.train()
    for item_id in rng.sample(ids, 6):
        eng.delete_item(item_id)
    eng.upsert_items([ItemRecord("never-seen", title="a deleted item nobody viewed")])
    eng.delete_item("never-seen")
    eng.ingest(random_events(rng, eng, ids, 80, 5000.0))
    before = lists(eng, USERS + ["newcomer"])
    eng.close()
    restarted(tmp_path, before).close()


def test_new_items_deletions_and_erasures_after_a_restart(tmp_path: Path) -> None:
    rng = random.Random(11)
    items = toy_items()
    ids = [r.item_id for r in items]
    eng = Engine.open(config(tmp_path))
    eng.upsert_items(items)
    eng.ingest(random_events(rng, eng, ids, 120, 1000.0))
    eng.delete_item(ids[3])
    before = lists(eng, USERS)
    eng.close()
    eng = restarted(tmp_path, before)
    # on the restarted service: new items (one re-uses a deleted id), more deletions, events
    more = toy_items(8, start=40)
    eng.upsert_items(more + [ItemRecord(ids[3], title="back again", categories=("drama",), text="A drama film.")])
    ids += [r.item_id for r in more]
    for item_id in (ids[5], more[2].item_id):
        eng.delete_item(item_id)
    eng.ingest(random_events(rng, eng, ids, 100, 9000.0))
    before = lists(eng, USERS + ["newcomer"])
    eng.close()
    restarted(tmp_path, before).close()


@pytest.mark.parametrize("trained", [False, True], ids=["fit-empty", "trained-version"])
def test_erasing_users_then_restarting_keeps_every_list(tmp_path: Path, trained: bool) -> None:
    rng = random.Random(3)
    items = toy_items()
    ids = [r.item_id for r in items]
    eng = Engine.open(config(tmp_path))
    eng.upsert_items(items)
    eng.ingest(random_events(rng, eng, ids, 150, 1000.0))
    if trained:
        eng.train()
    eng.ingest(random_events(rng, eng, ids, 60, 4000.0))
    for user_id in ("u1", "u4", "u9"):
        assert eng.delete_user(user_id) is not None
    eng.ingest([EventRecord("u4", ids[0], "view", 1.0, 8000.0)])  # an erased id comes back: a new user
    eng.ingest(random_events(rng, eng, ids, 40, 8100.0))
    before = lists(eng, USERS + ["newcomer"])
    eng.close()
    restarted(tmp_path, before).close()


HNSW_LM = """encoder = "fake"
[[channels]]
name = "transitions"
model = "transitions"
params = { window = 5, recent = 10, decay = 0.8, normalize = true }
[[channels]]
name = "lm"
model = "lm-recency"
params = { half_life = 2.0 }
index = "hnsw"
[[channels]]
name = "popular"
model = "popular"
quota = 50
min_history = 0
weight = 0.0
[fallback]
chain = ["popular"]
min_candidates = 20
[rank]
ranker = "none"
features = [{ name = "channels" }]
[rerank]
stages = [{ name = "seen" }, { name = "available" }, { name = "blocked" }]
"""


def test_an_hnsw_channel_keeps_its_graph_on_deletions_and_restarts_alike(tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    spec = tmp_path / "hnsw-lm.toml"
    spec.write_text(HNSW_LM)
    rng = random.Random(5)
    items = toy_items()
    ids = [r.item_id for r in items]
    home = tmp_path / "home"
    eng = Engine.open(config(home, config=str(spec)))
    eng.upsert_items(items)
    eng.ingest(random_events(rng, eng, ids, 150, 1000.0))
    eng.recommend(USERS[0])
    cache = eng.pipeline.recall.channels["lm"].model._vectors
    graph = cache.ann
    assert graph is not None
    for item_id in rng.sample(ids, 4):
        eng.delete_item(item_id)
    eng.ingest(random_events(rng, eng, ids, 60, 5000.0))
    before = lists(eng, USERS + ["newcomer"])
    assert cache.ann is graph  # deleted items' cleared content did not rebuild the graph
    eng.close()
    eng = Engine.open(config(home, config=str(spec)))
    try:
        assert_same(before, lists(eng, list(before)))
    finally:
        eng.close()


def test_a_history_of_deleted_items_only_restarts_alike(tmp_path: Path) -> None:
    """A user whose every item was deleted reads the LM channel's fallback vector (the blank
    items embed to nothing). For a version fitted on the empty store that is the mean of the
    available items, whatever batches they came in: the running service got them in three, the
    restarted one in one."""
    rng = random.Random(13)
    items = toy_items()
    ids = [r.item_id for r in items]
    eng = Engine.open(config(tmp_path))
    for part in (items[:5], items[5:25], items[25:]):
        eng.upsert_items(part)
    eng.ingest(random_events(rng, eng, ids[5:], 150, 1000.0))
    eng.ingest([EventRecord("lonely", ids[0], "view", 1.0, 2000.0), EventRecord("lonely", ids[1], "view", 1.0, 2001.0)])
    for item_id in ids[:2]:
        eng.delete_item(item_id)
    before = lists(eng, USERS + ["lonely"])
    eng.close()
    restarted(tmp_path, before).close()
