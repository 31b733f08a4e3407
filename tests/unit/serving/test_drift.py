"""Drift checks (`lmrec.serving.drift`): a synthetic shift of the event-kind mix, of item
popularity and towards unknown items shows in /admin/stats and the lmrec_drift_* metrics; the
same distribution as the training data does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lmrec.serving.drift import DriftMonitor, js_divergence, tv_distance
from lmrec.serving.engine import Engine, EngineConfig
from lmrec.serving.metrics import ServiceMetrics
from lmrec.stores.records import EventRecord, ItemRecord

WINDOW = 300


def test_distances() -> None:
    p, q = {"a": 0.5, "b": 0.5}, {"c": 1.0}
    assert js_divergence(p, p) == 0.0 and tv_distance(p, p) == 0.0
    assert js_divergence(p, q) == pytest.approx(1.0) and tv_distance(p, q) == pytest.approx(1.0)
    assert 0 < js_divergence({"a": 0.9, "b": 0.1}, p) < js_divergence({"a": 1.0}, p) < 1
    m = DriftMonitor(window=2)
    m.observe([("view", "a", True), ("view", "b", True), ("click", "z", False)])
    r = m.report(None)
    assert r["window_events"] == 2 and r["kinds"]["recent"] == {"click": 0.5, "view": 0.5}
    assert r["unknown_item_share"] == 0.5 and r["item_js"] is None and r["cold_item_share"] is None


def events(rng: np.random.Generator, n: int, items: list[str], probs: np.ndarray, kinds: list[str],
           kind_probs: list[float], start: float) -> list[EventRecord]:
    its = rng.choice(items, size=n, p=probs)
    ks = rng.choice(kinds, size=n, p=kind_probs)
    return [EventRecord(f"u{rng.integers(50)}", str(i), str(k), 1.0, start + j) for j, (i, k) in enumerate(zip(its, ks))]


@pytest.fixture
def trained(tmp_path: Path) -> Engine:
    eng = Engine.open(EngineConfig(home=tmp_path, encoder="fake", index="flat", gc_freeze=False,
                                   drift_window_events=WINDOW))
    eng.upsert_items([ItemRecord(str(i), title=f"item {i}") for i in range(40)])
    rng = np.random.default_rng(0)
    # training data: views (80%) and clicks on items 0..29, popularity falling with the id
    w = 1.0 / np.arange(1, 31)
    eng.ingest(events(rng, 3000, [str(i) for i in range(30)], w / w.sum(), ["view", "click"], [0.8, 0.2], 1e6))
    eng.train()
    yield eng
    eng.close()


def test_no_shift_stays_near_the_sampling_baseline(trained: Engine) -> None:
    rng = np.random.default_rng(1)
    w = 1.0 / np.arange(1, 31)
    trained.ingest(events(rng, WINDOW, [str(i) for i in range(30)], w / w.sum(), ["view", "click"], [0.8, 0.2], 2e6))
    d = trained.stats()["drift"]
    assert d["window_events"] == WINDOW and d["training_events"] == 3000
    assert d["kinds"]["training"] == {"click": pytest.approx(0.2, abs=0.03), "view": pytest.approx(0.8, abs=0.03)}
    assert d["kind_mix_tv"] < 0.06
    assert d["item_js"] < 2 * d["item_js_baseline"] + 0.02
    assert d["unknown_item_share"] == 0.0 and d["cold_item_share"] == 0.0


def test_a_synthetic_shift_shows_in_stats_and_metrics(trained: Engine) -> None:
    rng = np.random.default_rng(2)
    # the recent window: purchases appear (40%), popularity moves to items 20..39 (10 of them without
    # training events), and 10% of events name items the catalog does not hold
    items = [str(i) for i in range(20, 40)] + ["ghost1", "ghost2"]
    probs = np.r_[np.full(20, 0.9 / 20), [0.05, 0.05]]
    trained.ingest(events(rng, WINDOW, items, probs, ["view", "click", "purchase"], [0.4, 0.2, 0.4], 2e6))
    d = trained.stats()["drift"]
    assert d["kinds"]["recent"]["purchase"] == pytest.approx(0.4, abs=0.08)
    assert d["kind_mix_tv"] > 0.3
    assert d["item_js"] > 0.5 and d["item_js"] > 3 * d["item_js_baseline"] and d["item_tv"] > 0.7
    assert d["unknown_item_share"] == pytest.approx(0.1, abs=0.05)
    assert d["cold_item_share"] == pytest.approx(0.55, abs=0.1)   # items 30..39 and the unknown ones
    m = ServiceMetrics()
    m.update_engine(trained.stats(), True)
    text = m.exposition().decode()
    assert f"lmrec_drift_window_events {float(WINDOW)}" in text
    assert 'lmrec_drift_kind_share{data="recent",kind="purchase"}' in text
    assert 'lmrec_drift_kind_share{data="training",kind="purchase"} 0.0' in text
    for line in ('lmrec_drift_item_popularity{measure="js"}', 'lmrec_drift_item_share{items="unknown"}',
                 'lmrec_drift_item_share{items="cold"}', "lmrec_drift_kind_mix_tv"):
        value = float(next(ln for ln in text.splitlines() if ln.startswith(line)).rsplit(" ", 1)[1])
        assert value > 0.05, line
