"""`ServiceConfig`: the settings of one service process, the engine's included.

It is `lmrec.settings.Settings` (arguments, then LMREC_* variables, then lmrec.toml) with the
`[engine]` table required. Nested engine fields use a double underscore:
`LMREC_ENGINE__HOME=/srv/lmrec`, `LMREC_ENGINE__CONFIG=ml-100k`; service fields are flat:
`LMREC_PORT=8080`, `LMREC_RATE_LIMIT_RPS=50`, `LMREC_AUTH_ENABLED=false` (local demos only).

Example:
    >>> cfg = ServiceConfig(engine={"home": "/tmp/lmrec-doc", "encoder": "fake"}, port=9000)
    >>> cfg.port, cfg.auth_enabled, cfg.store_url()
    (9000, True, 'sqlite:////tmp/lmrec-doc/lmrec.db')
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from lmrec.serving.engine_config import EngineConfig
from lmrec.settings import Settings

__all__ = ["ServiceConfig"]


class ServiceConfig(Settings):
    """Settings of one service process (the engine is required)."""

    engine: EngineConfig
    events_url: str | None = Field(None, description="consume events from this stream besides POST /events: "
                                                     "nats://host:4222/SUBJECT or redis://host:6379/0?stream=KEY "
                                                     "(lmrec.streams)")
    events_publish: bool = Field(False, description="POST /events publishes the validated events to events_url "
                                                    "(202) instead of committing them; the stream's consumers "
                                                    "commit them")
    unknown_item_events: Literal["accept", "reject"] = Field(
        "accept", description="POST /events naming an item that is not in the catalog: 'accept' stores it (the item "
                              "may be added later; it is counted in the answer's `unknown_items`), 'reject' refuses "
                              "it like any invalid event (field 'item_id', also counted)")

    ssl_certfile: Path | None = Field(None, description="serve HTTPS with this PEM certificate (chain); the key "
                                                        "too when ssl_keyfile is not set")
    ssl_keyfile: Path | None = Field(None, description="the PEM private key of ssl_certfile (unencrypted)")

    @field_validator("ssl_certfile", "ssl_keyfile")
    @classmethod
    def _readable_file(cls, v: Path | None) -> Path | None:
        if v is None:
            return None
        v = v.expanduser()
        if not v.is_file():
            raise ValueError(f"{v}: no such file")
        return v.resolve()

    @field_validator("events_url")
    @classmethod
    def _events_url(cls, v: str | None) -> str | None:
        if v is None:
            return None
        from lmrec.streams import parse_stream_url

        kind = parse_stream_url(v).kind
        try:
            __import__("nats" if kind == "nats" else "redis")
        except ImportError:
            raise ValueError(f"{kind} streams need pip install 'lmrec[stream]'") from None
        return v

    @model_validator(mode="after")
    def _key_needs_a_cert(self) -> ServiceConfig:
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("ssl_keyfile: set ssl_certfile too (the certificate the key belongs to)")
        return self

    @model_validator(mode="after")
    def _publish_needs_a_stream(self) -> ServiceConfig:
        if self.events_publish and not self.events_url:
            raise ValueError("events_publish: set events_url, the stream POST /events publishes to")
        return self

    def store_url(self) -> str:
        """The record store the engine uses (the sqlite file in its home by default)."""
        return self.engine.resolved_store_url()
