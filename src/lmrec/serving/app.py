"""The HTTP service: `create_app()` builds the FastAPI application over one `Engine`.

The app is a thin, stateless layer: it authenticates and rate-limits the caller, validates
the request, calls the engine from the thread pool (the engine's reads run concurrently, its
writes take the engine's lock), and turns the result into JSON. The engine opens in the
lifespan handler on a background thread, so `/health` answers at once while a large catalog
loads and `/ready` says when traffic may be sent.

Run it with `lmrec serve --home DIR`, or embed it:

    >>> from lmrec.serving.app import create_app
    >>> from lmrec.serving.config import ServiceConfig
    >>> app = create_app(ServiceConfig(engine={"home": "/tmp/lmrec-doc", "encoder": "fake"}))
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmrec.serving import schemas as s
from lmrec.serving.auth import ANONYMOUS, ApiKeyVerifier, AuthError, Principal
from lmrec.serving.config import ServiceConfig
from lmrec.serving.masking import APP_LOGGER, Masker, exception_summary
from lmrec.serving.metrics import CONTENT_TYPE_LATEST, ObserveRequests, ServiceMetrics
from lmrec.serving.ratelimit import RateLimiter, retry_after_header

__all__ = ["create_app", "ApiError"]

log = logging.getLogger(APP_LOGGER)
_STATUSES = {int(x) for x in HTTPStatus}

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer lmr_<key id>_<secret>")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="lmr_<key id>_<secret>")


class ApiError(Exception):
    """An error answered as `{"error": code, "detail": message}` with `status`."""

    def __init__(self, status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers


@dataclass
class _State:
    """What the routes share: the engine (once open), the key verifier, limiter and metrics."""

    config: ServiceConfig
    metrics: ServiceMetrics
    masker: Masker
    limiter: RateLimiter
    engine: Any = None
    verifier: ApiKeyVerifier | None = None
    open_error: str | None = None
    open_message: str | None = None   # the open failure as one line, for the log and the CLI (not for clients)
    loader: threading.Thread | None = None
    owns_engine: bool = False
    ranking_limiter: Any = None
    # failed authentications per client address (401s): a stricter bucket than `limiter`
    auth_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(0.0, 1))

    def attach(self, engine: Any) -> None:
        """Serve `engine`; API keys are read from its record store (they live beside the events)."""
        self.engine = engine
        self.verifier = ApiKeyVerifier(engine.store, cache_seconds=self.config.auth_cache_seconds)

    @property
    def ready(self) -> bool:
        return self.engine is not None and bool(getattr(self.engine, "ready", True))


def _error_response(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


class _JsonTooLarge:
    """Starlette's body limit answers a body refused from its Content-Length with a text/plain
    413, written outside the app's handlers and middleware; this ASGI wrapper around the whole
    stack rewrites that answer as the JSON error body every other error has."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        swapped = False

        async def send_json(message: Any) -> None:
            nonlocal swapped
            if message["type"] == "http.response.start" and message["status"] == 413:
                ctype = dict(message.get("headers", [])).get(b"content-type", b"")
                if ctype.startswith(b"text/plain"):
                    swapped = True
                    headers = [(k, v) for k, v in message.get("headers", [])
                               if k not in (b"content-type", b"content-length")]
                    headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(self.body))]
                    await send({**message, "headers": headers})
                    return
            if swapped and message["type"] == "http.response.body":
                if not message.get("more_body", False):
                    await send({"type": "http.response.body", "body": self.body})
                return
            await send(message)

        await self.app(scope, receive, send_json)

    @property
    def body(self) -> bytes:
        # the error code the framework's streamed-body 413 gets from `_http_error`
        return json.dumps({"error": HTTPStatus(413).phrase.lower().replace(" ", "_"),
                           "detail": f"the request body is larger than {self.limit} bytes (max_body_bytes)"}).encode()


# ---- dependencies -----------------------------------------------------------------------------------
def _state(request: Request) -> _State:
    return request.app.state.service


async def _engine(request: Request) -> Any:
    """The open engine; 503 + Retry-After while it is still opening (or failed to open)."""
    st = _state(request)
    if not st.ready:
        detail = f"engine failed to open: {st.open_error}" if st.open_error else "engine is starting"
        raise ApiError(503, "not_ready", detail, {"Retry-After": "5"})
    return st.engine


Engine = Annotated[Any, Depends(_engine)]


def require(scope: str) -> Callable[..., Principal]:
    """A dependency that authenticates the caller, checks `scope` and applies the rate limit."""

    async def dependency(request: Request,
                         bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                         api_key: Annotated[str | None, Depends(_api_key_header)]) -> Principal:
        st = _state(request)
        if not st.config.auth_enabled:
            principal = ANONYMOUS
            client = request.client.host if request.client else "anonymous"
        else:
            key = bearer.credentials if bearer else api_key
            # a recently verified key is checked in the event loop; only a store read goes to a thread
            principal = st.verifier.verify_cached(key) if st.verifier is not None and key else None
            if principal is None:
                try:
                    principal = await run_in_threadpool(_authenticate, st, key)
                except ApiError as e:
                    if e.status == 401:
                        _count_auth_failure(st, request)
                    raise
            client = principal.key_id
            if not principal.allows(scope):
                raise ApiError(403, "forbidden", f"API key {principal.key_id!r} ({principal.name}) lacks the "
                               f"{scope!r} scope; it has: {', '.join(sorted(principal.scopes))}")
        request.state.principal = principal
        wait = st.limiter.acquire(client)
        if wait is not None:
            st.metrics.rate_limited.inc()
            raise ApiError(429, "rate_limited", f"rate limit of {st.limiter.rate:g} requests/s "
                           f"(burst {st.limiter.burst}) exceeded; retry in {wait:.2f} s",
                           {"Retry-After": retry_after_header(wait)})
        return principal

    dependency.__name__ = f"require_{scope}"
    return dependency


