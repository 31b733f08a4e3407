"""`lmrec kg info | import`: the knowledge graph of a data set or of a service home."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from lmrec.cli.common import console, fail

app = typer.Typer(no_args_is_help=True)

def _graph_table(summary: dict, title: str) -> Table:
    t = Table(title=title)
    t.add_column("relation")
    t.add_column("item links", justify="right")
    for rel, n in sorted(summary["links_per_relation"].items(), key=lambda kv: -kv[1]):
        t.add_row(rel, str(n))
    return t


@app.command("info")
def info(
    dataset: Optional[str] = typer.Option(None, "--dataset", help="A registered data set name."),
    home: Optional[Path] = typer.Option(None, "--home", help="A service home: its catalog and imported triples."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Overrides LMREC_DATA_DIR."),
) -> None:
    """Summarise the knowledge graph built from a data set's (or a service's) item metadata and
    imported triples: items linked, entities, links per relation."""
    from lmrec.kg import KnowledgeGraph

    if (dataset is None) == (home is None):
        raise fail("give exactly one of --dataset NAME or --home FOLDER")
    if dataset is not None:
        from lmrec.cli.common import load_named_dataset

        ds = load_named_dataset(dataset, data_dir)
    else:
        ds = _home_dataset(home)  # type: ignore[arg-type]
    g = KnowledgeGraph.from_dataset(ds)
    s = g.summary()
    console.print(f"{ds.name}: {s['items_in_graph']} of {s['items']} items linked, {s['entities']} entities, "
                  f"{s['item_links']} item links, {s['entity_edges']} entity edges, "
                  f"{s['shared_slots']} entities shared by two or more items")
    console.print(_graph_table(s, "links per relation"))


def _home_dataset(home: Path):  # noqa: ANN202 - a Dataset
    from lmrec.cli.service_cmd import _open_store, build_config
    from lmrec.serving.versions import store_dataset

    cfg = build_config(home, create_home=False)
    store = _open_store(None, cfg.engine.resolved_store_url())
    try:
        ds, _ = store_dataset(store, kinds=cfg.engine.train_kinds, template=cfg.engine.item_template,
                              has_timestamps=cfg.engine.has_timestamps, home=home)
    finally:
        store.close()
    return ds


@app.command("import")
def import_triples(
    file: Path = typer.Argument(..., help="CSV / TSV triples: head, relation, tail [, head_type, tail_type]."),
    home: Path = typer.Option(..., "--home", help="The service home whose catalog the triples describe."),
    heads: str = typer.Option("items", "--heads", help="items: every head is an item id; auto: known item ids."),
    strict: bool = typer.Option(False, "--strict", help="Fail on the first bad row, naming file, line and field."),
    replace: bool = typer.Option(False, "--replace", help="Drop the triples imported before."),
) -> None:
    """Check a triple file against the service's catalog and keep it in the home
    (kg/triples.tsv); the next training (`lmrec train`, POST /admin/train) builds its graph
    from the item metadata plus these triples. A cleaning report says what was dropped."""
    import pandas as pd

    from lmrec.data.cleaning import DataError
    from lmrec.kg.triples import TRIPLE_COLUMNS, read_triples
    from lmrec.serving.versions import KG_TRIPLES, read_home_triples

    if heads not in ("items", "auto"):
        raise fail(f"--heads must be 'items' or 'auto', got {heads!r}")
    if not file.is_file():
        raise fail(f"triple file not found: {file}")
    ds = _home_dataset(home)
    try:
        frame, report = read_triples(file, ds, heads=heads, strict=strict)  # type: ignore[arg-type]
    except DataError as e:
        raise fail(str(e)) from None
    console.print(report.to_table())
    path = home / KG_TRIPLES
    old = read_home_triples(home) if not replace else None
    both = pd.concat([old, frame], ignore_index=True) if old is not None else frame
    both = both[TRIPLE_COLUMNS].drop_duplicates(ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    both.to_csv(tmp, sep="\t", index=False)
    tmp.replace(path)
    console.print(f"{len(frame)} triples kept from {file}; {len(both)} in {path}")
