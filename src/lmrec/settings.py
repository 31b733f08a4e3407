"""Settings from `lmrec.toml` (current directory) and LMREC_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import (
    BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource,
)


def _default_data_dir() -> Path:
    """`../shared/data` relative to the working directory (or to the source checkout) when it
    exists, else `~/.cache/lmrec/data` where downloads go."""
    candidates = [Path.cwd().parent / "shared" / "data", Path(__file__).resolve().parents[3] / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    return Path.home() / ".cache" / "lmrec" / "data"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LMREC_", toml_file="lmrec.toml", extra="ignore")

    data_dir: Path | None = None
    cache_dir: Path = Path.home() / ".cache" / "lmrec"

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        # precedence: constructor arguments, LMREC_* environment variables, then lmrec.toml
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    def resolved_data_dir(self) -> Path:
        return Path(self.data_dir).expanduser() if self.data_dir else _default_data_dir()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def data_dir() -> Path:
    """The data directory: LMREC_DATA_DIR (or `data_dir` in lmrec.toml), else ../shared/data
    when it exists. Read afresh on each call, so a changed environment takes effect."""
    return Settings().resolved_data_dir()
