"""Pipeline configuration: the `PipelineSpec` a TOML file describes, and how files combine.

A data-set config names only what differs from the file it `extends`: tables merge key by
key, and the named lists (`[[channels]]`, `rank.features`, `rerank.stages`) merge by `name`:
an entry with a name the base has changes that entry in place (`weight = 0.5` alone keeps
everything else), a new name is appended (or placed with `before = "<name>"` / `after`), and
`drop = true` removes an entry. Every stage's
parameters are validated when the file loads, so a misspelt key fails naming the file, the
stage and the field.

Example:
    >>> spec = load_spec(spec={"channels": [{"name": "pop", "model": "popular"}], "encoder": "fake"},
    ...                  overrides={"channels": [{"name": "pop", "quota": 20}, {"name": "lm", "model": "lm-mean",
    ...                                                                       "params": {"encoder": "fake"}}]})
    >>> [(c.name, c.quota) for c in spec.channels]
    [('pop', 20), ('lm', 100)]
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lmrec.rank.training import WindowSpec

__all__ = ["CONFIG_DIR", "ChannelSpec", "FallbackSpec", "MergeSpec", "StageSpec", "RankSpec", "RerankSpec", "ExplainSpec",
           "PipelineSpec", "DEFAULT_FEATURES", "load_spec", "resolve_config_path"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChannelSpec(_Strict):
    """name: the channel's name in stage scores and explanations; model / params: a
    `lmrec.component` model; quota: items it lists per user; min_history: events a user needs
    for it to run (0 for popularity); weight: in the merge score; fallback_only: run only
    through the fallback chain; index: how a vector model retrieves its top `quota`
    ("exact": one product with the item table; "hnsw": an approximate inner-product graph,
    for large catalogs), with `index_params` (M, ef_construction, ef_search)."""

    name: str
    model: str
    params: dict[str, Any] = {}
    quota: int = Field(100, ge=1)
    min_history: int = Field(1, ge=0)
    weight: float = Field(1.0, ge=0)
    fallback_only: bool = False
    index: Literal["exact", "hnsw"] = "exact"
    index_params: dict[str, int] = {}


class FallbackSpec(_Strict):
    chain: list[str] = []
    min_candidates: int = Field(10, ge=0)


class MergeSpec(_Strict):
    method: Literal["zscore", "rrf"] = "zscore"
    k_rrf: float = Field(60.0, gt=0)


class StageSpec(_Strict):
    """A stage by registry name and its parameters."""

    name: str
    params: dict[str, Any] = {}


DEFAULT_FEATURES = ["channels", "lm", "popularity", "recency", "user", "category", "numeric", "sequence"]


class RankSpec(_Strict):
    """ranker: a `RANKERS` name ("lambdarank", "ctr", "none"); params: parameters per ranker
    name (`[rank.params.lambdarank]`, `[rank.params.ctr]`), so switching the ranker is a
    one-word change; features: `FEATURES` names; keep: candidates passed on to re-ranking;
    window: the ranker's training window; high_value: events with at least this value count
    as "high" (ratings) for multi-task labels; batch_users: users per feature / ranker batch."""

    ranker: str = "lambdarank"
    params: dict[str, dict[str, Any]] = {}
    features: list[StageSpec] = Field(default_factory=lambda: [StageSpec(name=n) for n in DEFAULT_FEATURES])
    keep: int = Field(100, ge=1)
    window: WindowSpec = WindowSpec()
    high_value: float = 4.0
    batch_users: int = Field(256, ge=1)


class RerankSpec(_Strict):
    """stages: re-rankers in order; n: length of the final list."""

    stages: list[StageSpec] = Field(default_factory=lambda: [StageSpec(name="seen")])
    n: int = Field(50, ge=1)


class ExplainSpec(_Strict):
    history: int = Field(50, ge=1)
    max_shared: int = Field(3, ge=0)


class PipelineSpec(_Strict):
    """The whole pipeline (the TOML file's content). `encoder` is the text encoder of the LM
    features, the diversity stages and explanations unless a stage names its own."""

    encoder: str = "minilm"
    channels: list[ChannelSpec] = Field(min_length=1)
    fallback: FallbackSpec = FallbackSpec()
    merge: MergeSpec = MergeSpec()
    rank: RankSpec = RankSpec()
    rerank: RerankSpec = RerankSpec()
    explain: ExplainSpec = ExplainSpec()

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, v: str) -> str:
        from lmrec.text.registry import check_encoder_name

        return check_encoder_name(v)

    @model_validator(mode="after")
    def _check_names(self) -> PipelineSpec:
        names = [c.name for c in self.channels]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"channels: name {dup[0]!r} is used twice")
        for name in self.fallback.chain:
            if name not in names:
                raise ValueError(f"fallback.chain: {name!r} is not a channel (channels: {names})")
        from lmrec.component import FEATURES, MODELS, RANKERS, RERANKERS

        # build each stage's parameter model now: a bad key fails at load, naming its stage
        for j, c in enumerate(self.channels):
            cfg = MODELS.config_class(c.model)
            if cfg is not None:
                _check_params(f"channels.{j} ({c.name})", cfg, c.params)
            bad = sorted(set(c.index_params) - {"M", "ef_construction", "ef_search"})
            if bad:
                raise ValueError(f"channels.{j} ({c.name}).index_params: unknown key {bad[0]!r} "
                                 "(known: M, ef_construction, ef_search)")
        for j, f in enumerate(self.rank.features):
            _check_params(f"rank.features.{j}", FEATURES.get(f.name).Config, f.params)
        _check_params("rank.ranker", RANKERS.get(self.rank.ranker).Config, {})
        for name, params in self.rank.params.items():
            _check_params(f"rank.params.{name}", RANKERS.get(name).Config, params)
        for j, st in enumerate(self.rerank.stages):
            _check_params(f"rerank.stages.{j}", RERANKERS.get(st.name).Config, st.params)
        return self


def _check_params(where: str, config: type[BaseModel], params: dict[str, Any]) -> None:
    try:
        config(**params)
    except ValidationError as e:
        raise ValueError(f"{where}: {e}") from None


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) and "name" in v for v in value)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged into a copy of `base`: tables merge key by key, lists of named tables
    (channels, rank features, re-rank stages) merge by `name` (see `_merge_named`), any other
    value replaces."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        old = out.get(k)
        if isinstance(v, dict) and isinstance(old, dict):
            out[k] = _deep_merge(old, v)
        elif _named_list(v) and _named_list(old):
            out[k] = _merge_named(old, v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _merge_named(base: list[dict[str, Any]], over: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries of `over` whose name is in `base` are deep-merged into that entry (which keeps
    its place); `drop = true` removes it; new names are appended in their order, or placed
    `before = "<name>"` / `after = "<name>"` an existing entry."""
    out = [copy.deepcopy(b) for b in base]

    def where(name: str) -> int | None:
        return next((j for j, b in enumerate(out) if b["name"] == name), None)

    for entry in over:
        entry = dict(entry)
        drop = entry.pop("drop", False)
        before, after = entry.pop("before", None), entry.pop("after", None)
        if not isinstance(drop, bool):
            raise ValueError(f"{entry['name']!r}: 'drop' must be true or false")
        at = where(entry["name"])
        if drop:
            if at is None:
                raise ValueError(f"{entry['name']!r}: cannot drop it, the base config has no entry of that name "
                                 f"(it has: {[b['name'] for b in out]})")
            out.pop(at)
            continue
        if at is not None:
            if before is not None or after is not None:
                raise ValueError(f"{entry['name']!r}: 'before' / 'after' place new entries only")
            out[at] = _deep_merge(out[at], entry)
            continue
        if before is not None and after is not None:
            raise ValueError(f"{entry['name']!r}: give 'before' or 'after', not both")
        anchor = before if before is not None else after
        if anchor is None:
            out.append(copy.deepcopy(entry))
            continue
        j = where(anchor)
        if j is None:
            raise ValueError(f"{entry['name']!r}: no entry {anchor!r} to place it next to "
                             f"(there are: {[b['name'] for b in out]})")
        out.insert(j if before is not None else j + 1, copy.deepcopy(entry))
    return out


CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
"""The pipeline configs shipped with lmrec (`configs/` in a checkout is a link to it)."""


def resolve_config_path(path: str | Path) -> Path:
    """`path` as given when it exists (relative to the working directory), else a shipped
    config: "configs/ml-100k.toml", "ml-100k.toml" and "ml-100k" all name
    `lmrec/configs/ml-100k.toml`, so the configs work from any folder and from a wheel."""
    p = Path(path)
    try:
        if p.is_file():
            return p
        if not p.is_absolute():
            name = p.name if p.suffix == ".toml" else f"{p.name}.toml"
            shipped = CONFIG_DIR / name
            if shipped.is_file() and (len(p.parts) == 1 or p.parent.name == "configs"):
                return shipped
    except (OSError, ValueError):  # a name the file system cannot hold (too long, NUL ...)
        pass
    known = ", ".join(sorted(q.stem for q in CONFIG_DIR.glob("*.toml")))
    raise FileNotFoundError(f"pipeline config {str(p)!r} not found in {Path.cwd()} nor among the shipped "
                            f"configs ({known})")


def _read_toml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A TOML config's tables; `extends = "other.toml"` (relative to the file) merges this
    file over the other one (`_deep_merge`: channels and stages by name)."""
    if path.resolve() in seen:
        raise ValueError(f"{path}: 'extends' loops back to itself")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read it: {e.strerror or e}") from None
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ValueError(f"{path}: 'extends' must be a file name")
    parent = path.parent / base
    if not parent.is_file():
        raise FileNotFoundError(f"{path}: extends {base!r}, which is not a file ({parent})")
    try:
        return _deep_merge(_read_toml(parent, (*seen, path.resolve())), data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") if not str(e).startswith(str(path)) else e from None


def load_spec(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
              spec: dict[str, Any] | None = None) -> PipelineSpec:
    """A validated PipelineSpec from a TOML file (or an inline `spec` dict, which wins over
    the file), with `overrides` merged in as `extends` merges files (tables key by key, named
    lists by name). Errors name the file and the field."""
    if path is None and spec is None:
        raise ValueError("give a pipeline config file or an inline spec")
    if spec is None:
        p = resolve_config_path(path)
        data, where = _read_toml(p), str(p)
    else:
        data, where = dict(spec), "spec"
    try:
        data = _deep_merge(data, overrides or {})
        return PipelineSpec.model_validate(data)
    except ValidationError as e:
        raise ValueError(f"{where}: {e}") from None


