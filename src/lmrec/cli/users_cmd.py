"""`lmrec users delete`: erase a user from a service's store while it is not running."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lmrec.cli.common import console, fail
from lmrec.cli.service_cmd import HomeOpt, StoreOpt

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Erase users from the service's store.")


@app.command("delete")
def delete(user_id: str = typer.Argument(..., help="The user id to erase."),
           home: Optional[Path] = HomeOpt, store_url: Optional[str] = StoreOpt) -> None:
    """Erase a user: their events, attributes and logged rankings leave the store, and the
    service home's erasure log makes saved versions fitted before now forget them when a
    service loads them. A running service keeps them in memory until it restarts or reloads:
    use DELETE /users/{id} on a running service instead."""
    from lmrec.cli.service_cmd import _open_store
    from lmrec.serving.erasure import ErasureLog

    if not user_id.strip():
        raise fail("USER must be a non-empty id")
    store = _open_store(home, store_url)
    try:
        seq = store.last_seq()
        removed = store.delete_user(user_id)
    finally:
        store.close()
    if not any(removed.values()):
        raise fail(f"user {user_id!r} has no events, attributes or rankings in the store")
    if home is not None:
        ErasureLog(home.expanduser().resolve()).add(user_id, seq)
    console.print(f"erased: {removed['events']} events, {removed['record']} attribute records, "
                  f"{removed['rankings']} rankings"
                  + ("" if home is not None else " (no --home: saved versions are not told; retrain before serving)"))
