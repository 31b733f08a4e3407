"""`lmrec events publish FILE --to URL`: replay a file of events into a stream."""

from __future__ import annotations

from pathlib import Path

import typer

from lmrec.cli.common import console, fail

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Publish events to a stream the service consumes (lmrec serve --events URL).")


@app.command("publish")
def publish_command(
    file: Path = typer.Argument(..., help="Events as JSON lines (one object a line) or a JSON array: user_id, "
                                "item_id, kind, value, timestamp, ranking_id, event_id."),
    to: str = typer.Option(..., "--to", help="nats://127.0.0.1:4222/lmrec.events or "
                           "redis://127.0.0.1:6379/0?stream=lmrec.events"),
    batch: int = typer.Option(500, "--batch", min=1, max=10_000, help="Events per publish call."),
) -> None:
    """Publish every event of FILE. An event without an event_id gets `<file hash>:<line>`, so
    publishing the same file again is ingested once. The whole file is checked first: a bad
    line is an error naming it, and nothing is sent."""
    from lmrec.streams import BrokerUnavailable, open_broker, read_event_file
    from lmrec.streams.publish import connect_with_retry, publish_events

    if not file.is_file():
        raise fail(f"{file}: no such file")
    try:
        events = list(read_event_file(file))
    except (ValueError, UnicodeDecodeError) as e:
        raise fail(str(e)) from None
    try:
        broker = open_broker(to)
    except (ValueError, ImportError) as e:
        raise fail(f"--to: {e}") from None
    try:
        connect_with_retry(broker)
        n = publish_events(broker, events, batch=batch)
    except BrokerUnavailable as e:
        raise fail(f"{e} (nothing more was published; publishing the file again is safe)") from None
    finally:
        broker.close()
    console.print(f"published {n} events from {file} to {broker.target}")
