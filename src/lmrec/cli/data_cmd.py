"""`lmrec data info | validate | clean | download | export`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from lmrec.cli.common import console, fail

app = typer.Typer(no_args_is_help=True)


def _mapping(user: str, item: str, timestamp: Optional[str], kind: Optional[str], value: Optional[str],
             timestamp_format: Optional[str], default_kind: str):
    from lmrec.data.loaders import ColumnMapping

    try:
        return ColumnMapping(user=user, item=item, timestamp=timestamp, kind=kind, value=value,
                             timestamp_format=timestamp_format, default_kind=default_kind)
    except Exception as e:
        raise fail(f"bad column mapping: {e}") from None


# shared options of validate / clean
USER = typer.Option("user_id", "--user", help="Column with the user id.")
ITEM = typer.Option("item_id", "--item", help="Column with the item id.")
TS = typer.Option("timestamp", "--timestamp", help="Column with the event time ('' for none).")
KIND = typer.Option(None, "--kind", help="Column with the event kind (view, click, cart, purchase, rating, impression).")
VALUE = typer.Option(None, "--value", help="Column with the rating / value.")
TS_FMT = typer.Option(None, "--timestamp-format", help="unix | unix_ms | iso | a strftime pattern (default: detect).")
DEFAULT_KIND = typer.Option("view", "--default-kind", help="Event kind when there is no kind column.")
FMT = typer.Option(None, "--format", help="csv | tsv | jsonl | parquet (default: from the extension).")
STRICT = typer.Option(False, "--strict", help="Fail on the first bad row, naming file, line and field.")


@app.command("info")
def info(
    name: str = typer.Argument(None, help="A data set name or the path of a data-set spec / events file; "
                                          "omit to list the registered data sets."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Overrides LMREC_DATA_DIR."),
) -> None:
    """Describe a data set (counts, time range, event kinds, the default split and its sizes)."""
    from lmrec.data.loaders import DATASETS, dataset_folder, load_dataset, load_faq, load_relevance

    if name is None:
        root = dataset_folder(next(iter(DATASETS)), data_dir).parent
        t = Table(title=f"registered data sets (in {root})", title_justify="left")
        t.add_column("name", no_wrap=True)
        t.add_column("kind", no_wrap=True)
        t.add_column("here", no_wrap=True)
        t.add_column("description", overflow="fold")
        for n, spec in DATASETS.items():
            folder = dataset_folder(n, data_dir)
            t.add_row(n, spec.kind, "yes" if folder.is_dir() else "no", spec.description)
        console.print(t)
        console.print("own data: lmrec data info FILE.toml (a data-set spec, docs/own-data.md)")
        return
    if name not in DATASETS:  # one's own: a spec TOML or an events file
        from lmrec.cli.common import load_named_dataset

        obj = load_named_dataset(name, data_dir)
        kind = "interactions"
    else:
        try:
            kind = DATASETS[name].kind
            obj = (load_relevance if kind == "relevance" else load_faq if kind == "faq" else load_dataset)(name, data_dir)
        except (FileNotFoundError, ValueError) as e:
            raise fail(str(e)) from None
    summary = obj.summary()
    if kind == "interactions":
        from lmrec.eval.experiment import make_split

        summary["default_split"] = make_split(obj).summary()
    t = Table(title=name, show_header=False)
    for k, v in summary.items():
        t.add_row(str(k), json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v))
    console.print(t)


def _load_file(path: Path, mapping, strict: bool, fmt: Optional[str], k_core: Optional[int] = None,
               rating_range: Optional[tuple[float, float]] = None):
    from lmrec.data.cleaning import CleaningRules, DataError
    from lmrec.data.loaders import load_events_file

    if not path.exists():
        raise fail(f"{path}: no such file")
    rules = CleaningRules(kcore=k_core, **({"rating_range": rating_range} if rating_range else {}))
    try:
        return load_events_file(path, mapping, strict=strict, fmt=fmt, rules=rules)
    except DataError as e:
        raise fail(str(e)) from None
    except (ValueError, KeyError) as e:
        raise fail(f"{path}: {e}") from None


@app.command("validate")
def validate(
    path: Path = typer.Argument(..., help="Events file (CSV, TSV, JSONL or Parquet)."),
    user: str = USER, item: str = ITEM, timestamp: str = TS, kind: Optional[str] = KIND,
    value: Optional[str] = VALUE, timestamp_format: Optional[str] = TS_FMT, default_kind: str = DEFAULT_KIND,
    fmt: Optional[str] = FMT, strict: bool = STRICT,
    report_json: Optional[Path] = typer.Option(None, "--report", help="Also write the report as JSON."),
) -> None:
    """Check an events file and print the cleaning report; exit code 1 when any row is bad."""
    mapping = _mapping(user, item, timestamp or None, kind, value, timestamp_format, default_kind)
    ds, report = _load_file(path, mapping, strict, fmt)
    console.print(report)
    if report_json:
        report_json.write_text(json.dumps(report.to_dict(), indent=2, default=str))
    if report.dropped:
        raise typer.Exit(1)
    console.print(f"[green]ok[/]: {report.rows_in} rows, {ds.n_users} users, {ds.n_items} items")


@app.command("clean")
def clean(
    path: Path = typer.Argument(..., help="Events file (CSV, TSV, JSONL or Parquet) or a data-set spec (.toml)."),
    out: Path = typer.Option(..., "--out", "-o", help="Cleaned events (.csv, .jsonl or .parquet); a data-set "
                                                      "spec OUT.toml is written beside it."),
    user: str = USER, item: str = ITEM, timestamp: str = TS, kind: Optional[str] = KIND,
    value: Optional[str] = VALUE, timestamp_format: Optional[str] = TS_FMT, default_kind: str = DEFAULT_KIND,
    fmt: Optional[str] = FMT, strict: bool = STRICT,
    k_core: Optional[int] = typer.Option(None, "--k-core", help="Keep users and items with at least K events."),
    report_json: Optional[Path] = typer.Option(None, "--report", help="Write the report as JSON (default: OUT.report.json)."),
) -> None:
    """Clean an events file (or the data set a spec describes): drop bad rows (reported with
    examples), write the rest, and write a data-set spec for it that every command reads
    (`lmrec eval --dataset OUT.toml ...`)."""
    from lmrec.data.spec import DataSpec, EventsSection

    if path.suffix.lower() == ".toml" or path.is_dir():
        from lmrec.data.cleaning import DataError
        from lmrec.data.spec import load_spec, load_spec_dataset

        try:
            spec = load_spec(path)
            if k_core is not None:
                spec.cleaning.k_core = k_core
            ds, report = load_spec_dataset(spec, strict=strict)
        except (FileNotFoundError, DataError, ValueError) as e:
            raise fail(str(e)) from None
    else:
        mapping = _mapping(user, item, timestamp or None, kind, value, timestamp_format, default_kind)
        ds, report = _load_file(path, mapping, strict, fmt, k_core)
        spec = DataSpec(events=EventsSection(path=path, default_kind=default_kind,
                                             timestamp=timestamp or None))
        spec.source = path.resolve()
    spec_out = _write_clean(ds, spec, out)
    report_path = report_json or out.with_name(out.name + ".report.json")
    report_path.write_text(json.dumps(report.to_dict(), indent=2, default=str))
    console.print(report)
    console.print(f"wrote {len(ds.interactions)} events to {out}, the report to {report_path} and the data-set "
                  f"spec to {spec_out}: lmrec data info {spec_out}", soft_wrap=True)


def _write_frame(frame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = out.suffix.lower()
    if suffix == ".parquet":
        frame.to_parquet(out, index=False)
    elif suffix in (".jsonl", ".json"):
        frame.to_json(out, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_csv(out, index=False)


def _write_clean(ds, spec, out: Path) -> Path:
    """Write the cleaned events (and items) of `ds` beside `out` with a spec describing them;
    returns the spec's path."""
    import numpy as np
    import pandas as pd

    from lmrec.data.spec import DataSpec, EventsSection, ItemsSection, SplitSection, spec_toml
    from lmrec.types import EventKind

    inter = ds.interactions
    frame = pd.DataFrame({
        "user_id": ds.users.to_ids(inter.user),
        "item_id": ds.items.to_ids(inter.item),
        "timestamp": inter.timestamp,
        "kind": [EventKind(k).name.lower() for k in inter.kind],
        "value": inter.value,
    })
    split = spec.split.model_copy()
    labels = ds.info.get("given_labels")
    if labels is not None:
        frame["split"] = labels
        split.column = "split"
    for part in ("test", "valid"):  # session files stay where they are
        f = getattr(split, part)
        if f is not None:
            setattr(split, part, f.model_copy(update={"path": spec.resolve(f.path)}))
    _write_frame(frame, out)
    ordered = "timestamp" if ds.has_timestamps else "position"
    events = EventsSection(path=Path(out.name), kind="kind", value="value",
                           timestamp="timestamp" if ds.has_timestamps else None,
                           timestamp_format="unix" if ds.has_timestamps else None, order=ordered,
                           format=None)
    items = None
    t = ds.item_table
    if t is not None and spec.items is not None:
        item_out = out.with_name(out.stem + ".items" + out.suffix)
        cols = {"item_id": list(ds.items.ids), "title": list(t.title),
                "categories": ["|".join(c) for c in t.categories]}
        cols.update({k: list(v) for k, v in t.text.items() if k not in cols})
        cols.update({k: list(v) for k, v in t.attributes.items() if k not in cols})
        cols["created_at"] = np.asarray(t.created_at)
        cols["available"] = np.asarray(t.available)
        _write_frame(pd.DataFrame(cols), item_out)
        items = ItemsSection(path=Path(item_out.name), id="item_id", title="title", categories="categories",
                             category_sep="|", text=[k for k in t.text if k not in ("item_id", "title")],
                             attributes=[k for k in t.attributes if k not in ("item_id", "title")],
                             created_at="created_at", created_at_format="unix", available="available")
    clean_spec = DataSpec(name=spec.name or ds.name, description=spec.description, template=spec.template,
                          events=events, items=items, split=SplitSection(**split.model_dump()))
    clean_spec.cleaning.rating_range = spec.cleaning.rating_range
    spec_out = out.with_suffix(".toml")
    spec_out.write_text(spec_toml(clean_spec), encoding="utf-8")
    return spec_out


