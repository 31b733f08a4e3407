"""Schemathesis against the app's own OpenAPI schema, in process (ASGI), with an admin key:
every operation, valid and invalid inputs; no response may be a 5xx or contradict the schema.
Bounded to a few dozen examples per operation (about a minute on 2 cores).

The schema is loaded eagerly from an app whose engine opens in its lifespan (which schemathesis
starts on the first request): `schemathesis.pytest.from_fixture` is not usable with pytest 9
(schemathesis 4.32 sets `Function._nodeid`, which pytest 9 no longer has).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from lmrec.serving.app import create_app
from lmrec.serving.auth import create_api_key
from lmrec.serving.config import ServiceConfig
from lmrec.stores.records import EventRecord, ItemRecord

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 20
# the app is built at import (cheap: no engine yet), so that its schema can parametrize the test
_HOME = tempfile.TemporaryDirectory(prefix="lmrec-fuzz-")
APP = create_app(ServiceConfig(engine={"home": Path(_HOME.name), "encoder": "fake", "index": "flat"},
                               rate_limit_rps=0, auth_failure_rps=0, auth_cache_seconds=60))   # the fuzzer must reach the handlers
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
_STATE: dict[str, str] = {}


def admin_headers() -> dict[str, str]:
    """Wait for the engine, then (once) load a small catalog, some events and an admin key.

    Schemathesis ends the app's lifespan after each operation's test and starts it again with
    the next request, so the engine re-opens from the same home (and store) every time."""
    st = APP.state.service
    deadline = time.monotonic() + 120
    while not st.ready:
        assert st.open_error is None, st.open_error
        assert time.monotonic() < deadline, "engine not ready after 120 s"
        time.sleep(0.05)
    if "key" not in _STATE:
        st.engine.upsert_items([ItemRecord(str(i), title=f"item number {i}", categories=("c",)) for i in range(30)])
        st.engine.ingest([EventRecord(f"u{i % 5}", str(i % 30), "view", 1.0, 1000.0 + i) for i in range(60)])
        _STATE["key"] = create_api_key(st.engine.store, "fuzz", ["admin"])[0]
    return {"Authorization": f"Bearer {_STATE['key']}"}


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_api_conforms_to_its_schema(case: Any) -> None:
    if not APP.state.service.ready:
        case.call()   # the first request starts the app's lifespan, which opens the engine
    excluded = []
    if case.operation.label == "POST /admin/train":
        # `params` depend on the model named in `name` (lmrec models lists them): the schema can only say
        # "an object", so a schema-valid but unknown parameter is rightly a 422 naming `params`
        excluded.append(schemathesis.checks.positive_data_acceptance)
    if case.operation.label == "POST /events":
        # by contract a batch keeps its valid events and answers 200 listing the invalid ones, so a batch
        # with invalid events is not "rejected"; `every_event_is_accounted_for` checks that answer instead
        excluded.append(schemathesis.checks.negative_data_rejection)
        if _far_future(case.body):
            # event times are bounded by the server clock (max_future_seconds), which a schema cannot
            # state: a schema-valid time in 2099 is rightly refused, naming `timestamp`
            excluded.append(schemathesis.checks.positive_data_acceptance)
    if case.operation.label == "POST /recommend" and isinstance(case.body, dict) \
            and isinstance(case.body.get("history"), list) and (_far_future(case.body["history"])
                                                                 or _mixed_times(case.body["history"])):
        # a session's times are bounded by the server clock too, and every event has one or none has
        # (else its order is ambiguous): refused naming `history[j].timestamp`; no schema states either
        excluded.append(schemathesis.checks.positive_data_acceptance)
    if case.operation.label == "POST /admin/experiments" and isinstance(case.body, dict) \
            and case.body.get("a") == case.body.get("b"):
        # the two variants must be two versions: refused naming `b` (JSON Schema cannot compare fields)
        excluded.append(schemathesis.checks.positive_data_acceptance)
    if case.operation.label in ("PUT /items/{item_id}", "POST /items", "PUT /users/{user_id}") \
            and _unstorable(case.body):
        # attribute keys and values with NUL (PostgreSQL cannot store it, so no backend accepts it) or
        # nested deeper than the limit: refused with a reason; JSON Schema cannot describe either
        excluded.append(schemathesis.checks.positive_data_acceptance)
    # timeout: POST /admin/train?wait=true fits a pipeline inside the request (seconds; more on a loaded machine)
    case.call_and_validate(headers=admin_headers(), excluded_checks=excluded,
                           additional_checks=[every_event_is_accounted_for], timeout=120)


def _far_future(body: Any) -> bool:
    events = body["events"] if isinstance(body, dict) and "events" in body else body
    events = events if isinstance(events, list) else [events]
    limit = time.time() + APP.state.service.config.max_future_seconds
    return any(isinstance(e, dict) and isinstance(e.get("timestamp"), (int, float)) and e["timestamp"] > limit
               for e in events)


def _mixed_times(history: list[Any]) -> bool:
    return len({isinstance(e, dict) and e.get("timestamp") is not None for e in history}) > 1


def _unstorable(value: Any, depth: int = 0) -> bool:
    from lmrec.serving.schemas import MAX_ATTRIBUTE_DEPTH

    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return depth > MAX_ATTRIBUTE_DEPTH or any(_unstorable(k, depth) or _unstorable(v, depth + 1)
                                                       for k, v in value.items())
    if isinstance(value, list):
        return depth > MAX_ATTRIBUTE_DEPTH or any(_unstorable(v, depth + 1) for v in value)
    return False


def every_event_is_accounted_for(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 200 from POST /events accepted, replayed (an Idempotency-Key retry of an event already
    stored) or rejected each event of the batch exactly once."""
    if case.operation.label != "POST /events" or response.status_code != 200:
        return None
    body = case.body
    events = body["events"] if isinstance(body, dict) and "events" in body else body
    n = len(events) if isinstance(events, list) else 1
    answer = response.json()
    rejected = {r["index"] for r in answer["rejected"]}
    assert answer["accepted"] == len(answer["seqs"]), answer
    assert answer["accepted"] + answer.get("replayed", 0) + len(rejected) == n, answer
    assert rejected <= set(range(n)), answer
    return True
