"""One configuration system: `Settings` from arguments, `LMREC_*` environment variables and
`lmrec.toml` (in the working directory), in that order of precedence.

Top-level keys are the data and cache folders and the HTTP service's settings; `[engine]`
holds the serving engine's (`lmrec.serving.engine_config.EngineConfig`: home, the pipeline
config it serves, encoders, index, retraining schedule, ...). Nested settings use a double
underscore in the environment: `LMREC_ENGINE__CONFIG=ml-100k`, `LMREC_PORT=8080`. Every key
is checked: a misspelt one in lmrec.toml (or an unknown LMREC_ENGINE__ variable) is an error
naming it, not a silently ignored line.

Example lmrec.toml:

    data_dir = "../shared/data"
    port = 8000

    [engine]
    home = "./shop"
    config = "configs/ml-100k.toml"
    retrain_every_minutes = 60
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource,
)

__all__ = ["Settings", "SettingsError", "get_settings", "data_dir", "load_settings"]

SETTINGS_FILE = "lmrec.toml"


def _default_data_dir() -> Path:
    """`../shared/data` relative to the working directory (or to the source checkout) when it
    exists, else `~/.cache/lmrec/data` where downloads go."""
    candidates = [Path.cwd().parent / "shared" / "data", Path(__file__).resolve().parents[3] / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    return Path.home() / ".cache" / "lmrec" / "data"


class SettingsError(ValueError):
    """lmrec.toml or the LMREC_* environment holds an invalid or unknown setting."""


class Settings(BaseSettings):
    """Every setting of lmrec (see the module docstring)."""

    model_config = SettingsConfigDict(env_prefix="LMREC_", env_nested_delimiter="__", toml_file=SETTINGS_FILE,
                                      extra="forbid")

    data_dir: Path | None = Field(None, description="where data sets are read (default ../shared/data)")
    cache_dir: Path = Field(Path.home() / ".cache" / "lmrec", description="embedding cache and downloads")

    # the engine's settings as given; the service validates them as an EngineConfig (where a
    # missing home or a misspelt key is an error), so reading e.g. data_dir does not need them
    engine: dict[str, Any] = Field(default_factory=dict, description="the serving engine ([engine] in lmrec.toml)")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    auth_enabled: bool = Field(True, description="require API keys; turn off only for a local demo")
    auth_cache_seconds: float = Field(5.0, ge=0, description="how long a verified key is cached: a revocation "
                                                              "made elsewhere takes effect within this time")
    rate_limit_rps: float = Field(100.0, ge=0, description="sustained requests per second per key (0: no limit)")
    rate_limit_burst: int = Field(200, ge=1, description="requests a key may make at once after being idle")
    auth_failure_rps: float = Field(0.2, ge=0, description="failed authentications (401) per second per client "
                                                           "address; past auth_failure_burst they get 429 (0: no limit)")
    auth_failure_burst: int = Field(20, ge=1, description="failed authentications a client address may make at once")
    max_body_bytes: int = Field(2_000_000, ge=1024, description="larger request bodies get 413")
    max_batch: int = Field(1000, ge=1, le=100_000, description="most events / items in one request")
    max_future_seconds: float = Field(86_400.0, ge=0, description="event times further than this past the "
                                                                  "server clock are refused (422)")
    ranking_threads: int = Field(2, ge=1, le=64, description="search and similar requests computed at once; "
                                                             "the others queue (recommend calls are coalesced "
                                                             "into batches by the engine)")
    metrics_public: bool = Field(True, description="serve /metrics without a key (it holds no ids)")
    log_raw_ids: bool = Field(False, description="log raw user ids and query text (debugging only)")
    log_hash_key: SecretStr | None = Field(None, description="HMAC key of the masked ids in logs; random per "
                                                              "process when unset")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        # precedence: constructor arguments, LMREC_* environment variables, then lmrec.toml
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.log_hash_key is not None and not self.log_hash_key.get_secret_value():
            raise ValueError("log_hash_key: must not be empty (leave it unset for a random key)")
        return self

    def resolved_data_dir(self) -> Path:
        return Path(self.data_dir).expanduser() if self.data_dir else _default_data_dir()


def load_settings(cls: type[Settings] = Settings, **values: object) -> Settings:
    """`cls(**values)` with a readable error: SettingsError names the file (or the variable)
    and every bad field."""
    try:
        return cls(**values)  # type: ignore[arg-type]
    except ValidationError as e:
        where = f"{Path.cwd() / SETTINGS_FILE}, the LMREC_* environment or the command line" \
            if Path(SETTINGS_FILE).is_file() else "the LMREC_* environment or the command line"
        lines = [f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise SettingsError(f"invalid settings ({where}):\n" + "\n".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def data_dir() -> Path:
    """The data directory: LMREC_DATA_DIR (or `data_dir` in lmrec.toml), else ../shared/data
    when it exists. Read afresh on each call, so a changed environment takes effect."""
    return load_settings().resolved_data_dir()
