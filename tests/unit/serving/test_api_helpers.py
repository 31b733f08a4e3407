"""Fixtures shared by the HTTP API tests (imported by the test_api_*.py modules).

Every API test runs against SQLite and PostgreSQL (`store_url` is parametrised). PostgreSQL
comes from LMREC_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test); each
test gets its own schema, dropped afterwards, and the test is skipped when the server is
unreachable. The engine uses the fake encoder and a flat index over a 48-item toy catalog.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lmrec.serving.app import create_app
from lmrec.serving.auth import create_api_key
from lmrec.serving.config import ServiceConfig
from lmrec.serving.engine import Engine, EngineConfig
from lmrec.stores.records import ItemRecord
from lmrec.testing.toy import toy_dataset

PG_URL = os.environ.get("LMREC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@cache
def postgres_unreachable() -> str | None:
    """Why PostgreSQL cannot be used (None when it can)."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'lmrec[serve]')"
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.OperationalError as e:
        return f"PostgreSQL unreachable at {PG_URL} (set LMREC_TEST_POSTGRES_URL): {str(e).strip()[:200]}"
    return None


def drop_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql as pgsql

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pgsql.Identifier(schema)))


@contextmanager
def postgres_schema_url() -> Iterator[str]:
    """A PostgreSQL URL with a fresh schema (skips the test when the server is unreachable)."""
    reason = postgres_unreachable()
    if reason:
        pytest.skip(reason)
    schema = f"lmrec_api_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}"
    finally:
        drop_schema(schema)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/lmrec.db"
    else:
        with postgres_schema_url() as url:
            yield url


def toy_items(n_items: int = 48) -> list[ItemRecord]:
    """The toy data set's items: title "<genre> movie <i>", one genre category."""
    table = toy_dataset(n_items=n_items).item_table
    assert table is not None
    return [ItemRecord(str(i + 1), title=table.title[i], categories=tuple(table.categories[i]),
                       text=f"A {table.categories[i][0]} film.") for i in range(n_items)]


EASE_TOML = """encoder = "fake"
[[channels]]
name = "ease"
model = "ease"
params = { lam = 10.0 }
[[channels]]
name = "popular"
model = "popular"
min_history = 0
quota = 20
[fallback]
chain = ["popular"]
[rank]
ranker = "none"
features = [{ name = "channels" }]
"""


def ease_config(folder: Path) -> str:
    """A small pipeline config file (EASE + popularity, no learned ranker) for training tests."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ease-only.toml"
    path.write_text(EASE_TOML)
    return str(path)


def engine_config(home: Path, store_url: str, **kw: Any) -> EngineConfig:
    return EngineConfig(home=home, store_url=store_url, encoder="fake", index="flat", **kw)


@dataclass
class Api:
    """A running app over an open engine, with one key per scope."""

    client: TestClient
    app: FastAPI
    engine: Engine
    keys: dict[str, str] = field(default_factory=dict)

    def headers(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.headers("admin")

    @property
    def read(self) -> dict[str, str]:
        return self.headers("read")

    @property
    def write(self) -> dict[str, str]:
        return self.headers("write")


@contextmanager
def running_api(home: Path, store_url: str, *, items: list[ItemRecord] | None = None,
                engine_kw: dict[str, Any] | None = None, **service: Any) -> Iterator[Api]:
    """Open an engine on `store_url`, load `items` (the toy catalog by default), create keys
    for each scope and serve the app through a TestClient. Rate limiting is off and key
    records are not cached unless the test asks for them."""
    engine = Engine.open(engine_config(home, store_url, **(engine_kw or {})))
    try:
        engine.upsert_items(toy_items() if items is None else items)
        service.setdefault("rate_limit_rps", 0.0)
        service.setdefault("auth_cache_seconds", 0.0)
        app = create_app(ServiceConfig(engine=engine.config, **service), engine=engine)
        keys = {scope: create_api_key(engine.store, f"test-{scope}", [scope])[0] for scope in ("read", "write",
                                                                                             "admin")}
        with TestClient(app) as client:
            yield Api(client, app, engine, keys)
    finally:
        engine.close()


@pytest.fixture
def api(tmp_path: Path, store_url: str) -> Iterator[Api]:
    with running_api(tmp_path / "home", store_url) as a:
        yield a


def views(user: str, item_ids: list[str], kind: str = "view", start: float = 1_000_000.0) -> list[dict[str, Any]]:
    """Event bodies: `user` interacts with each item in turn, one second apart."""
    return [{"user_id": user, "item_id": i, "kind": kind, "timestamp": start + n} for n, i in enumerate(item_ids)]


def genre_ids(genre: str, items: list[ItemRecord] | None = None) -> list[str]:
    return [r.item_id for r in (items or toy_items()) if r.categories[0] == genre]


def item_ids(ranking: dict[str, Any]) -> list[str]:
    return [i["item_id"] for i in ranking["items"]]


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples `name` with these labels in Prometheus text (0.0 when none)."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(float(sample.value) for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))