def _count_auth_failure(st: _State, request: Request) -> None:
    """Charge a failed authentication to the client address's bucket: past its burst the
    answer is 429 instead of 401 (key guessing and misconfigured clients are slowed down;
    requests with a valid key never touch this bucket)."""
    wait = st.auth_limiter.acquire(request.client.host if request.client else "unknown")
    if wait is not None:
        st.metrics.rate_limited.inc()
        raise ApiError(429, "rate_limited", f"too many failed authentications from this address (limit "
                       f"{st.auth_limiter.rate:g}/s, burst {st.auth_limiter.burst}); retry in {wait:.2f} s",
                       {"Retry-After": retry_after_header(wait)})


def _authenticate(st: _State, key: str | None) -> Principal:
    challenge = 'Bearer realm="lmrec"'
    if not key:
        raise ApiError(401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>' or "
                       "'X-API-Key: <key>'", {"WWW-Authenticate": challenge})
    if st.verifier is None:  # keys live in the engine's store: nothing can be checked before it opens
        raise ApiError(503, "not_ready", "engine is starting", {"Retry-After": "5"})
    try:
        return st.verifier.verify(key)
    except AuthError as e:
        raise ApiError(401, "unauthorized", e.reason,
                       {"WWW-Authenticate": f'{challenge}, error="{e.code}"'}) from None


Read = Depends(require("read"))
Write = Depends(require("write"))
Admin = Depends(require("admin"))

K = Annotated[int, Query(ge=1, le=s.MAX_K, description="number of results")]
Limit = Annotated[int, Query(ge=1, le=s.MAX_PAGE, description="page size")]
_FIELD_NAME = "(?:" + "|".join(s.ITEM_FIELDS) + ")"
#: what ?fields= accepts: known names separated by commas (spaces around them allowed)
_FIELDS_PATTERN = rf"^ *{_FIELD_NAME} *(?:, *{_FIELD_NAME} *)*$"
Fields = Annotated[str | None, Query(max_length=200, json_schema_extra={"pattern": _FIELDS_PATTERN},
                                     description="item fields to include inline, comma-separated: "
                                     + ",".join(s.ITEM_FIELDS))]
# a page cursor: empty (the first page) or an id; checked with a readable reason, pattern in the schema
Cursor = Annotated[str, Query(max_length=s.MAX_ID_LEN, json_schema_extra={"pattern": rf"^$|{s.ID_PATTERN}"},
                              description="the `next` of the previous page (empty: from the start)"),
                   AfterValidator(lambda v: v if v == "" else s.check_id_text(v))]
Explain = Annotated[bool, Query(description="include per-item explanations")]
# the id rule is checked with a readable reason; the pattern is in the schema for clients
UserId = Annotated[str, Path(min_length=1, max_length=s.MAX_ID_LEN, json_schema_extra={"pattern": s.ID_PATTERN}),
                   AfterValidator(s.check_id_text)]
ItemId = Annotated[str, Path(min_length=1, max_length=s.MAX_ID_LEN, json_schema_extra={"pattern": s.ID_PATTERN}),
                   AfterValidator(s.check_id_text)]
_ERRORS = {401: {"model": s.ErrorOut}, 403: {"model": s.ErrorOut}, 429: {"model": s.ErrorOut},
           503: {"model": s.ErrorOut}}
# routes with a JSON body: a body that is not even text (invalid UTF-8) is a 400 from FastAPI
_BODY_ERRORS = {**_ERRORS, 400: {"model": s.ErrorOut}, 413: {"model": s.ErrorOut}}


