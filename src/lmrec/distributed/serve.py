"""The HTTP service as Ray Serve replicas with an autoscaling config (`lmrec ray serve`).

Each replica runs lmrec's FastAPI app (`lmrec.serving.app.create_app`) with its own engine, as
`lmrec serve --workers N` does with processes: the replicas share the record store (PostgreSQL,
or a SQLite file on one machine) and the home folder (index, model versions), and each follows
what the others write every `follow_interval_s` (`lmrec.serving.follower`). Ray Serve's HTTP
proxy spreads the requests over the replicas, and its autoscaler adds replicas (up to
`max_replicas`) while the replicas hold more than `target_ongoing_requests` requests each on
average and removes them (down to `min_replicas`) when they are idle.

    from lmrec.distributed.serve import ReplicaOptions, deploy
    with ray_session(num_cpus=4):
        deploy(service_config, ReplicaOptions(min_replicas=1, max_replicas=3))
        ...
        undeploy()

A replica's start-up (the app's lifespan) ends once its engine is open, so Serve routes no
request to a replica still loading its index and model version (a replica added by the
autoscaler included). A replica whose engine failed to open ends its start-up too but fails
Serve's health check (Serve replaces it); `deploy` waits until a replica's engine is open and
raises with the engine's error when it failed to open.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ReplicaOptions", "LmrecReplica", "application", "deploy", "undeploy", "require_serve", "APP_NAME"]

#: the Serve application (and deployment) name
APP_NAME = "lmrec"


def require_serve() -> Any:
    """The ray.serve module, or an ImportError naming the extra that installs it."""
    try:
        from ray import serve
    except ImportError as e:
        raise ImportError("Ray Serve replicas need Ray Serve: pip install 'lmrec[ray]'") from e
    return serve


@dataclass
class ReplicaOptions:
    """How many replicas run and when the autoscaler changes their number (Ray Serve's
    `autoscaling_config`), and what each one asks of the cluster."""

    min_replicas: int = 1
    max_replicas: int = 2
    #: replicas started first (default: min_replicas)
    initial_replicas: int | None = None
    #: the autoscaler's aim: requests in flight per replica, averaged over the replicas
    target_ongoing_requests: float = 2.0
    #: requests one replica takes at once; the proxy queues the others
    max_ongoing_requests: int = 8
    #: how long the load must stay above / below the target before a replica is added / removed
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    #: CPUs a replica reserves in the cluster (its engine computes a request on one core)
    replica_cpus: float = 1.0
    #: seconds between Serve's health checks of a replica
    health_check_period_s: float = 10.0
    #: replicas that fail to start (their engine fails to open) in a row before the deployment fails
    start_attempts: int = 3

    def __post_init__(self) -> None:
        if self.min_replicas < 0 or self.max_replicas < 1:
            raise ValueError("min_replicas must be >= 0 and max_replicas >= 1")
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})")
        if self.initial_replicas is not None and not self.min_replicas <= self.initial_replicas <= self.max_replicas:
            raise ValueError(f"initial_replicas ({self.initial_replicas}) must lie within "
                             f"[{self.min_replicas}, {self.max_replicas}]")
        if self.target_ongoing_requests <= 0:
            raise ValueError("target_ongoing_requests must be > 0")
        if self.max_ongoing_requests < 1 or self.max_ongoing_requests < self.target_ongoing_requests:
            raise ValueError(f"max_ongoing_requests ({self.max_ongoing_requests}) must be >= 1 and >= "
                             f"target_ongoing_requests ({self.target_ongoing_requests}): a replica that never "
                             "holds the target never triggers a scale-up")
        if self.replica_cpus < 0:
            raise ValueError("replica_cpus must be >= 0")
        if self.start_attempts < 1:
            raise ValueError("start_attempts must be >= 1")

    def autoscaling_config(self) -> dict[str, Any]:
        """Ray Serve's `autoscaling_config` of these options."""
        cfg: dict[str, Any] = {"min_replicas": self.min_replicas, "max_replicas": self.max_replicas,
                               "target_ongoing_requests": self.target_ongoing_requests,
                               "upscale_delay_s": self.upscale_delay_s, "downscale_delay_s": self.downscale_delay_s}
        if self.initial_replicas is not None:
            cfg["initial_replicas"] = self.initial_replicas
        return cfg

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LmrecReplica:
    """One replica: builds the service app from the config when Serve starts it (after the
    constructor, in the replica's process), so the app and its engine are never pickled."""

    def __init__(self, config: Any, log_level: str = "warning") -> None:
        self._config = config
        self._log_level = log_level
        self._app: Any = None

    def __serve_build_asgi_app__(self) -> Any:
        import os

        from lmrec.cli.service_cmd import configure_logging
        from lmrec.serving.app import create_app

        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
        configure_logging(self._log_level)
        app = create_app(self._config)
        st, inner = app.state.service, app.router.lifespan_context

        @contextlib.asynccontextmanager
        async def lifespan(a: Any) -> AsyncIterator[Any]:
            async with inner(a) as state:   # starts opening the engine in the background
                while not st.ready and not st.open_error:   # Serve routes requests once this returns
                    await asyncio.sleep(0.05)
                yield state

        app.router.lifespan_context = lifespan
        self._app = app
        return app

    def _state(self) -> Any:
        return getattr(getattr(self._app, "state", None), "service", None)

    def check_health(self) -> None:
        """Serve's health check: a replica whose engine failed to open is unhealthy (Serve
        replaces it)."""
        st = self._state()
        if st is not None and st.open_error:
            raise RuntimeError(f"engine failed to open: {st.open_message or st.open_error}")

    def engine_status(self) -> dict[str, Any]:
        """Whether this replica's engine is open, its open error, and its worker id (for a
        deployment handle: `handle.engine_status.remote()`)."""
        st = self._state()
        if st is None:
            return {"ready": False, "open_error": None, "worker": None}
        worker = getattr(st.engine, "worker_id", None) if st.ready else None
        return {"ready": bool(st.ready), "open_error": st.open_message or st.open_error, "worker": worker}


