"""The service handles Chinese and English without a flag (issue 16, item 7): `encoder =
"auto"` picks the catalog encoder of a home by its language when it is first served and keeps
it (recorded in <home>/encoder.json) so the catalog's vectors never change meaning."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmrec.serving.encoders import ENCODER_FILE, recorded_encoder, resolve_encoder
from lmrec.stores.records import ItemRecord
from lmrec.stores.sql import open_store


@pytest.fixture()
def store(tmp_path: Path):
    s = open_store(f"sqlite:///{tmp_path / 'lmrec.db'}")
    yield s
    s.close()


def test_empty_catalog_gets_the_multilingual_encoder_and_keeps_it(tmp_path: Path, store) -> None:
    assert resolve_encoder(tmp_path, "auto", store)[0] == "e5-small"
    assert recorded_encoder(tmp_path) == "e5-small"
    store.upsert_items([ItemRecord("1", title="Trail running shoe")])
    name, why = resolve_encoder(tmp_path, "auto", store)   # recorded: English items later change nothing
    assert name == "e5-small" and ENCODER_FILE in why


@pytest.mark.parametrize("titles, expected", [
    (["Trail running shoe", "Rain jacket"], "minilm"),
    (["Trail running shoe", "感冒咳嗽吃什么药"], "e5-small"),
    (["ランニングシューズ"], "e5-small"),
    (["등산화"], "e5-small"),
])
def test_first_start_chooses_by_the_catalog_language(tmp_path: Path, store, titles, expected) -> None:
    store.upsert_items([ItemRecord(str(i), title=t) for i, t in enumerate(titles)])
    assert resolve_encoder(tmp_path, "auto", store)[0] == expected
    assert recorded_encoder(tmp_path) == expected


def test_an_explicit_encoder_wins_and_is_recorded(tmp_path: Path, store) -> None:
    store.upsert_items([ItemRecord("1", title="感冒咳嗽吃什么药")])
    assert resolve_encoder(tmp_path, "fake-384", store) == ("fake-384", "configured")
    assert resolve_encoder(tmp_path, "auto", store)[0] == "fake-384"
    assert resolve_encoder(tmp_path, "auto", store, record=False)[0] == "fake-384"


def test_not_recording_leaves_the_home_alone(tmp_path: Path, store) -> None:
    assert resolve_encoder(tmp_path, "auto", store, record=False)[0] == "e5-small"
    assert not (tmp_path / ENCODER_FILE).exists()


def test_engine_serves_chinese_and_english_without_a_flag(tmp_path: Path) -> None:
    """A home whose catalog holds Chinese products: the engine opened with the default
    settings embeds with the multilingual encoder, and a Chinese query finds the Chinese item."""
    from lmrec.serving.engine import Engine
    from lmrec.serving.engine_config import EngineConfig

    s = open_store(f"sqlite:///{tmp_path / 'lmrec.db'}")
    s.upsert_items([ItemRecord("zh1", title="儿童感冒药 退烧止咳"), ItemRecord("zh2", title="不锈钢保温杯 500毫升"),
                    ItemRecord("en1", title="Stainless steel thermos bottle"),
                    ItemRecord("en2", title="Children's cold and cough medicine")])
    s.close()
    cfg = EngineConfig(home=tmp_path, index="flat", gc_freeze=False)
    assert cfg.encoder == "auto"
    with Engine.open(cfg) as eng:
        assert eng.config.encoder == "e5-small"
        top = [h.item_id for h in eng.search("保温杯", k=4).items][:2]
        assert "zh2" in top
    assert recorded_encoder(tmp_path) == "e5-small"