async def _ranked(st: _State, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a ranking call in a worker thread, at most `ranking_threads` at once: the work is
    mostly Python holding the GIL, so many threads at once only add switching (and tail
    latency) without adding throughput; the others wait their turn in the event loop.
    (/recommend is not limited here: the engine coalesces concurrent calls into batches.)"""
    from functools import partial

    import anyio

    if st.ranking_limiter is None:
        st.ranking_limiter = anyio.CapacityLimiter(st.config.ranking_threads)
    return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs), limiter=st.ranking_limiter)


def _ranking(st: _State, endpoint: str, r: Any, fields: tuple[str, ...] = (), engine: Any = None) -> Response:
    """An engine `Ranking` as the JSON of `RankingOut` (with each item's `fields` inline when
    asked); its stage timings go to the metrics."""
    st.metrics.observe_stages(endpoint, r.timings_ms)
    items = []
    for i in r.items:
        out = s.RankedItemOut(item_id=i.item_id, score=float(i.score), sources=list(i.sources),
                              explanation=i.explanation)
        if fields:
            out.item = s.ItemFieldsOut.of(engine.get_item(i.item_id), fields)
        items.append(out)
    body = s.RankingOut(ranking_id=r.ranking_id, model_version=r.model_version, timings_ms=dict(r.timings_ms),
                        items=items)
    # exclude_unset: `item` and the fields not asked for are left out, not sent as null
    return Response(body.model_dump_json(exclude_unset=True), media_type="application/json")


def _item_fields(fields: str | None) -> tuple[str, ...]:
    """The item field names of `?fields=` (in the given order, once each); 422 naming the
    unknown ones."""
    import re

    if fields is None:
        return ()
    tokens = [f.strip() for f in fields.split(",")]
    if re.fullmatch(_FIELDS_PATTERN, fields) is None:
        unknown = [f for f in tokens if f and f not in s.ITEM_FIELDS]
        raise _invalid(["query", "fields"], f"unknown item field(s) {', '.join(map(repr, unknown))}; choose from "
                       f"{', '.join(s.ITEM_FIELDS)}" if unknown else "expected item field names separated by "
                       f"commas, e.g. title,categories (choose from {', '.join(s.ITEM_FIELDS)})")
    return tuple(dict.fromkeys(tokens))


# ---- the app ------------------------------------------------------------------------------------------
def create_app(config: ServiceConfig | None = None, engine: Any = None) -> FastAPI:
    """The FastAPI app. With `engine` given it is used as is (and not closed on shutdown);
    otherwise `Engine.open(config.engine)` runs in the background at start-up."""
    config = config if config is not None else ServiceConfig()  # type: ignore[call-arg]  # from LMREC_* env
    key = config.log_hash_key.get_secret_value() if config.log_hash_key else None
    st = _State(config=config, metrics=ServiceMetrics(), masker=Masker(key, raw=config.log_raw_ids),
                limiter=RateLimiter(config.rate_limit_rps, config.rate_limit_burst),
                auth_limiter=RateLimiter(config.auth_failure_rps, config.auth_failure_burst))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limits = _limit_threads(config.engine.blas_threads)
        limits.__enter__()
        if engine is not None:
            st.attach(engine)
        else:
            st.owns_engine = True
            st.loader = threading.Thread(target=_open_engine, args=(st,), name="lmrec-engine-open", daemon=True)
            st.loader.start()
        consumer = None
        if config.events_url:   # the event stream feeds the engine once it is open
            from lmrec.streams import StreamConsumer

            consumer = StreamConsumer(config.events_url, engine=lambda: st.engine if st.ready else None,
                                      metrics=st.metrics).start()
        if config.events_publish:   # POST /events publishes to the stream
            from lmrec.streams.publish import StreamPublisher

            st.publisher = StreamPublisher(config.events_url)
        try:
            yield
        finally:
            if consumer is not None:
                await run_in_threadpool(consumer.stop)
            if getattr(st, "publisher", None) is not None:
                await run_in_threadpool(st.publisher.close)
                st.publisher = None
            if st.loader is not None:
                await run_in_threadpool(st.loader.join)
            if st.owns_engine and st.engine is not None:
                await run_in_threadpool(st.engine.close)
            # back to the state before start-up, so the app can be started again (tests do)
            st.engine = st.verifier = st.loader = st.open_error = st.open_message = None
            limits.__exit__(None, None, None)

    # max_body_size: Starlette's limit, enforced from Content-Length and while a body streams in (413)
    # docs_url / redoc_url: served by `add_docs_pages` with local assets (FastAPI's load from a CDN)
    app = FastAPI(title="lmrec", version=_version(), lifespan=lifespan, max_body_size=config.max_body_bytes,
                  docs_url=None, redoc_url=None,
                  description="Search and recommendation with language models. Authenticate with an API key "
                              "(`lmrec keys create`) as `Authorization: Bearer <key>` or `X-API-Key: <key>`.")
    app.state.service = st
    app.add_middleware(ObserveRequests, metrics=st.metrics, masker=st.masker)
    # the body limit sits outside the user middleware: the JSON rewrite wraps the whole stack
    build_stack = app.build_middleware_stack
    app.build_middleware_stack = lambda: _JsonTooLarge(build_stack(), config.max_body_bytes)  # type: ignore[method-assign]

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc.status, exc.error, exc.detail, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # the framework's own errors (404 route, 405, 413 body too large) in the same shape
        error = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_") if exc.status_code in _STATUSES else "error"
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # the router lists only the first matching route's methods
            headers["Allow"] = ", ".join(_allowed_methods(request.app, request.url.path))
        return _error_response(exc.status_code, error, str(exc.detail), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's 422 echoes each bad input; NaN / Infinity cannot be written as JSON, so
        # such an input is left out rather than turning the 422 into a 500
        try:
            return await request_validation_exception_handler(request, exc)
        except ValueError:
            errors = [{k: v for k, v in e.items() if k not in ("input", "ctx")} for e in exc.errors()]
            return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)

    _probe_routes(app, st)
    _write_routes(app, st)
    _read_routes(app, st)
    _admin_routes(app, st)
    from lmrec.serving.docs_pages import add_docs_pages
    from lmrec.serving.faq import add_faq_routes

    add_faq_routes(app, st)   # GET /faq, /admin/faq

    from lmrec.serving.console import add_console

    add_console(app)          # GET /ui: the web console (/ redirects to it)
    add_docs_pages(app)
    return app


def _open_engine(st: _State) -> None:
    from lmrec.serving.engine import Engine as EngineClass

    t0 = time.perf_counter()
    try:
        engine = EngineClass.open(st.config.engine)
        st.attach(engine)
    except Exception as exc:  # noqa: BLE001 - reported by /ready and /health instead of killing the server
        st.open_error = f"{type(exc).__name__}"
        text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        st.open_message = f"{type(exc).__name__}: {text}" if text else st.open_error
        log.error("engine failed to open: %s", st.open_message)
        log.debug("engine open failure: %s", exception_summary(exc, raw=True))
        return
    _limit_torch(st.config.engine.blas_threads)
    log.info("engine open in %.1f s: %s", time.perf_counter() - t0, _safe_stats(engine))


def _limit_threads(n: int | None) -> AbstractContextManager[Any]:
    """Cap BLAS pools at `n` threads for the app's lifetime: concurrency comes from serving
    requests on many threads, and BLAS threads per request on top would oversubscribe the
    cores. (The engine applies the same cap while it is open; this also covers the time
    before it is.)"""
    from lmrec.stores.base import blas_threads

    _limit_torch(n)
    return blas_threads(n)


def _limit_torch(n: int | None) -> None:
    if n is not None and "torch" in sys.modules:  # only when the engine uses torch: importing it is slow
        sys.modules["torch"].set_num_threads(n)


def _safe_stats(engine: Any) -> dict[str, Any]:
    try:
        return dict(engine.stats())
    except Exception:  # noqa: BLE001 - stats are informative only
        return {}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lmrec")
    except PackageNotFoundError:
        return "0"


def _probe_routes(app: FastAPI, st: _State) -> None:
    @app.get("/health", response_model=s.HealthOut, tags=["probes"],
             responses={503: {"model": s.ErrorOut}})
    def health() -> s.HealthOut:
        """Liveness: the process is up (503 only when the engine failed to open)."""
        if st.open_error:
            raise ApiError(503, "engine_failed", f"engine failed to open: {st.open_error}")
        return s.HealthOut(status="ok")

    @app.get("/ready", response_model=s.ReadyOut, tags=["probes"], responses={503: {"model": s.ReadyOut}})
    def ready() -> Any:
        """Readiness: 200 once the engine is open and serving, 503 before."""
        if not st.ready:
            detail = f"engine failed to open: {st.open_error}" if st.open_error else "engine is starting"
            return JSONResponse(s.ReadyOut(ready=False, detail=detail).model_dump(), status_code=503,
                                headers={"Retry-After": "5"})
        return s.ReadyOut(ready=True, model_version=_safe_stats(st.engine).get("model_version"))

    @app.get("/metrics", tags=["probes"], response_class=Response,
             dependencies=[] if st.config.metrics_public else [Admin],
             responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}})
    def metrics() -> Response:
        """Prometheus metrics: requests and latency per route and status, per pipeline stage,
        events ingested / rejected, index and catalog size."""
        st.metrics.update_engine(_safe_stats(st.engine) if st.ready else None, st.ready)
        return Response(st.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def _write_routes(app: FastAPI, st: _State) -> None:
    cfg = st.config

    @app.post("/events", response_model=s.EventsResponse, tags=["events"], dependencies=[Write],
              openapi_extra={"requestBody": s.events_body_schema(cfg.max_batch)},
              responses={**_BODY_ERRORS, 422: {"description": "invalid events"}})
    async def post_events(request: Request, engine: Engine,
                          all_or_nothing: Annotated[bool, Query(description="reject the whole batch when any "
                                                                "event is invalid (422)")] = False,
                          idempotency_key: Annotated[str | None, Header(
                              alias="Idempotency-Key", min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$",
                              description="send the same key with a retried batch: its events are stored once "
                                          "(the retry answers them in `replayed`); scoped to the API key")] = None
                          ) -> Any:
        """Record one event or a batch (a list, or `{"events": [...], "all_or_nothing": bool}`).

        By default the valid events of a batch are stored and each invalid one is listed in
        `rejected` with its index, field and reason; with `all_or_nothing` any invalid event
        rejects the batch with 422. A single event is always all or nothing, and so is a batch
        with no valid event."""
        idem = None
        if idempotency_key is not None:
            principal = getattr(request.state, "principal", ANONYMOUS)
            idem = hashlib.sha256(f"{principal.key_id}\x00{idempotency_key}".encode()).hexdigest()[:32]
        # parsing and validating a large batch is CPU work: done in the thread pool with the ingest
        return await run_in_threadpool(_ingest_body, st, engine, await request.body(), all_or_nothing, idem)

    @app.put("/items/{item_id}", response_model=s.ItemOut, tags=["items"], dependencies=[Write],
             responses=_BODY_ERRORS)
    def put_item(item_id: ItemId, item: s.ItemIn, engine: Engine) -> s.ItemOut:
        """Create or replace an item: searchable and recommendable as soon as this returns."""
        record = item.to_record(item_id, time.time())
        engine.upsert_items([record])
        return s.ItemOut.of(engine.get_item(item_id) or record)

    @app.post("/items", response_model=s.ItemsUpserted, tags=["items"], dependencies=[Write],
              responses=_BODY_ERRORS)
    def post_items(body: s.ItemsBulkIn, engine: Engine) -> s.ItemsUpserted:
        """Create or replace many items in one call (at most `max_batch`; an id given twice:
        the last one wins)."""
        if len(body.items) > cfg.max_batch:
            raise _too_many("items", len(body.items), cfg.max_batch)
        now = time.time()
        engine.upsert_items([i.to_record(i.item_id, now) for i in body.items])
        return s.ItemsUpserted(upserted=len(body.items))

    @app.delete("/items/{item_id}", response_model=s.Deleted, tags=["items"], dependencies=[Write],
                responses={**_ERRORS, 404: {"model": s.ErrorOut}})
    def delete_item(item_id: ItemId, engine: Engine) -> s.Deleted:
        """Remove an item from the catalog and the indexes (404 when it is not there)."""
        if not engine.delete_item(item_id):
            raise ApiError(404, "not_found", f"item {item_id!r} is not in the catalog")
        return s.Deleted(deleted=True)

    @app.put("/users/{user_id}", response_model=s.UserOut, tags=["users"], dependencies=[Write],
             responses=_BODY_ERRORS)
    def put_user(user_id: UserId, user: s.UserIn, engine: Engine) -> s.UserOut:
        """Create or replace a user's attributes."""
        record = user.to_record(user_id, time.time())
        engine.upsert_user(record)
        return s.UserOut(user_id=record.user_id, attributes=record.attributes, updated_at=record.updated_at)


    @app.delete("/users/{user_id}", response_model=s.UserDeletedOut, tags=["users"], dependencies=[Admin],
                responses={**_ERRORS, 404: {"model": s.ErrorOut}})
    def delete_user(user_id: UserId, engine: Engine) -> s.UserDeletedOut:
        """Erase a user (right to erasure): their events, attributes and logged rankings leave
        the store, and the served version forgets them at once (the next /recommend for them is
        a new user's). A later training never sees them. 404 for a user the service does not
        know. See docs/privacy.md for what is recomputed before the next training."""
        out = engine.delete_user(user_id)
        if out is None:
            raise ApiError(404, "not_found", f"user {user_id!r} has no events, attributes or rankings")
        log.info("user erased: %d events, %d records, %d rankings", out["store"].get("events", 0),
                 out["store"].get("record", 0), out["store"].get("rankings", 0))
        return s.UserDeletedOut(**out)


def _read_routes(app: FastAPI, st: _State) -> None:
    # The ranking routes are the hot path: they are async, run the engine in the thread pool
    # themselves and answer with JSON serialised once by pydantic-core. (A sync route would also
    # re-validate the response model in a second thread hop: ~40% of the HTTP layer's CPU.)
    @app.get("/recommend/{user_id}", response_model=s.RankingOut, tags=["rankings"], dependencies=[Read],
             responses=_ERRORS)
    async def recommend(user_id: UserId, engine: Engine, k: K = 10, explain: Explain = False,
                        fields: Fields = None) -> Response:
        """Top-k items for a user; an unknown or new user gets the fallback (popular) list.
        `fields=title,categories` puts those item fields in each entry (`item`)."""
        names = _item_fields(fields)
        # not limited to `ranking_threads`: the engine coalesces concurrent calls into one batch
        ranking = await run_in_threadpool(engine.recommend, user_id, k, explain=explain)
        return _ranking(st, "recommend", ranking, names, engine)

    @app.post("/recommend", response_model=s.SessionRankingOut, tags=["rankings"], dependencies=[Read],
              responses=_BODY_ERRORS)
    async def recommend_session(body: s.SessionIn, engine: Engine, fields: Fields = None) -> Response:
        """Top-k for a history without a stored user (an anonymous session), through the served
        pipeline; nothing stored changes. Item ids the served version does not know are left out
        of the history and listed in `unknown_items`; events of kinds the service does not learn
        from are left out and counted in `ignored_events`."""
        from lmrec.serving.sessions import SessionEvent

        names = _item_fields(fields)
        history = [SessionEvent(e.item_id, e.kind, e.timestamp, e.value) for e in body.history]
        try:
            out = await _ranked(st, engine.recommend_session, history, body.k, explain=body.explain,
                                max_future_seconds=st.config.max_future_seconds)
        except ValueError as e:
            raise _invalid(["body", *_error_loc(str(e))], str(e)) from None
        answer = json.loads(_ranking(st, "recommend", out.ranking, names, engine).body)
        answer.update(unknown_items=out.unknown_items, ignored_events=out.ignored_events)
        return Response(json.dumps(answer), media_type="application/json")

    @app.get("/search", response_model=s.RankingOut, tags=["rankings"], dependencies=[Read], responses=_ERRORS)
    async def search(engine: Engine,
                     q: Annotated[str, Query(min_length=1, max_length=s.MAX_QUERY_LEN, description="the query text")],
                     k: K = 10,
                     user_id: Annotated[str | None, Query(min_length=1, max_length=s.MAX_ID_LEN,
                                                          json_schema_extra={"pattern": s.ID_PATTERN},
                                                          description="personalise for this user"),
                                        AfterValidator(lambda v: v if v is None else s.check_id_text(v))] = None,
                     explain: Explain = False, fields: Fields = None) -> Response:
        """Search the catalog (any language the encoder knows), optionally personalised;
        `fields=` as for /recommend."""
        if not q.strip():
            raise _invalid(["query", "q"], "the query is blank")
        names = _item_fields(fields)
        ranking = await _ranked(st, engine.search, q, k, user_id=user_id, explain=explain)
        return _ranking(st, "search", ranking, names, engine)

    @app.get("/items/{item_id}/similar", response_model=s.RankingOut, tags=["rankings"], dependencies=[Read],
             responses={**_ERRORS, 404: {"model": s.ErrorOut}})
    async def similar(item_id: ItemId, engine: Engine, k: K = 10, explain: Explain = False,
                      fields: Fields = None) -> Response:
        """Items similar to an item (404 when the item is not in the catalog); `fields=` as
        for /recommend."""
        names = _item_fields(fields)
        try:
            ranking = await _ranked(st, engine.similar, item_id, k, explain=explain)
        except KeyError:
            raise ApiError(404, "not_found", f"item {item_id!r} is not in the catalog") from None
        return _ranking(st, "similar", ranking, names, engine)

    @app.get("/items/{item_id}", response_model=s.ItemOut, tags=["items"], dependencies=[Read],
             responses={**_ERRORS, 404: {"model": s.ErrorOut}})
    def get_item(item_id: ItemId, engine: Engine) -> s.ItemOut:
        """An item's stored record."""
        record = engine.get_item(item_id)
        if record is None:
            raise ApiError(404, "not_found", f"item {item_id!r} is not in the catalog")
        return s.ItemOut.of(record)

    @app.get("/items", response_model=s.ItemsPage, tags=["items"], dependencies=[Read], responses=_ERRORS)
    def list_items(engine: Engine, limit: Limit = 100,
                   after: Cursor = "") -> s.ItemsPage:
        """The catalog, a page at a time, in item_id order (byte order of the UTF-8 ids)."""
        page = engine.store.item_page(after=after, limit=limit + 1)
        more = len(page) > limit
        page = page[:limit]
        return s.ItemsPage(items=[s.ItemOut.of(r) for r in page], next=page[-1].item_id if more else None,
                           total=engine.store.count_items())

    @app.get("/users", response_model=s.UsersPage, tags=["users"], dependencies=[Read], responses=_ERRORS)
    def list_users(engine: Engine, limit: Limit = 100,
                   after: Cursor = "") -> s.UsersPage:
        """Every user with events or attributes, a page at a time, in user_id order."""
        page = engine.store.user_page(after=after, limit=limit + 1)
        more = len(page) > limit
        page = page[:limit]
        users = [s.UserListed(user_id=uid, attributes=dict(r.attributes) if r else {},
                              updated_at=r.updated_at if r else None) for uid, r in page]
        return s.UsersPage(users=users, next=page[-1][0] if more else None)

    @app.get("/users/{user_id}/history", response_model=s.HistoryOut, tags=["users"], dependencies=[Read],
             responses={**_ERRORS, 404: {"model": s.ErrorOut}})
    def history(user_id: UserId, engine: Engine, limit: Limit = 100,
                before: Annotated[int | None, Query(ge=1, description="the `next` of the previous page (omit: the "
                                                    "newest events)")] = None,
                fields: Fields = None) -> Response:
        """A user's stored events, newest first (404 for a user with neither events nor
        attributes); `fields=title` puts those item fields in each event (`item`)."""
        names = _item_fields(fields)
        page = engine.store.latest_events(user_id, before_seq=before, limit=limit + 1)
        more = len(page) > limit
        page = page[:limit]
        total = engine.store.count_events(user_id)
        if not total and before is None and engine.store.get_user(user_id) is None:
            raise ApiError(404, "not_found", f"user {user_id!r} has no events and no attributes")
        events = []
        for e in page:
            out = s.HistoryEventOut(seq=e.seq, item_id=e.item_id, kind=e.kind, value=e.value, timestamp=e.timestamp,
                                    ranking_id=e.ranking_id)
            if names:
                out.item = s.ItemFieldsOut.of(engine.get_item(e.item_id), names)
            events.append(out)
        body = s.HistoryOut(user_id=user_id, events=events, total=total, next=page[-1].seq if more else None)
        return Response(body.model_dump_json(exclude_unset=True), media_type="application/json")


def _admin_routes(app: FastAPI, st: _State) -> None:
    @app.post("/admin/reload", response_model=s.ModelVersionOut, tags=["admin"], dependencies=[Admin],
              responses={**_BODY_ERRORS, 404: {"model": s.ErrorOut}})
    def reload(engine: Engine, body: Annotated[s.ReloadIn | None, Body()] = None) -> s.ModelVersionOut:
        """Serve another saved pipeline version (the latest when none is named), caught up with
        the catalog and the events since its fit. Requests in flight finish on the old version;
        none is dropped."""
        version = body.version if body else None
        try:
            active = engine.reload(version)
        except FileNotFoundError:
            what = f"model version {version!r} not found" if version else "no saved model version"
            raise ApiError(404, "not_found", f"{what}; see GET /admin/stats, or train one with "
                           "POST /admin/train") from None
        log.info("model reloaded: now serving %s", active)
        return s.ModelVersionOut(model_version=active)

    @app.post("/admin/train", response_model=s.TrainOut, tags=["admin"], dependencies=[Admin],
              responses={**_BODY_ERRORS, 202: {"model": s.TrainOut}, 409: {"model": s.ErrorOut}})
    def train(engine: Engine, body: Annotated[s.TrainIn | None, Body()] = None) -> Any:
        """Fit the pipeline (the service's own config, or `config` + `overrides`) on the stored
        events and catalog, save it as a new version and, with `activate` (default), serve it
        once it has caught up with the events that arrived meanwhile. With `wait` (default)
        the answer comes when the fit is done; otherwise 202 at once, progress in
        /admin/stats. Requests are served throughout; one training runs at a time (409)."""
        from lmrec.serving.engine import PipelineConfigError, TrainingBusy

        body = body or s.TrainIn()
        t0 = time.perf_counter()
        try:
            version = engine.train(body.config, dict(body.overrides) if body.overrides is not None else None,
                                   activate=body.activate, wait=body.wait)
        except TrainingBusy as e:
            raise ApiError(409, "training_busy", str(e)) from None
        except PipelineConfigError as e:
            raise _invalid(["body", "config" if body.overrides is None else "overrides"], str(e)) from None
        except (ValueError, TypeError, KeyError, IndexError) as e:  # e.g. too few events for the ranker's window
            log.warning("training failed: %s: %s", type(e).__name__, e)
            raise ApiError(409, "cannot_train", f"{type(e).__name__}: {e}") from None
        if not body.wait:
            return JSONResponse(s.TrainOut(model_version=None, active=False, state="started").model_dump(),
                                status_code=202)
        log.info("trained %s in %.1f s (active: %s)", version, time.perf_counter() - t0, body.activate)
        return s.TrainOut(model_version=version, active=body.activate)

    @app.get("/admin/stats", tags=["admin"], dependencies=[Admin], responses=_ERRORS)
    def stats(engine: Engine) -> dict[str, Any]:
        """Engine counters: items, users, events, index size, the served pipeline version and
        its config, the training state (stage, elapsed seconds, last version), encoder."""
        return json.loads(json.dumps(engine.stats(), default=str))

    @app.post("/admin/experiments", response_model=s.ExperimentOut, tags=["admin"], dependencies=[Admin],
              responses={**_BODY_ERRORS, 404: {"model": s.ErrorOut}})
    def start_experiment(engine: Engine, body: s.ExperimentIn) -> s.ExperimentOut:
        """Serve saved versions `a` and `b` side by side: a user is in B when the hash of the
        experiment name and user id falls below `split`, else in A (deterministic). Replaces a
        running experiment; it stays after a restart until DELETE /admin/experiments."""
        try:
            exp = engine.start_experiment(body.name, body.a, body.b, body.split)
        except FileNotFoundError as e:  # as POST /admin/reload: a version that is not there is a 404
            raise ApiError(404, "not_found", f"{e}; see GET /admin/stats") from None
        except ValueError as e:
            raise _invalid(["body", *_error_loc(str(e))], str(e)) from None
        log.info("experiment %s started: A=%s B=%s split=%s", exp.name, exp.a, exp.b, exp.split)
        return s.ExperimentOut(**exp.to_json())

    @app.get("/admin/experiments", tags=["admin"], dependencies=[Admin],
             responses={**_ERRORS, 404: {"model": s.ErrorOut}})
    def experiments(engine: Engine, window: Annotated[float, Query(
            gt=0, le=30 * 86_400, description="seconds after a ranking in which a click or purchase without "
                                              "ranking_id by the same user on a listed item counts")] = 3600.0
                    ) -> dict[str, Any]:
        """The current (or last) experiment: per variant the rankings served, CTR and conversion
        with 95% Wilson intervals, and B - A with Newcombe's interval (docs/serving.md)."""
        report = engine.experiment_report(window)
        if report is None:
            raise ApiError(404, "not_found", "no experiment; start one with POST /admin/experiments")
        return report

    @app.delete("/admin/experiments", response_model=s.ExperimentOut, tags=["admin"], dependencies=[Admin],
                responses={**_ERRORS, 404: {"model": s.ErrorOut}})
    def stop_experiment(engine: Engine) -> s.ExperimentOut:
        """Stop the experiment: everyone gets the served version again; its report stays."""
        exp = engine.stop_experiment()
        if exp is None:
            raise ApiError(404, "not_found", "no experiment to stop")
        return s.ExperimentOut(**exp.to_json())


# ---- helpers ----------------------------------------------------------------------------------------
def _ingest_body(st: _State, engine: Any, body: bytes, all_or_nothing: bool, idem: str | None = None) -> Any:
    """POST /events: parse, validate event by event, commit the good events (or none). With
    `idem` (the digest of the caller's key id and Idempotency-Key) event j of the batch is
    committed once under the id "idem:<idem>:<j>": a retry of the batch stores nothing again."""
    try:
        raw, is_batch, strict_body = s.unpack_events_body(_parse_json(body), st.config.max_batch)
    except s.BodyError as e:
        st.metrics.events_rejected.labels("body").inc()
        return JSONResponse({"detail": e.detail()}, status_code=422)
    good, bad = s.validate_events(raw, max_future_seconds=st.config.max_future_seconds)
    unknown = [(i, r) for i, r in good if engine.get_item(r.item_id) is None]
    if unknown and st.config.unknown_item_events == "reject":
        bad = sorted(bad + [s.RejectedEvent(index=i, field="item_id", reason=f"item {r.item_id!r} is not in the "
                                            "catalog (unknown_item_events = \"reject\")") for i, r in unknown],
                     key=lambda b: b.index)
        dropped = {i for i, _ in unknown}
        good = [(i, r) for i, r in good if i not in dropped]
    fields = [_metric_field(b.field) for b in bad]
    # a batch with no valid event is refused as a whole too: 200 "accepted: 0" reads as success
    if bad and (all_or_nothing or strict_body or not is_batch or not good):
        st.metrics.observe_events([], fields)
        head = ["body", "events"] if is_batch else ["body"]
        detail = [{"type": "value_error", "loc": [*head, *((b.index,) if is_batch else ()), *b.field.split(".")],
                   "msg": b.reason} for b in bad]
        return JSONResponse({"detail": detail, "rejected": [b.model_dump() for b in bad],
                             "unknown_items": len(unknown)}, status_code=422)
    records = [r for _, r in good]
    if records and getattr(st, "publisher", None) is not None:
        return _publish_events(st, records, bad, fields, len(unknown))
    if not records:
        done = []
    elif idem is not None:
        done = engine.ingest(records, event_ids=[f"idem:{idem}:{i}" for i, _ in good])
    else:
        done = engine.ingest(records)
    kept = [(r, q) for r, q in zip(records, done) if q is not None]
    st.metrics.observe_events([r.kind for r, _ in kept], fields)
    return s.EventsResponse(accepted=len(kept), seqs=[q for _, q in kept], rejected=bad, unknown_items=len(unknown),
                            replayed=len(done) - len(kept))


def _publish_events(st: _State, records: list[Any], bad: list[Any], fields: list[str], unknown: int) -> Any:
    """POST /events in publish mode: the events go to the stream (202); the consumers commit and
    count them. A broker that does not take them is a 503, never a silent drop."""
    from lmrec.streams import BrokerUnavailable

    try:
        ids = st.publisher.publish_records(records)
    except BrokerUnavailable as e:
        raise ApiError(503, "stream_unavailable", f"the events were not published: {e}", {"Retry-After": "5"}) from None
    st.metrics.observe_events([], fields)
    return JSONResponse({"accepted": len(ids), "seqs": [], "event_ids": ids, "published": True,
                         "rejected": [b.model_dump() for b in bad], "unknown_items": unknown}, status_code=202)


def _parse_json(raw: bytes) -> Any:
    if not raw:
        raise s.BodyError((), "the request body is empty", "missing")
    try:
        return json.loads(raw)
    except RecursionError:  # e.g. [[[[...]]]] thousands deep: the decoder gives up, the request fails
        raise s.BodyError((), "invalid JSON: nested too deeply", "json_invalid") from None
    except (ValueError, UnicodeDecodeError) as e:  # ValueError: also an integer of over 4,300 digits
        raise s.BodyError((), f"invalid JSON: {e}", "json_invalid") from None


def _error_loc(message: str) -> list[Any]:
    """The field path an engine error starts with ("history[2].timestamp: ..." ->
    ["history", 2, "timestamp"])."""
    import re

    head = message.split(":", 1)[0]
    if not re.fullmatch(r"[A-Za-z_]\w*(\[\d+\])?(\.[A-Za-z_]\w*)*", head):
        return []
    return [int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", head) if p]


def _invalid(loc: list[Any], msg: str) -> Exception:
    from fastapi.exceptions import RequestValidationError

    return RequestValidationError([{"type": "value_error", "loc": tuple(loc), "msg": msg}])


def _too_many(what: str, n: int, limit: int) -> Exception:
    return _invalid(["body", what], f"at most {limit} {what} per request, got {n}")


_EVENT_FIELDS = {"user_id", "item_id", "kind", "value", "timestamp", "ranking_id", "event"}


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route serves at `path` (for the Allow header of a 405)."""
    from starlette.routing import Route

    methods: set[str] = set()
    for route in app.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(path):
            methods |= route.methods
    return sorted(methods)


def _metric_field(field: str) -> str:
    """A bounded label for the rejected-events counter: client-chosen (unknown) field names
    would otherwise create one time series each."""
    head = field.split(".", 1)[0]
    return head if head in _EVENT_FIELDS else "unknown_field"