def application(config: Any, options: ReplicaOptions | None = None, *, log_level: str = "warning",
                name: str = APP_NAME) -> Any:
    """The Serve application (a bound deployment) running the service of `config` in replicas
    with `options`' autoscaling config."""
    serve = require_serve()
    options = options or ReplicaOptions()
    env = {var: "1" for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    deployment = serve.deployment(
        serve.ingress()(LmrecReplica), name=name,
        autoscaling_config=options.autoscaling_config(),
        max_ongoing_requests=options.max_ongoing_requests,
        ray_actor_options={"num_cpus": options.replica_cpus, "runtime_env": {"env_vars": env}},
        health_check_period_s=options.health_check_period_s,
        max_constructor_retry_count=options.start_attempts,
        graceful_shutdown_timeout_s=15.0,
    )
    return deployment.bind(config, log_level)


def prepare_config(config: Any) -> Any:
    """The service config the replicas get: a store they can share (ValueError otherwise) and
    a follow interval (the `--workers` default when none is set). Returns a copy."""
    from lmrec.serving.workers import DEFAULT_FOLLOW_S, check_shared_store

    check_shared_store(config.store_url())
    config = config.model_copy(deep=True)
    if not config.engine.follow_interval_s:
        config.engine.follow_interval_s = DEFAULT_FOLLOW_S
    return config


def deploy(config: Any, options: ReplicaOptions | None = None, *, log_level: str = "warning",
           name: str = APP_NAME, ready_timeout_s: float = 300.0) -> Any:
    """Start Serve on the connected Ray cluster (its HTTP proxy on `config.host:config.port`,
    with the config's TLS certificate when set), run the replicas and wait until one has
    opened its engine. Returns the deployment handle. Raises ValueError for a store the
    replicas cannot share, RuntimeError when the engine fails to open (the application is
    deleted then) or no replica is ready within `ready_timeout_s`."""
    serve = require_serve()
    config = prepare_config(config)
    http: dict[str, Any] = {"host": config.host, "port": int(config.port), "keep_alive_timeout_s": 65}
    if config.ssl_certfile is not None:
        http["ssl_certfile"] = str(config.ssl_certfile)
        http["ssl_keyfile"] = str(config.ssl_keyfile or config.ssl_certfile)
    serve.start(http_options=http)
    try:
        handle = serve.run(application(config, options, log_level=log_level, name=name), name=name,
                           route_prefix="/")
        wait_ready(handle, ready_timeout_s)
    except RuntimeError as e:
        reason = _failure(serve, name) or str(e)
        with contextlib.suppress(Exception):
            serve.delete(name)
        raise RuntimeError(reason) from None
    return handle


def _failure(serve: Any, name: str) -> str | None:
    """Why the deployment failed, in one line: the engine's open error when that was the cause
    (Serve reports the replicas' last traceback in the deployment's status message)."""
    try:
        app = serve.status().applications.get(name)
        message = app.deployments[name].message if app is not None and name in app.deployments else ""
    except Exception:
        return None
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "engine failed to open:" in ln:
            return "the engine failed to open: " + ln.split("engine failed to open:", 1)[1].strip()
    return lines[-1] if lines else None


def wait_ready(handle: Any, timeout_s: float = 300.0) -> dict[str, Any]:
    """The engine status of a replica once one has opened its engine; RuntimeError with the
    engine's error when it failed to open, or when none is ready within `timeout_s`."""
    t0 = time.monotonic()
    last: dict[str, Any] = {}
    while time.monotonic() - t0 < timeout_s:
        last = handle.engine_status.remote().result(timeout_s=max(timeout_s - (time.monotonic() - t0), 1.0))
        if last.get("open_error"):
            raise RuntimeError(f"the engine failed to open: {last['open_error']}")
        if last.get("ready"):
            return last
        time.sleep(0.2)
    raise RuntimeError(f"no replica opened its engine within {timeout_s:.0f} s (last status: {last})")


def undeploy(name: str = APP_NAME, *, shutdown: bool = True) -> None:
    """Delete the application (its replicas close their engines); with `shutdown` also stop
    Serve's controller and proxy."""
    serve = require_serve()
    serve.delete(name)
    if shutdown:
        serve.shutdown()
