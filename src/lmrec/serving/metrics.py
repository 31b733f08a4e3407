"""Prometheus metrics of one app, in a registry of its own.

Each `create_app` gets a fresh `CollectorRegistry` rather than prometheus-client's global one:
several apps in one process (tests, an embedding application) then never collide on metric
names, and `/metrics` shows exactly this app's numbers.

Routes are labelled by their template (`/recommend/{user_id}`), never the raw path: raw paths
would carry user ids into the metrics store and give it unbounded label cardinality.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from lmrec.serving.masking import ACCESS_LOGGER, APP_LOGGER, Masker, exception_summary

__all__ = ["ServiceMetrics", "ObserveRequests", "CONTENT_TYPE_LATEST"]

# request latency: sub-millisecond cache hits up to multi-second admin calls
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# pipeline stages are finer-grained
_STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class ServiceMetrics:
    """The service's counters, histograms and gauges, and their exposition."""

    def __init__(self, namespace: str = "lmrec") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r, ns = self.registry, namespace
        self.requests = Counter("http_requests", "HTTP requests by route template, method and status",
                                ["route", "method", "status"], namespace=ns, registry=r)
        self.latency = Histogram("http_request_duration_seconds", "HTTP request latency by route and status",
                                 ["route", "method", "status"], namespace=ns, registry=r, buckets=_HTTP_BUCKETS)
        self.stage = Histogram("stage_duration_seconds", "Time spent in each pipeline stage of a ranking request",
                               ["endpoint", "stage"], namespace=ns, registry=r, buckets=_STAGE_BUCKETS)
        self.events_ingested = Counter("events_ingested", "Events committed to the store, by kind",
                                       ["kind"], namespace=ns, registry=r)
        self.events_rejected = Counter("events_rejected", "Events refused by validation, by the field at fault",
                                       ["field"], namespace=ns, registry=r)
        self.rate_limited = Counter("rate_limited", "Requests refused by the rate limiter (HTTP 429)",
                                    namespace=ns, registry=r)
        self.index_size = Gauge("index_size", "Vectors in the item index", namespace=ns, registry=r)
        self.catalog_size = Gauge("catalog_size", "Items in the catalog", namespace=ns, registry=r)
        self.users = Gauge("users", "Users with state in the engine", namespace=ns, registry=r)
        self.ready = Gauge("ready", "1 when the engine is open and serving", namespace=ns, registry=r)
        self.model_info = Gauge("model_info", "The model version being served (value 1)", ["version"],
                                namespace=ns, registry=r)
        # model freshness (the stale-model alert): when the served version was fitted, and what
        # arrived since
        self.model_created = Gauge("model_created_timestamp_seconds", "Unix time the served version was fitted",
                                   namespace=ns, registry=r)
        self.events_since_train = Gauge("events_since_train", "Events stored since the last training",
                                        namespace=ns, registry=r)
        self.training_failed = Gauge("training_last_failed", "1 when the last background or admin training failed",
                                     namespace=ns, registry=r)
        # the event stream consumer (lmrec serve --events URL), per stream
        self.stream_lag = Gauge("stream_consumer_lag_events", "Messages on the stream not yet acknowledged by "
                                "this consumer", ["stream"], namespace=ns, registry=r)
        self.stream_consumed = Counter("stream_events_consumed", "Stream events ingested (a redelivered one once)",
                                       ["stream"], namespace=ns, registry=r)
        self.stream_duplicates = Counter("stream_events_duplicate", "Redelivered stream events skipped because "
                                         "their event id was already stored", ["stream"], namespace=ns, registry=r)
        self.stream_dead_letters = Counter("stream_dead_letters", "Malformed stream messages sent to the dead-letter "
                                           "stream, by reason", ["stream", "reason"], namespace=ns, registry=r)
        self.stream_connected = Gauge("stream_connected", "1 while the consumer is connected to its broker",
                                      ["stream"], namespace=ns, registry=r)
        # drift checks (lmrec.serving.drift): the latest events vs the served version's training data
        self.drift_window = Gauge("drift_window_events", "Events in the drift window", namespace=ns, registry=r)
        self.drift_kind_share = Gauge("drift_kind_share", "Share of each event kind in the drift window (data="
                                      "recent) and in the training data (data=training)", ["kind", "data"],
                                      namespace=ns, registry=r)
        self.drift_kind_tv = Gauge("drift_kind_mix_tv", "Total variation distance between the learning kinds' mix "
                                   "of the drift window and of the training data", namespace=ns, registry=r)
        self.drift_items = Gauge("drift_item_popularity", "Item popularity shift of the drift window from the "
                                 "training data: js (Jensen-Shannon, base 2), js_baseline (the same for the last "
                                 "window of training events), tv (total variation)", ["measure"],
                                 namespace=ns, registry=r)
        self.drift_item_share = Gauge("drift_item_share", "Share of drift-window events about items the catalog "
                                      "does not hold (items=unknown) or without training events (items=cold)",
                                      ["items"], namespace=ns, registry=r)
        # several workers over one store (lmrec.serving.follower)
        self.follow_lag = Gauge("follow_lag_seconds", "Seconds since this worker last caught up with the shared "
                                "store (absent with one process)", namespace=ns, registry=r)
        self._model_version: str | None = None

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        labels = (route, method, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def observe_stages(self, endpoint: str, timings_ms: Mapping[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self.stage.labels(endpoint, stage).observe(max(0.0, float(ms)) / 1000.0)

    def observe_events(self, kinds: list[str], rejected_fields: list[str]) -> None:
        for kind in kinds:
            self.events_ingested.labels(kind).inc()
        for field in rejected_fields:
            self.events_rejected.labels(field).inc()

    def update_engine(self, stats: Mapping[str, Any] | None, ready: bool) -> None:
        """Refresh the gauges from `Engine.stats()` (called when /metrics is scraped)."""
        self.ready.set(1.0 if ready else 0.0)
        if not stats:
            return
        for gauge, key in ((self.index_size, "index_size"), (self.catalog_size, "n_items"), (self.users, "n_users")):
            if isinstance(stats.get(key), (int, float)):
                gauge.set(float(stats[key]))
        created = (stats.get("pipeline") or {}).get("created_at")
        if isinstance(created, (int, float)):
            self.model_created.set(float(created))
        if isinstance(stats.get("events_since_train"), (int, float)):
            self.events_since_train.set(float(stats["events_since_train"]))
        self.training_failed.set(1.0 if (stats.get("training") or {}).get("state") == "failed" else 0.0)
        self._update_drift(stats.get("drift"))
        follower = (stats.get("worker") or {}).get("follower")
        if follower and isinstance(follower.get("lag_s"), (int, float)):
            self.follow_lag.set(float(follower["lag_s"]))
        version = stats.get("model_version")
        if version is not None and str(version) != self._model_version:
            if self._model_version is not None:
                self.model_info.remove(self._model_version)
            self._model_version = str(version)
            self.model_info.labels(self._model_version).set(1.0)

    def _update_drift(self, drift: Mapping[str, Any] | None) -> None:
        if not drift:
            return
        nan = float("nan")

        def num(v: Any) -> float:
            return float(v) if isinstance(v, (int, float)) else nan

        self.drift_window.set(num(drift.get("window_events")))
        for data, shares in (drift.get("kinds") or {}).items():
            for kind in sorted(set(shares) | {"view", "click", "cart", "purchase", "rating", "impression"}):
                self.drift_kind_share.labels(kind, data).set(num(shares.get(kind, 0.0)))
        self.drift_kind_tv.set(num(drift.get("kind_mix_tv")))
        for measure, key in (("js", "item_js"), ("js_baseline", "item_js_baseline"), ("tv", "item_tv")):
            self.drift_items.labels(measure).set(num(drift.get(key)))
        for items, key in (("unknown", "unknown_item_share"), ("cold", "cold_item_share")):
            self.drift_item_share.labels(items).set(num(drift.get(key)))

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)


class ObserveRequests:
    """ASGI middleware: metrics, one masked access-log line and a request id per request, and
    a JSON 500 for any exception that escapes a route.

    Exceptions are answered here rather than left to Starlette's error middleware, which
    re-raises them so the server logs them: that log line would carry the exception message,
    and messages quote identifiers (`KeyError('user-42')`). Here the traceback is logged with
    the message withheld unless `masker.raw`.
    """

    def __init__(self, app: Any, metrics: ServiceMetrics, masker: Masker) -> None:
        self.app = app
        self.metrics = metrics
        self.masker = masker
        self.access_log = logging.getLogger(ACCESS_LOGGER)
        self.app_log = logging.getLogger(APP_LOGGER)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _request_id(scope) or uuid.uuid4().hex[:16]
        status = 500
        started = False

        async def send_wrapper(message: Any) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: log masked, answer 500
            if type(exc).__module__ == _BODY_LIMIT_MODULE:
                # Starlette's body-size limiter (outside this middleware) signals with exceptions
                # and answers 413 itself
                status = 413
                raise
            self.app_log.error("unhandled error on %s %s (request %s): %s", scope.get("method"), _route(scope),
                               request_id, exception_summary(exc, raw=self.masker.raw))
            if not started:
                body = json.dumps({"error": "internal", "detail": f"internal error (request id {request_id})"}).encode()
                await send_wrapper({"type": "http.response.start", "status": 500,
                                    "headers": [(b"content-type", b"application/json"),
                                                (b"content-length", str(len(body)).encode())]})
                await send_wrapper({"type": "http.response.body", "body": body})
        finally:
            elapsed = time.perf_counter() - start
            route = _route(scope)
            self.metrics.observe_request(route, scope.get("method", ""), status, elapsed)
            if self.access_log.isEnabledFor(logging.INFO):
                self.access_log.info("%s", self._line(scope, route, status, elapsed, request_id))

    def _line(self, scope: Any, route: str, status: int, elapsed: float, request_id: str) -> str:
        """`GET /recommend/{user_id} 200 3.1ms key=ab12.. user=h:.. request=..`: ids masked."""
        params = dict(scope.get("path_params") or {})
        query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
        principal = (scope.get("state") or {}).get("principal")
        clean = self.masker.clean  # every value from the request: control characters escaped, PII hashed
        parts = [f"{clean(scope.get('method', ''))} {route} {status} {elapsed * 1000:.1f}ms",
                 f"key={clean(getattr(principal, 'key_id', '-'))}"]
        user = params.pop("user_id", None) or (query.get("user_id") or [None])[0]
        if user is not None:
            parts.append(f"user={self.masker.mask(user)}")
        if "item_id" in params:
            parts.append(f"item={clean(params.pop('item_id'))}")
        parts += [f"{clean(k)}={clean(v)}" for k, v in sorted(params.items())]
        if "q" in query:
            parts.append(f"q={self.masker.mask(query['q'][0])}")
        parts.append(f"request={request_id}")
        return " ".join(parts)


_BODY_LIMIT_MODULE = "starlette.middleware.body_limit"


def _route(scope: Any) -> str:
    """The matched route's template, 'unmatched' for 404s (never the raw path)."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


def _request_id(scope: Any) -> str | None:
    """A client-supplied X-Request-ID when it is short and plain, so it is safe to log."""
    for name, value in scope.get("headers") or ():
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if 0 < len(text) <= 64 and all(c.isalnum() or c in "-_." for c in text):
                return text
    return None
