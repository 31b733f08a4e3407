"""Sessions in the service: recommendations for a history given with the request (an anonymous
visitor, a basket, a "history -> next item" test row), through the served pipeline
(`RecPipeline.recommend_for_history`), touching no stored state.

Item ids the served version does not know are left out of the history and reported; events of
kinds the service does not learn from (`train_kinds`) are left out as they would be for a stored
user, and counted. Without timestamps the events count in the order given; with them, in time
order (every event has one, or none has).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lmrec.serving.ranking import RankedItem, Ranking, StageTimer
from lmrec.stores.records import EVENT_KINDS

__all__ = ["SessionEvent", "SessionRanking", "check_session", "session_ranking", "MAX_SESSION"]

#: most events a session may give
MAX_SESSION = 1000


@dataclass(frozen=True)
class SessionEvent:
    """One event of a session; `timestamp` None: not given (the order counts)."""

    item_id: str
    kind: str = "view"
    timestamp: float | None = None
    value: float = 1.0


@dataclass
class SessionRanking:
    """A session's ranking, the history's item ids the served version does not know (left out)
    and how many events were left out for their kind."""

    ranking: Ranking
    unknown_items: list[str] = field(default_factory=list)
    ignored_events: int = 0


def check_session(history: Sequence[SessionEvent], *, now: float | None = None,
                  max_future_seconds: float = 86_400.0) -> None:
    """ValueError naming `history[j].field` for a malformed session."""
    if not isinstance(history, Sequence) or isinstance(history, (str, bytes)):
        raise ValueError("history: must be a list of events")
    if len(history) > MAX_SESSION:
        raise ValueError(f"history: {len(history)} events; at most {MAX_SESSION}")
    now = time.time() if now is None else now
    timed = [e.timestamp is not None for e in history]
    for j, e in enumerate(history):
        where = f"history[{j}]"
        if not isinstance(e, SessionEvent):
            raise ValueError(f"{where}: expected a SessionEvent, got {type(e).__name__}")
        if not isinstance(e.item_id, str) or not e.item_id.strip() or e.item_id != e.item_id.strip() \
                or "/" in e.item_id or any(ord(ch) < 32 or ord(ch) == 127 for ch in e.item_id):
            raise ValueError(f"{where}.item_id: not a valid id: {e.item_id!r}")
        if e.kind not in EVENT_KINDS:
            raise ValueError(f"{where}.kind: unknown event kind {e.kind!r}; expected one of {', '.join(EVENT_KINDS)}")
        if isinstance(e.value, bool) or not isinstance(e.value, (int, float)) or not math.isfinite(e.value):
            raise ValueError(f"{where}.value: must be a finite number")
        if e.timestamp is not None:
            if isinstance(e.timestamp, bool) or not isinstance(e.timestamp, (int, float)) \
                    or not math.isfinite(e.timestamp) or e.timestamp <= 0:
                raise ValueError(f"{where}.timestamp: must be positive epoch seconds")
            if e.timestamp > now + max_future_seconds:
                raise ValueError(f"{where}.timestamp: is {e.timestamp - now:.0f} s after the server clock; at most "
                                 f"{max_future_seconds:.0f} s is accepted (max_future_seconds)")
        if timed[j] != timed[0]:
            raise ValueError(f"{where}.timestamp: give every event of a session a timestamp, or none")


def session_ranking(engine: Any, history: Sequence[SessionEvent], k: int, *, explain: bool = False,
                    max_future_seconds: float = 86_400.0) -> SessionRanking:
    """The served pipeline's top-k for `history` (see the module docstring), logged like any
    ranking (user None, context `session: true`)."""
    check_session(history, max_future_seconds=max_future_seconds)
    live = engine._live
    if live is None:
        raise RuntimeError("no pipeline version is served yet")
    t = StageTimer()
    timings: dict[str, float] = {}
    with engine._lock.read():
        pipe = live.pipeline
        ds = pipe.dataset
        index = [ds.items.get(e.item_id) for e in history]
        unknown = list(dict.fromkeys(e.item_id for e, i in zip(history, index) if i < 0))
        known = [(e, i) for e, i in zip(history, index) if i >= 0]
        learned = set(engine.config.train_kinds)
        ignored = sum(1 for e, _ in known if e.kind not in learned)
        timed = bool(known) and known[0][0].timestamp is not None
        c = pipe.recommend_for_history(
            [i for _, i in known], k, kinds=[e.kind for e, _ in known],
            times=[int(math.floor(e.timestamp)) for e, _ in known] if timed else None,
            values=[float(e.value) for e, _ in known], keep_kinds=learned, explain=explain, timings=timings)
        ids = ds.items.ids
        items = [RankedItem(ids[i], round(float(sc), 6), tuple(src)) for i, sc, src in
                 zip(c.items.tolist(), c.scores.tolist(), c.sources or [()] * len(c))]
        if explain and c.explanations is not None:
            for it, ex in zip(items, c.explanations):
                it.explanation = ex
    t.ms.update({key: round(v, 3) for key, v in timings.items()})
    ranking = engine._ranking("recommend", None, items, live.name, t,
                              {"k": k, "session": True, "history": len(history), "unknown_items": len(unknown)})
    return SessionRanking(ranking, unknown, ignored)
