"""`EngineConfig`: every setting of the serving engine, validated, with defaults for a laptop.

Kept apart from the engine so the HTTP layer's settings (`ServiceConfig`) can embed it without
importing the engine's dependencies (faiss, bm25s, encoders).

Example:
    >>> EngineConfig(home="/tmp/shop", encoder="fake").resolved_store_url()
    'sqlite:////tmp/shop/lmrec.db'
"""

from __future__ import annotations

import math
import string
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lmrec.stores.records import EVENT_KINDS
from lmrec.text.templates import TEMPLATES

__all__ = ["CHANNELS", "EngineConfig"]

#: recommend channels that `channel_weights` may name
CHANNELS = ("lm", "cf", "popular")


class EngineConfig(BaseModel):
    """Everything an engine needs; defaults suit a laptop and the tests use `encoder="fake"`."""

    model_config = ConfigDict(extra="forbid")

    home: Path = Field(description="folder for index/, models/, embeddings/ and the default SQLite db")
    store_url: str | None = Field(None, description="record store URL; default sqlite:///<home>/lmrec.db")
    user_state_url: str | None = Field(None, description="None = in-process memory; redis://... shares it")
    encoder: str = Field("minilm", description="lmrec.text.registry name embedding the items")
    query_encoder: str | None = Field(
        None, description="another encoder (same dim) for queries only; for latency benchmarks over a catalog "
                          "embedded by a cheap encoder. None = `encoder`")
    encoder_threads: int | None = Field(None, ge=1, description="intra-op threads of the encoders")
    index: Literal["flat", "hnsw"] = "hnsw"
    hnsw_m: int = Field(16, ge=4)
    hnsw_ef_construction: int = Field(64, ge=8)
    hnsw_ef_search: int = Field(128, ge=8)
    index_build_threads: int | None = Field(None, ge=1, description="threads for a full index build (None: all)")
    half_life: float = Field(20.0, gt=0, description="recency weighting of the user profile, in events")
    history_len: int = Field(200, ge=1, description="recent events kept per user in the user-state store")
    item_template: str = Field(TEMPLATES["generic"], description="lmrec.text.templates format string of item text")
    kind_weights: dict[str, float] = Field(
        default_factory=lambda: {"view": 1.0, "click": 2.0, "cart": 3.0, "purchase": 4.0, "rating": 2.0,
                                 "impression": 0.0},
        description="weight of an event in the profile and popularity, by kind (0: ignored there)")
    rating_threshold: float = Field(3.0, description="ratings below this add nothing to profile or popularity")
    seen_kinds: tuple[str, ...] = Field(("view", "click", "cart", "purchase", "rating"),
                                        description="event kinds after which an item is not recommended again")
    train_kinds: tuple[str, ...] = Field(("view", "click", "cart", "purchase", "rating"),
                                         description="event kinds a CF model is trained on")
    popularity_half_life_s: float = Field(7 * 86400.0, gt=0)
    fallback_min_history: int = Field(3, ge=0, description="profiles with fewer events also get popular items")
    channel_weights: dict[str, float] = Field(default_factory=lambda: {"lm": 1.0, "cf": 1.0, "popular": 0.5})
    rrf_k: float = Field(60.0, gt=0)
    recall_depth: int = Field(100, ge=1, description="candidates asked from each recommend channel")
    search_depth: int = Field(100, ge=1, description="candidates asked from BM25 and dense search")
    personal_weight: float = Field(0.3, ge=0, description="search personalisation, in first-place RRF votes")
    explain_history: int = Field(20, ge=1, description="recent events an explanation looks at")
    embedding_cache: Path | None = Field(None, description="default <home>/embeddings")
    model_version: str | None = Field(None, description="version loaded at open; None = the latest saved")
    load_model: bool = True
    save_index_on_close: bool = True
    bm25_rebuild_fraction: float = Field(0.05, gt=0)
    bm25_rebuild_min: int = Field(256, ge=1)
    log_rankings: bool = True
    rebuild_user_state: bool | None = Field(
        None, description="replay events into the user-state store at open; None = only for in-memory state")
    blas_threads: int | None = Field(1, ge=1, description="BLAS threads while the engine is open (None: leave)")
    progress: bool = Field(False, description="rich progress bars while opening")
    gc_freeze: bool = Field(True, description="move what open() loaded out of the cyclic GC's reach (gc.freeze): "
                                              "no full-collection pauses over the catalog while serving")

    @field_validator("seen_kinds", "train_kinds")
    @classmethod
    def _known_kinds(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [k for k in v if k not in EVENT_KINDS]
        if bad:
            raise ValueError(f"unknown event kind(s) {bad}; expected some of {EVENT_KINDS}")
        return v

    @field_validator("kind_weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k in v if k not in EVENT_KINDS]
        if bad:
            raise ValueError(f"unknown event kind(s) {bad}; expected some of {EVENT_KINDS}")
        if any(not math.isfinite(w) or w < 0 for w in v.values()):
            raise ValueError("kind weights must be finite and >= 0")
        return v

    @field_validator("channel_weights")
    @classmethod
    def _channels(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k in v if k not in CHANNELS]
        if bad:
            raise ValueError(f"unknown channel(s) {bad}; channels are {CHANNELS}")
        if any(not math.isfinite(w) or w < 0 for w in v.values()):
            raise ValueError("channel weights must be finite and >= 0")
        return v

    @field_validator("item_template")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(v) if f]
        except ValueError as e:
            raise ValueError(f"not a format string ({e}): {v!r}") from None
        if not fields:
            raise ValueError(f"names no item field, e.g. {{title}}: {v!r}")
        return v

    @field_validator("encoder", "query_encoder")
    @classmethod
    def _encoder(cls, v: str | None) -> str | None:
        from lmrec.text.registry import check_encoder_name

        return None if v is None else check_encoder_name(v)

    @model_validator(mode="after")
    def _defaults(self) -> EngineConfig:
        self.home = Path(self.home).expanduser()
        return self

    def resolved_store_url(self) -> str:
        return self.store_url or f"sqlite:///{self.home / 'lmrec.db'}"
