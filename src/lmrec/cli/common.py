"""Helpers shared by CLI commands: console, data set resolution, error reporting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a red error line on stderr and return an Exit to raise.

    The message is printed as given (no markup, so `events[3]` stays as written) and is not
    wrapped at the terminal width: one problem, one line, which a script can grep."""
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def one_line(exc: BaseException) -> str:
    """An exception as one line: its message with the lines joined (a database driver's
    error spans several), or its type when it has no message."""
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def parse_params(text: str | None) -> dict[str, Any]:
    """Parse model parameters given as JSON ('{"lam": 500}') or as 'a=1,b=x'."""
    if not text:
        return {}
    text = text.strip()
    if text.startswith("{"):
        try:
            out = json.loads(text)
        except json.JSONDecodeError as e:
            raise fail(f"--params is not valid JSON: {e}") from None
        if not isinstance(out, dict):
            raise fail("--params must be a JSON object")
        return out
    out: dict[str, Any] = {}
    for part in text.split(","):
        if "=" not in part:
            raise fail(f"--params: expected key=value, got {part!r}")
        k, v = part.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v.strip()
    return out


def load_named_dataset(name: str, data_dir: Path | None = None, *, strict: bool = False):
    """An interaction data set: a registered name, or one's own (a data-set spec TOML, a folder
    with dataset.toml, an events file); any problem is one CLI error line."""
    from lmrec.data.cleaning import DataError
    from lmrec.data.loaders import DATASETS, load_dataset
    from lmrec.data.spec import is_spec_path

    if name not in DATASETS and not is_spec_path(name):
        raise fail(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}, or the path of a "
                   "data-set spec (.toml) or an events file (see docs/own-data.md)")
    try:
        return load_dataset(name, data_dir, strict=strict)
    except (FileNotFoundError, DataError) as e:
        raise fail(str(e)) from None
    except ValueError as e:
        raise fail(str(e) if name in DATASETS else f"{name}: {e}" if name not in str(e) else str(e)) from None
