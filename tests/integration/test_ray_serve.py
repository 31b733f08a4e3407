"""The service as Ray Serve replicas (lmrec.distributed.serve, `lmrec ray serve`).

A local Ray cluster (2 CPUs, its own temporary folder, as in test_ray.py) runs two replicas of
the app (autoscaling config: min 1, max 2, two started) over one store: PostgreSQL when it is
reachable, else a SQLite file. Requests go through Serve's HTTP proxy: /health, then items and
events posted through whichever replica the proxy picks, and /recommend from both replicas
reflecting them. Skipped with a message when Ray Serve is not installed (`pip install -e '.[ray]'`).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from lmrec.distributed.serve import ReplicaOptions

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")
serve = pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install -e '.[ray]'")

from lmrec.testing.ray_cluster import local_ray_cluster  # noqa: E402
from lmrec.distributed.serve import APP_NAME, deploy, undeploy  # noqa: E402
from lmrec.serving.config import ServiceConfig  # noqa: E402
from lmrec.serving.engine import EngineConfig  # noqa: E402

PG_URL = os.environ.get("LMREC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="module")
def cluster():
    with local_ray_cluster("lmrec-serve-test-") as r:
        yield r


@pytest.fixture
def store_url(tmp_path: Path) -> Iterator[str]:
    """A fresh PostgreSQL schema when the server is reachable, else a SQLite file."""
    try:
        import psycopg

        psycopg.connect(PG_URL, connect_timeout=3).close()
    except Exception:   # no driver or no server: the replicas share a SQLite file on this machine
        yield f"sqlite:///{tmp_path}/home/lmrec.db"
        return
    schema = f"lmrec_rayserve_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def within(seconds: float, check: Callable[[], Any], what: str) -> Any:
    t0 = time.monotonic()
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() - t0 < seconds, f"{what}: not seen within {seconds} s"
        time.sleep(0.05)


def test_replica_options_autoscaling_config_and_checks() -> None:
    opts = ReplicaOptions(min_replicas=1, max_replicas=3, initial_replicas=2, target_ongoing_requests=4,
                          max_ongoing_requests=10, upscale_delay_s=5, downscale_delay_s=60)
    assert opts.autoscaling_config() == {"min_replicas": 1, "max_replicas": 3, "initial_replicas": 2,
                                         "target_ongoing_requests": 4, "upscale_delay_s": 5,
                                         "downscale_delay_s": 60}
    for bad, needle in [({"min_replicas": 3, "max_replicas": 2}, "above max_replicas"),
                        ({"initial_replicas": 5}, "initial_replicas"),
                        ({"target_ongoing_requests": 0}, "target_ongoing_requests"),
                        ({"target_ongoing_requests": 9, "max_ongoing_requests": 4}, "max_ongoing_requests")]:
        with pytest.raises(ValueError, match=needle):
            ReplicaOptions(**bad)


def test_deploy_refuses_a_private_store(cluster, tmp_path: Path) -> None:
    cfg = ServiceConfig(engine=EngineConfig(home=tmp_path, store_url="sqlite:///:memory:", encoder="fake"),
                        auth_enabled=False)
    with pytest.raises(ValueError, match="in-memory SQLite"):
        deploy(cfg, ReplicaOptions())


def test_two_replicas_behind_the_serve_proxy(cluster, tmp_path: Path, store_url: str) -> None:
    port = free_port()
    engine = EngineConfig(home=tmp_path / "home", store_url=store_url, encoder="fake", index="flat",
                          follow_interval_s=0.1, gc_freeze=False)
    cfg = ServiceConfig(engine=engine, host="127.0.0.1", port=port, auth_enabled=False, rate_limit_rps=0)
    # half a CPU each: both fit the 2-CPU cluster beside Serve's controller and proxy
    opts = ReplicaOptions(min_replicas=1, max_replicas=2, initial_replicas=2, target_ongoing_requests=2,
                          replica_cpus=0.5, downscale_delay_s=600, health_check_period_s=2)
    handle = deploy(cfg, opts, ready_timeout_s=60)
    print(f"store: {store_url.split('?')[0]}")
    try:
        app = serve.status().applications[APP_NAME]
        assert app.status == "RUNNING"
        dep = app.deployments[APP_NAME]
        assert dep.replica_states.get("RUNNING") == 2, dep.replica_states
        # both replicas' engines open (the handle reaches either)
        handle_seen: set[str] = set()

        def handle_workers() -> bool:
            st = handle.engine_status.remote().result(timeout_s=30)
            assert not st["open_error"], st
            if st["ready"]:
                handle_seen.add(st["worker"])
            return len(handle_seen) == 2

        within(60, handle_workers, "two replicas with open engines")

        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            r = c.get("/health")
            assert r.status_code == 200, r.text
            # a replica's start-up ends once its engine is open: no 503 "engine is starting"
            assert [c.get("/ready").status_code for _ in range(6)] == [200] * 6
            genres = ["jazz", "opera", "techno"]
            items = [{"item_id": str(i), "title": f"{genres[i % 3]} record {i}", "categories": [genres[i % 3]]}
                     for i in range(12)]
            assert c.post("/items", json={"items": items}).status_code == 200
            r = c.post("/events", json=[{"user_id": "p1", "item_id": i, "kind": "view"} for i in ("0", "3", "6")])
            assert r.status_code == 200, r.text
            assert r.json()["accepted"] == 3, r.json()

            def every_replica_reflects_the_events() -> bool:
                # the proxy spreads requests over the replicas: a run of answers all right
                for _ in range(8):
                    got = {i["item_id"] for i in c.get("/recommend/p1", params={"k": 12}).json()["items"]}
                    if got & {"0", "3", "6"} or len(got) != 9:
                        return False
                return True

            within(10, every_replica_reflects_the_events, "the events in every replica's /recommend")
            http_seen: set[str] = set()

            def stats_workers() -> bool:
                r = c.get("/admin/stats")
                assert r.status_code == 200, r.text
                http_seen.add(r.json()["worker"]["id"])
                return len(http_seen) == 2

            within(20, stats_workers, "/admin/stats answered by both replicas")
            assert http_seen == handle_seen
            assert c.get("/users/p1/history").json()["total"] == 3
    finally:
        undeploy()

    def proxy_gone() -> bool:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
        except httpx.TransportError:
            return True
        return False

    within(15, proxy_gone, "the proxy stopped after undeploy")


def test_an_engine_that_fails_to_open_is_reported(cluster, tmp_path: Path) -> None:
    """Serve retries the replica a few times, then `deploy` raises with the engine's own error
    and deletes the application."""
    engine = EngineConfig(home=tmp_path / "home", store_url="postgresql://nobody@127.0.0.1:1/none", encoder="fake",
                          index="flat")
    cfg = ServiceConfig(engine=engine, host="127.0.0.1", port=free_port(), auth_enabled=False)
    try:
        with pytest.raises(RuntimeError, match="the engine failed to open: .*127.0.0.1"):
            deploy(cfg, ReplicaOptions(replica_cpus=0.5, start_attempts=1), ready_timeout_s=60)
        assert APP_NAME not in serve.status().applications
    finally:
        undeploy()


@pytest.mark.parametrize("args,needle", [
    (["--min-replicas", "3", "--max-replicas", "2"], "min_replicas (3) is above max_replicas (2)"),
    (["--target-ongoing-requests", "9", "--max-ongoing-requests", "4"], "max_ongoing_requests (4) must be"),
    (["--store-url", "sqlite:///:memory:"], "an in-memory SQLite store is private to one process"),
    (["--detach"], "--detach needs --address"),
    (["--store-url", "postgresql://nobody@127.0.0.1:1/none"], "cannot open the store"),
])
def test_cli_bad_arguments_fail_before_starting_ray(args: list[str], needle: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lmrec.cli.main import app

    res = CliRunner().invoke(app, ["ray", "serve", "--home", str(tmp_path / "home"), "--encoder", "fake", *args])
    assert res.exit_code == 1, res.output
    assert needle in " ".join(res.output.split()), res.output
