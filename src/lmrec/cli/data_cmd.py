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
    name: str = typer.Argument(None, help="A data set name; omit to list the registered data sets."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Overrides LMREC_DATA_DIR."),
) -> None:
    """Describe a registered data set (counts, time range, event kinds, given split)."""
    from lmrec.data.loaders import DATASETS, dataset_folder, load_dataset, load_faq, load_relevance

    if name is None:
        t = Table(title="registered data sets")
        for col in ("name", "kind", "folder", "present", "description"):
            t.add_column(col)
        for n, spec in DATASETS.items():
            folder = dataset_folder(n, data_dir)
            t.add_row(n, spec.kind, str(folder), "yes" if folder.is_dir() else "no", spec.description)
        console.print(t)
        return
    if name not in DATASETS:
        raise fail(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    try:
        kind = DATASETS[name].kind
        obj = (load_relevance if kind == "relevance" else load_faq if kind == "faq" else load_dataset)(name, data_dir)
    except (FileNotFoundError, ValueError) as e:
        raise fail(str(e)) from None
    summary = obj.summary()
    if DATASETS[name].kind == "interactions":
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
    path: Path = typer.Argument(..., help="Events file (CSV, TSV, JSONL or Parquet)."),
    out: Path = typer.Option(..., "--out", "-o", help="Cleaned events (.csv, .jsonl or .parquet)."),
    user: str = USER, item: str = ITEM, timestamp: str = TS, kind: Optional[str] = KIND,
    value: Optional[str] = VALUE, timestamp_format: Optional[str] = TS_FMT, default_kind: str = DEFAULT_KIND,
    fmt: Optional[str] = FMT, strict: bool = STRICT,
    k_core: Optional[int] = typer.Option(None, "--k-core", help="Keep users and items with at least K events."),
    report_json: Optional[Path] = typer.Option(None, "--report", help="Write the report as JSON (default: OUT.report.json)."),
) -> None:
    """Clean an events file: drop bad rows (reported with examples) and write the rest."""
    import pandas as pd

    from lmrec.types import EventKind

    mapping = _mapping(user, item, timestamp or None, kind, value, timestamp_format, default_kind)
    ds, report = _load_file(path, mapping, strict, fmt, k_core)
    inter = ds.interactions
    frame = pd.DataFrame({
        "user_id": ds.users.to_ids(inter.user),
        "item_id": ds.items.to_ids(inter.item),
        "timestamp": inter.timestamp,
        "kind": [EventKind(k).name.lower() for k in inter.kind],
        "value": inter.value,
    })
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = out.suffix.lower()
    if suffix == ".parquet":
        frame.to_parquet(out, index=False)
    elif suffix in (".jsonl", ".json"):
        frame.to_json(out, orient="records", lines=True)
    else:
        frame.to_csv(out, index=False)
    report_path = report_json or out.with_name(out.name + ".report.json")
    report_path.write_text(json.dumps(report.to_dict(), indent=2, default=str))
    console.print(report)
    console.print(f"wrote {len(frame)} events to {out} and the report to {report_path}")


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
