"""`lmrec data export`: the store's events and users as files, pseudonymised for analysts."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lmrec.cli.common import console, fail


def export_command(
    out: Path = typer.Option(..., "--out", help="Events file (.csv or .parquet); users go beside it as "
                             "<name>.users.<ext>."),
    home: Optional[Path] = typer.Option(None, "--home", help="Service home (its sqlite store)."),
    store_url: Optional[str] = typer.Option(None, "--store-url", help="sqlite:///path.db or postgresql://..."),
    pseudonymise: bool = typer.Option(False, "--pseudonymise", help="Replace user ids (and item ids, attribute "
                                      "values) by HMAC-SHA256(secret, id), truncated hex."),
    key_file: Optional[Path] = typer.Option(None, "--key-file", help="File holding the secret (default: the "
                                            "LMREC_PSEUDONYM_KEY variable)."),
    item_ids: bool = typer.Option(True, "--pseudonymise-items/--keep-item-ids",
                                  help="With --pseudonymise: item ids too (default) or as they are."),
    keep_attributes: bool = typer.Option(False, "--keep-attributes", help="With --pseudonymise: write user "
                                         "attribute values as they are (default: keyed digests)."),
    length: int = typer.Option(32, "--length", help="Pseudonym length in hex characters (8..64)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="csv | parquet (default: from the extension)."),
) -> None:
    """Export the store's events and users (CSV or Parquet, files readable by the owner only)."""
    from lmrec.cli.service_cmd import _open_store
    from lmrec.privacy.pseudonym import Pseudonymiser, export_store, load_secret

    pseudo = None
    if pseudonymise:
        try:
            pseudo = Pseudonymiser(load_secret(key_file), length)
        except ValueError as e:
            raise fail(str(e)) from None
    elif key_file is not None:
        raise fail("--key-file is only used with --pseudonymise")
    store = _open_store(home, store_url)
    try:
        report = export_store(store, out, pseudonymiser=pseudo, items=item_ids, keep_attributes=keep_attributes,
                              fmt=fmt)
    except (ValueError, OSError) as e:
        raise fail(str(e)) from None
    finally:
        store.close()
    rows = list(report["rows"].values())
    console.print(f"wrote {rows[0]} events to {report['events']} and {rows[1]} users to {report['users']}"
                  + (" (pseudonymised)" if pseudo else ""))
