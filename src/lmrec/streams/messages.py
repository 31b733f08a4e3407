"""The message format on a stream: one JSON object per event.

    {"event_id": "e-123", "user_id": "u1", "item_id": "i9", "kind": "click", "value": 1,
     "timestamp": 1733200000.0, "ranking_id": null}

`event_id` makes redelivery harmless (it is committed once); a message without one gets
`<stream>:<position>` (a redelivered message keeps its position, a re-published one does not).
"""

from __future__ import annotations

import json
import math
from typing import Any

from lmrec.stores.records import EventRecord, check_event
from lmrec.streams.base import BadMessage

__all__ = ["decode_event", "encode_event", "MAX_MESSAGE_BYTES"]

MAX_MESSAGE_BYTES = 64 * 1024
_FIELDS = {"event_id", "user_id", "item_id", "kind", "value", "timestamp", "ranking_id"}


def encode_event(event: dict[str, Any]) -> bytes:
    """A message body (compact JSON) for an event given as a dict."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_event(data: bytes, fallback_id: str) -> tuple[str, EventRecord]:
    """(event id, event) of a message body; BadMessage(reason, detail) when it is not one."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise BadMessage("too_large", f"{len(data)} bytes, at most {MAX_MESSAGE_BYTES}")
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BadMessage("invalid_json", str(e)[:200]) from None
    if not isinstance(obj, dict):
        raise BadMessage("invalid_event", f"expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - _FIELDS)
    if unknown:
        raise BadMessage("invalid_event", f"unknown field(s) {unknown}")
    event_id = obj.get("event_id", fallback_id)
    if not isinstance(event_id, str) or not event_id.strip() or len(event_id) > 256:
        raise BadMessage("invalid_event", f"event_id must be a non-empty string of at most 256 characters, "
                                          f"got {event_id!r}"[:300])
    for name in ("value", "timestamp"):
        v = obj.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise BadMessage("invalid_event", f"{name} must be a finite number, got {v!r}"[:300])
    try:
        event = EventRecord(user_id=obj.get("user_id"), item_id=obj.get("item_id"),  # type: ignore[arg-type]
                            kind=obj.get("kind", "view"), value=float(obj.get("value", 1.0)),
                            timestamp=float(obj.get("timestamp") or 0.0), ranking_id=obj.get("ranking_id"))
        check_event(event, "event")
    except (ValueError, TypeError) as e:
        raise BadMessage("invalid_event", str(e)[:300]) from None
    return event_id, event
