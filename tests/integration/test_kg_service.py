"""The knowledge graph in the service: `lmrec kg import` keeps cleaned triples in the home,
a training builds its graph from them plus the catalog, a new item joins at once, and
`?explain=true` names the path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from typer.testing import CliRunner

from lmrec.cli.main import app
from lmrec.serving.engine import Engine, EngineConfig
from lmrec.stores.records import EventRecord, ItemRecord

runner = CliRunner()

KG_TOML = """encoder = "fake"
[[channels]]
name = "kg"
model = "kg"
params = { relation_weights = "uniform", max_df = 0.5 }
quota = 30
[[channels]]
name = "popular"
model = "popular"
weight = 0.0
[fallback]
chain = ["popular"]
[rank]
ranker = "none"
features = [{ name = "channels" }, { name = "kg" }]
"""


def _items() -> list[ItemRecord]:
    return [ItemRecord(f"m{i}", title=f"Movie {i}", categories=("drama" if i % 2 else "comedy",),
                       attributes={"brand": f"studio{i % 4}"}) for i in range(16)]


def test_imported_triples_reach_the_served_graph_and_its_explanations(tmp_path: Path) -> None:
    cfg = EngineConfig(home=tmp_path, encoder="fake", index="flat")
    with Engine.open(cfg) as eng:
        eng.upsert_items(_items())
        eng.ingest([EventRecord(f"u{u}", f"m{(u + k) % 16}", "view", 1.0, 1000.0 + 10 * u + k)
                    for u in range(12) for k in range(3)])
    triples = tmp_path / "kg.tsv"
    triples.write_text("head\trelation\ttail\nm1\tdirector\tp9\nm6\tdirector\tp9\nm6\tdirector\tp9\n"
                       "nope\tdirector\tp9\nm2\tdirector\n")
    res = runner.invoke(app, ["kg", "import", str(triples), "--home", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "unknown_item" in res.output and "duplicate" in res.output and "malformed_row" in res.output
    assert "2 triples kept" in res.output
    assert (tmp_path / "kg" / "triples.tsv").is_file()
    # importing again adds nothing new; a strict import names the first bad line
    res = runner.invoke(app, ["kg", "import", str(triples), "--home", str(tmp_path), "--strict"])
    assert res.exit_code != 0 and "line 4" in res.output
    res = runner.invoke(app, ["kg", "info", "--home", str(tmp_path)])
    assert res.exit_code == 0 and "director" in res.output, res.output
    res = runner.invoke(app, ["kg", "import", str(triples), "--home", str(tmp_path / "nowhere")])
    assert res.exit_code != 0 and "no lmrec store" in res.output
    conf = tmp_path / "kg.toml"
    conf.write_text(KG_TOML)
    with Engine.open(cfg) as eng:
        eng.train(str(conf))
        g = eng.pipeline.knowledge_graph()
        assert g is not None and "director" in g.relations
        eng.ingest([EventRecord("fan", "m1", "view", 1.0, 5000.0)])
        r = eng.recommend("fan", k=5, explain=True)
        ids = [i.item_id for i in r.items]
        # m6 shares only the imported director with m1 (m5, m9, m13 share genre and studio)
        assert "m6" in ids and set(ids) <= {"m5", "m6", "m9", "m13", "m3", "m7", "m11", "m15"}, ids
        six = r.items[ids.index("m6")]
        assert "same director (entity p9)" in str(six.explanation), six.explanation
        assert "same brand (studio1)" in str(r.items[ids.index("m13")].explanation)
        # a new item joins the graph from its metadata at once
        eng.upsert_items([ItemRecord("new", title="New", categories=("drama",), attributes={"brand": "studio1"})])
        r = eng.recommend("fan", k=16)
        assert "new" in [i.item_id for i in r.items]


ML100K_KG = """encoder = "fake"
[[channels]]
name = "kg"
model = "kg"
quota = 50
[[channels]]
name = "popular"
model = "popular"
weight = 0.0
[rank]
ranker = "none"
features = [{ name = "channels" }, { name = "kg" }]
"""


@pytest.mark.shared_data("ml-100k")
def test_pipeline_command_shows_kg_paths(tmp_path: Path, shared_data_dir: Path) -> None:
    from lmrec.cli.common import console

    conf = tmp_path / "kg.toml"
    conf.write_text(ML100K_KG)
    width = console._width
    console.width = 400  # one line per table row, whatever other tests set
    try:
        res = runner.invoke(app, ["pipeline", "--dataset", "ml-100k", "--config", str(conf), "--user", "196",
                                  "--data-dir", str(shared_data_dir)])
    finally:
        console._width = width
    assert res.exit_code == 0, res.output
    assert re.search(r"same (category|decade|release date) \(", res.output), res.output
    res = runner.invoke(app, ["kg", "info", "--dataset", "ml-100k", "--data-dir", str(shared_data_dir)])
    assert res.exit_code == 0 and "category" in res.output and "release_date" in res.output, res.output