@app.command("load")
def load(
    dataset: str = typer.Argument(..., help="A data-set spec (.toml), an events file or a registered data set name."),
    home: Optional[Path] = typer.Option(None, "--home", help="Service home folder (its sqlite store is <home>/lmrec.db)."),
    store_url: Optional[str] = typer.Option(None, "--store-url", help="Record store URL (default: the sqlite file in --home)."),
    create: bool = typer.Option(False, "--create", help="Create the home's store when it does not exist yet."),
    items_only: bool = typer.Option(False, "--items-only", help="Write the catalog only, no events."),
    strict: bool = STRICT,
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Overrides LMREC_DATA_DIR."),
) -> None:
    """Write a data set's items and events into a service's store (bulk, before `lmrec serve`;
    a running service takes new data through POST /items and /events)."""
    from lmrec.cli.common import load_named_dataset
    from lmrec.cli.progress import Reporter
    from lmrec.cli.service_cmd import _open_store
    from lmrec.stores.bulk import import_dataset

    ds = load_named_dataset(dataset, data_dir, strict=strict)
    store = _open_store(home, store_url, create=create,
                        hint="create it with --create")
    try:
        with Reporter(f"load {ds.name} events", total=len(ds.interactions), unit="events") as rep:
            counts = import_dataset(store, ds, items_only=items_only,
                                    on_progress=lambda done, total: rep.update(completed=done))
        total = {"items": store.count_items(), "events": store.count_events()}
    finally:
        store.close()
    console.print(f"[green]loaded[/] {counts['items']} items and {counts['events']} events of {ds.name}; the store "
                  f"now holds {total['items']} items and {total['events']} events", soft_wrap=True)


@app.command("download")
def download(
    name: str = typer.Argument("ml-100k", help="Data set to download (ml-100k)."),
    dest: Optional[Path] = typer.Option(None, "--dest", help="Data directory (default: LMREC_DATA_DIR)."),
) -> None:
    """Download a public data set with checksum verification (needs the internet)."""
    from lmrec.data.download import DownloadError
    from lmrec.data.download import download as do_download

    try:
        path = do_download(name, dest)
    except (DownloadError, ValueError) as e:
        raise fail(str(e)) from None
    console.print(f"[green]downloaded[/] {name} to {path}")


from lmrec.cli.export_cmd import export_command  # noqa: E402 - registered here, defined with its helpers

app.command("export")(export_command)
