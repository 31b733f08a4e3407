"""`EngineConfig`: every setting of the serving engine, validated, with defaults for a laptop.

Kept apart from the engine so the HTTP layer's settings (`ServiceConfig`) can embed it without
importing the engine's dependencies (faiss, bm25s, encoders).

Example:
    >>> EngineConfig(home="/tmp/shop", encoder="fake").resolved_store_url()
    'sqlite:////tmp/shop/lmrec.db'
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lmrec.stores.records import EVENT_KINDS
from lmrec.text.templates import TEMPLATES

__all__ = ["EngineConfig", "DEFAULT_PIPELINE"]

#: the pipeline a service runs when its settings name none (`lmrec/configs/serve-default.toml`)
DEFAULT_PIPELINE = "serve-default.toml"


class EngineConfig(BaseModel):
    """Everything an engine needs; defaults suit a laptop and the tests use `encoder="fake"`."""

    model_config = ConfigDict(extra="forbid")

    home: Path = Field(description="folder for index/, models/, embeddings/ and the default SQLite db")
    store_url: str | None = Field(None, description="record store URL; default sqlite:///<home>/lmrec.db")
    config: str = Field(DEFAULT_PIPELINE, description="the pipeline config (TOML) the service trains and serves: a "
                                                      "file, or the name of a shipped config (lmrec/configs)")
    overrides: dict[str, Any] = Field(default_factory=dict, description="merged into `config` (as `extends` "
                                                                        "merges files)")
    pipeline_encoder: bool = Field(True, description="give the shipped default pipeline the service's `encoder` "
                                                     "(its LM channel then reads the catalog's own embeddings)")
    model_version: str | None = Field(None, description="serve this saved version; None = the newest one built "
                                                        "from `config` (trained at open when there is none)")
    train_kinds: tuple[str, ...] = Field(("view", "click", "cart", "purchase", "rating"),
                                         description="event kinds the pipeline learns from and treats as consumed; "
                                                     "other kinds are stored only")
    has_timestamps: bool = Field(True, description="event timestamps are times (False: positions in a sequence)")
    retrain_every_events: int = Field(0, ge=0, description="retrain in the background after this many new events "
                                                           "(0: never)")
    retrain_every_minutes: float = Field(0.0, ge=0, description="retrain in the background this often when events "
                                                                "arrived (0: never)")
    follow_interval_s: float = Field(0.0, ge=0, le=60, description="several workers over one shared store and home: "
                                     "poll the store this often for the others' events, item changes, erasures and "
                                     "version switches (lmrec.serving.follower; `lmrec serve --workers N` sets 0.25). "
                                     "0: off (one process)")
    drift_window_events: int = Field(10_000, ge=0, description="drift checks (/admin/stats, lmrec_drift_* metrics) "
                                     "compare the latest this many events with the served version's training data; "
                                     "0: off")
    encoder: str = Field("auto", description="lmrec.text.registry name embedding the catalog (search, similar); "
                         "auto: the one recorded for the home, else e5-small (multilingual) for an empty catalog "
                         "or one with Chinese / Japanese / Korean text and minilm for an all-Latin one "
                         "(lmrec.serving.encoders.resolve_encoder)")
    query_encoder: str | None = Field(
        None, description="another encoder (same dim) for queries only; for latency benchmarks over a catalog "
                          "embedded by a cheap encoder. None = `encoder`")
    encoder_threads: int | None = Field(None, ge=1, description="intra-op threads of the encoders")
    index: Literal["flat", "hnsw"] = "hnsw"
    hnsw_m: int = Field(16, ge=4)
    hnsw_ef_construction: int = Field(64, ge=8)
    hnsw_ef_search: int = Field(128, ge=8)
    index_build_threads: int | None = Field(None, ge=1, description="threads for a full index build (None: all)")
    item_template: str = Field(TEMPLATES["generic"], description="lmrec.text.templates format string of item text "
                                                                  "({description} is the item's text)")
    recommend_batch: int = Field(16, ge=1, le=1024, description="concurrent /recommend calls computed as one "
                                                                "pipeline batch at most (1: no coalescing)")
    search_depth: int = Field(100, ge=1, description="candidates asked from BM25 and dense search")
    cross_encoder: Path | None = Field(None, description="folder of a trained cross-encoder (`lmrec "
                                                         "finetune-cross-encoder`): /search re-ranks its top "
                                                         "`rerank_top` hits with it. None: no re-ranking")
    cross_encoder_backend: Literal["torch", "onnx", "int8"] = Field(
        "int8", description="how the cross-encoder runs: int8 / onnx (ONNX Runtime) or torch")
    rerank_top: int = Field(20, ge=1, le=200, description="search hits the cross-encoder re-scores")
    rerank_mix: float = Field(0.25, ge=0, le=1, description="weight of the fused first-stage score (min-max "
                                                            "normalised) in the re-ranked order; 0 = cross-encoder only")
    rrf_k: float = Field(60.0, gt=0, description="reciprocal rank fusion constant of search")
    personal_weight: float = Field(0.3, ge=0, description="search personalisation, in first-place RRF votes")
    half_life: float = Field(20.0, gt=0, description="recency weighting of the search profile, in events")
    embedding_cache: Path | None = Field(None, description="default <home>/embeddings")
    save_index_on_close: bool = True
    bm25_rebuild_fraction: float = Field(0.05, gt=0)
    bm25_rebuild_min: int = Field(256, ge=1)
    log_rankings: bool = True
    blas_threads: int | None = Field(1, ge=1, description="BLAS threads while the engine is open (None: leave)")
    progress: bool = Field(False, description="rich progress bars while opening")
    gc_freeze: bool = Field(True, description="move what open() loaded out of the cyclic GC's reach (gc.freeze): "
                                              "no full-collection pauses over the catalog while serving")

    @field_validator("train_kinds")
    @classmethod
    def _known_kinds(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [k for k in v if k not in EVENT_KINDS]
        if bad:
            raise ValueError(f"unknown event kind(s) {bad}; expected some of {EVENT_KINDS}")
        if not v:
            raise ValueError("name at least one event kind to learn from")
        return v

    @field_validator("config")
    @classmethod
    def _config_exists(cls, v: str) -> str:
        from lmrec.pipeline.spec import resolve_config_path

        try:
            resolve_config_path(v)
        except FileNotFoundError as e:
            raise ValueError(str(e)) from None
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

        return None if v is None or v == "auto" else check_encoder_name(v)

    @model_validator(mode="after")
    def _defaults(self) -> EngineConfig:
        self.home = Path(self.home).expanduser()
        return self

    def pipeline_overrides(self) -> dict[str, Any]:
        """`overrides`, plus the service's encoder for the shipped default pipeline."""
        from lmrec.pipeline.spec import resolve_config_path

        out = dict(self.overrides)
        if self.pipeline_encoder and resolve_config_path(self.config).name == DEFAULT_PIPELINE:
            if self.encoder == "auto":
                raise ValueError("the encoder is not resolved yet (lmrec.serving.encoders.resolve_encoder)")
            out.setdefault("encoder", self.encoder)
        return out

    def resolved_store_url(self) -> str:
        return self.store_url or f"sqlite:///{self.home / 'lmrec.db'}"
