"""`ServiceConfig`: the engine's configuration plus what the HTTP layer needs (auth, rate
limits, body size, logging, host / port), from arguments or LMREC_* environment variables.

Nested engine fields use a double underscore: `LMREC_ENGINE__HOME=/srv/lmrec`,
`LMREC_ENGINE__ENCODER=e5-small`; service fields are flat: `LMREC_PORT=8080`,
`LMREC_RATE_LIMIT_RPS=50`, `LMREC_AUTH_ENABLED=false` (local demos only).

Example:
    >>> cfg = ServiceConfig(engine={"home": "/tmp/lmrec-doc", "encoder": "fake"}, port=9000)
    >>> cfg.port, cfg.auth_enabled, cfg.store_url()
    (9000, True, 'sqlite:////tmp/lmrec-doc/lmrec.db')
"""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lmrec.serving.engine_config import EngineConfig

__all__ = ["ServiceConfig"]


class ServiceConfig(BaseSettings):
    """Settings of one service process. Precedence: arguments, then LMREC_* variables."""

    model_config = SettingsConfigDict(env_prefix="LMREC_", env_nested_delimiter="__", extra="forbid")

    engine: EngineConfig
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)

    auth_enabled: bool = Field(True, description="require API keys; turn off only for a local demo")
    auth_cache_seconds: float = Field(5.0, ge=0, description="how long a verified key is cached: a revocation "
                                                              "made elsewhere takes effect within this time")
    rate_limit_rps: float = Field(100.0, ge=0, description="sustained requests per second per key (0: no limit)")
    rate_limit_burst: int = Field(200, ge=1, description="requests a key may make at once after being idle")
    max_body_bytes: int = Field(2_000_000, ge=1024, description="larger request bodies get 413")
    max_batch: int = Field(1000, ge=1, le=100_000, description="most events / items in one request")
    metrics_public: bool = Field(True, description="serve /metrics without a key (it holds no ids)")

    log_raw_ids: bool = Field(False, description="log raw user ids and query text (debugging only)")
    log_hash_key: SecretStr | None = Field(None, description="HMAC key of the masked ids in logs; random per "
                                                              "process when unset")

    @model_validator(mode="after")
    def _check(self) -> "ServiceConfig":
        if self.log_hash_key is not None and not self.log_hash_key.get_secret_value():
            raise ValueError("log_hash_key: must not be empty (leave it unset for a random key)")
        return self

    def store_url(self) -> str:
        """The record store the engine uses (the sqlite file in its home by default)."""
        return self.engine.resolved_store_url()
