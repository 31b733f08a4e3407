"""The one component base and the one registry.

Every swappable part of lmrec (a recall model, a ranker feature, a ranker, a re-ranker) is a
`Component`: it has a registry `name`, a typed `Config` (pydantic, `extra="forbid"`, so a
misspelt key fails naming it) and the two online protocols the pipeline drives:

- `update(events)`: fold new behaviour events into the component's *global* online state
  (popularity counts, transitions, bandit arms). Per-user state is never kept here: stages
  read the user's history from the request (`lmrec.types.HistoryBatch`), so an event is
  visible at once and scoring a given history changes nobody else's lists.
- `add_items(items, dataset)`: items at these indices are new or changed in `dataset` (the
  catalog grew or an item's text changed); text-aware components embed them at once.

Components are built by name from a `Registry`: `MODELS` (recall models, `lmrec models`),
`FEATURES`, `RANKERS` and `RERANKERS`. Built-ins are registered as lazy "module:Attr" strings,
so importing this module imports none of them (no torch, no implicit, no import cycles).

Example:
    >>> from lmrec.component import create, model_names
    >>> model_names()[:5]
    ['popular', 'itemknn', 'ease', 'als', 'bpr']
    >>> create("ease", {"lam": 100.0})
    EASE(lam=100.0)
    >>> reg = Registry("greeter")
    >>> @reg.register("hello")
    ... class Hello:
    ...     def __init__(self, name: str = "world") -> None:
    ...         self.name = name
    >>> reg.create("hello", {"name": "lmrec"}).name
    'lmrec'
"""

from __future__ import annotations

import importlib
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from lmrec.types import Event

if TYPE_CHECKING:
    from lmrec.data.dataset import Dataset
    from lmrec.recall.base import Recommender

__all__ = ["ComponentConfig", "Component", "Registry", "UnknownComponentError", "UnknownModelError",
           "UnknownStageError", "MODELS", "FEATURES", "RANKERS", "RERANKERS", "DEFAULT_GRIDS", "create",
           "get_model", "register_model", "register", "unregister", "model_names", "load_model"]

T = TypeVar("T")


class ComponentConfig(BaseModel):
    """Base of every component's parameters: typed, validated, frozen, JSON round-trippable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Component:
    """Base of every pipeline component (see the module docstring).

    Subclasses set `name` and `Config`; `config` holds the validated parameters.
    """

    name: ClassVar[str] = "component"
    Config: ClassVar[type[ComponentConfig]] = ComponentConfig

    def __init__(self, config: ComponentConfig | None = None, **params: Any) -> None:
        if config is not None and params:
            raise TypeError("give either a config object or keyword parameters, not both")
        self.config = config if config is not None else self.Config(**params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    @property
    def params(self) -> dict[str, Any]:
        return self.config.model_dump(by_alias=True)

    def update(self, events: Sequence[Event]) -> None:  # noqa: B027 - most components keep no online state
        """Fold new events into the global online state (no-op for stateless components)."""

    def add_items(self, items: np.ndarray, dataset: Dataset) -> None:  # noqa: B027
        """Items at indices `items` are new or changed in `dataset` (no-op by default)."""

    def forget(self, events: Sequence[Event]) -> bool:
        """Take erased events (one user's, `RecPipeline.forget_user`) back out of the global
        online state; True when this component did (the default keeps no such state or cannot
        un-count, and says so with False)."""
        return False


class UnknownComponentError(ValueError):
    """A name that is not registered; the message lists the known names."""


# the names the stage and model registries raised before they became one class
UnknownStageError = UnknownComponentError
UnknownModelError = UnknownComponentError


class Registry(Generic[T]):
    """Names -> factories: a class or callable taking the parameters as keywords, or a lazy
    "package.module:Attr" string imported on first use."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, str | Callable[..., T]] = {}

    def register(self, name: str, factory: str | Callable[..., T] | None = None, *,
                 replace: bool = False) -> Any:
        """Register `factory` under `name`; without `factory`, a decorator."""
        if factory is None:
            def deco(obj: Callable[..., T]) -> Callable[..., T]:
                self.register(name, obj, replace=replace)
                return obj
            return deco
        if not name or not isinstance(name, str):
            raise ValueError(f"a {self.kind} name must be a non-empty string")
        if name in self._entries and not replace and self._entries[name] is not factory:
            raise ValueError(f"{self.kind} {name!r} is already registered; pass replace=True to override it")
        if isinstance(factory, str) and ":" not in factory:
            raise ValueError(f"lazy {self.kind} path {factory!r} must look like 'package.module:Attr'")
        self._entries[name] = factory
        return factory

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Callable[..., T]:
        try:
            entry = self._entries[name]
        except KeyError:
            raise UnknownComponentError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module), attr)
            self._entries[name] = entry
        return entry

    def create(self, name: str, params: Mapping[str, Any] | None = None) -> T:
        """A new component `name` built with `params` (pydantic names any bad field)."""
        return self.get(name)(**dict(params or {}))

    def config_class(self, name: str) -> type[ComponentConfig] | None:
        """The `Config` of a registered class (None for plain factories)."""
        entry = self.get(name)
        cfg = getattr(entry, "Config", None)
        return cfg if isinstance(entry, type) and isinstance(cfg, type) and issubclass(cfg, BaseModel) else None


# ---- the registries -------------------------------------------------------------------------------
MODELS: Registry[Recommender] = Registry("model")
for _name, _path in {
    "popular": "lmrec.recall.popular:MostPopular",
    "itemknn": "lmrec.recall.itemknn:ItemKNN",
    "ease": "lmrec.recall.ease:EASE",
    "als": "lmrec.recall.implicit_mf:ALS",
    "bpr": "lmrec.recall.implicit_mf:BPR",
    "lm-mean": "lmrec.recall.lm_user:LMMeanRecommender",
    "lm-recency": "lmrec.recall.lm_user:LMRecencyRecommender",
    "lm-multi": "lmrec.recall.lm_user:LMMultiRecommender",
    "transitions": "lmrec.recall.transitions:ItemTransitionsChannel",
    "kg": "lmrec.recall.kg:KGChannel",
    "kg-embed": "lmrec.recall.kg:KGEmbeddingChannel",
    "ease-kg": "lmrec.recall.kg:EASEKG",
    "blend": "lmrec.recall.blend:BlendRecommender",
    "pipeline": "lmrec.pipeline:RecPipeline",
    "two-tower": "lmrec.models.two_tower:TwoTowerRecommender",
    "fed-two-tower": "lmrec.privacy.federated:FederatedTwoTower",
    "sasrec": "lmrec.models.sasrec:SASRec",
    "sasrec-text": "lmrec.models.text_seq:SASRecText",
    "multvae": "lmrec.models.multvae:MultVAE",
}.items():
    MODELS.register(_name, _path)

FEATURES: Registry[Any] = Registry("feature")
for _name, _path in {
    "channels": "lmrec.rank.features:ChannelFeatures",
    "user": "lmrec.rank.features:UserActivity",
    "popularity": "lmrec.rank.item_features:ItemPopularity",
    "recency": "lmrec.rank.item_features:ItemRecency",
    "numeric": "lmrec.rank.item_features:NumericAttributes",
    "lm": "lmrec.rank.content_features:LMSimilarity",
    "category": "lmrec.rank.content_features:CategoryAffinity",
    "sequence": "lmrec.rank.sequence_features:ItemTransitions",
    "demographic": "lmrec.rank.user_features:DemographicLift",
    "kg": "lmrec.rank.kg_features:KGFeatures",
}.items():
    FEATURES.register(_name, _path)

RANKERS: Registry[Any] = Registry("ranker")
RANKERS.register("none", "lmrec.rank.ltr:PassthroughRanker")
RANKERS.register("lambdarank", "lmrec.rank.ltr:LambdaRankRanker")
RANKERS.register("ctr", "lmrec.rank.ctr:CTRRanker")

RERANKERS: Registry[Any] = Registry("reranker")
for _name, _path in {"seen": "filters:SeenFilter", "available": "filters:AvailabilityFilter",
                     "blocked": "filters:BlockFilter", "mmr": "diversity:MMR",
                     "category-run": "diversity:CategoryRunLimit", "sim-threshold": "diversity:SimilarityThreshold",
                     "thompson": "exploration:ThompsonSampling", "ucb": "exploration:UCB",
                     "gumbel": "exploration:GumbelTopK", "longtail": "longtail:LongTailReranker"}.items():
    RERANKERS.register(_name, f"lmrec.rerank.{_path}")


# ---- the model registry's function API (what `lmrec eval --model` and plugins use) ---------------
def _product(**axes: list[Any]) -> list[dict[str, Any]]:
    keys = list(axes)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*axes.values())]


DEFAULT_GRIDS: dict[str, list[dict[str, Any]]] = {
    "popular": [{}],
    "itemknn": _product(k=[20, 50, 100, 200], shrink=[0.0, 10.0]),
    "ease": _product(lam=[50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0]),
    "als": _product(factors=[32, 64, 128], regularization=[0.01, 1.0], alpha=[1.0, 10.0]),
    "bpr": _product(factors=[32, 64, 128], learning_rate=[0.01, 0.05], regularization=[0.001, 0.01]),
    "lm-mean": _product(rating_weight=[False, True]),
    "lm-recency": _product(half_life=[2.0, 5.0, 10.0, 20.0], rating_weight=[False, True]),
    "lm-multi": _product(n_interests=[2, 3, 5]),
    "transitions": _product(window=[2, 5, 10], recent=[3, 10]),
    "kg": _product(max_df=[0.1, 0.3], relation_weights=["fit", "uniform"], recent=[20, 200]),
    "kg-embed": _product(method=["transe", "distmult"], dim=[32, 64]),
    "ease-kg": _product(lam=[250.0, 1000.0], alpha=[5.0, 15.0, 50.0], weighting=["binary", "idf"]),
    "blend": _product(weight=[0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0]),
    "sasrec": _product(dropout=[0.2, 0.35, 0.5], n_heads=[1, 2]),
    "sasrec-text": _product(id_fusion=["none", "gate"], dropout=[0.2, 0.5]),
    "multvae": _product(beta=[0.2, 0.5], dropout=[0.3, 0.5]),
    "two-tower": [{"loss": "softmax", "pooling": "mean"}, {"loss": "softmax", "pooling": "attention"},
                  {"loss": "bce", "pooling": "mean"}, {"loss": "softmax", "pooling": "mean", "item_id": True}],
}
"""A small validation grid per model (at most 12 points each), used by `lmrec eval --tune`."""


def register_model(name: str, model: str | type[Recommender] | Callable[..., Recommender], *,
                   grid: list[dict[str, Any]] | None = None, replace: bool = False) -> None:
    """Register a recall model under `name` (a Recommender subclass, a factory
    `(**params) -> Recommender`, or a lazy "package.module:Attr" string); `grid` sets its
    DEFAULT_GRIDS entry. A taken name raises ValueError unless `replace=True`."""
    MODELS.register(name, model, replace=replace)
    if grid is not None:
        DEFAULT_GRIDS[name] = [dict(p) for p in grid]


def register(name: str, *, grid: list[dict[str, Any]] | None = None,
             replace: bool = False) -> Callable[[T], T]:
    """Class (or factory) decorator form of `register_model`.

    Example:
        >>> from lmrec.recall.popular import MostPopular
        >>> @register("popular-copy", replace=True)
        ... class PopularCopy(MostPopular):
        ...     name = "popular-copy"
        >>> create("popular-copy")
        PopularCopy(half_life_days=0.0)
        >>> unregister("popular-copy")
    """

    def deco(obj: T) -> T:
        register_model(name, obj, grid=grid, replace=replace)  # type: ignore[arg-type]
        return obj

    return deco


def unregister(name: str) -> None:
    """Remove a registered model (and its grid); unknown names are ignored."""
    MODELS.unregister(name)
    DEFAULT_GRIDS.pop(name, None)


def model_names() -> list[str]:
    """Registered model names, in registration order (built-ins first)."""
    return MODELS.names()


def get_model(name: str) -> Callable[..., Recommender]:
    """The class (or factory) registered under `name`, importing it if needed."""
    return MODELS.get(name)


def create(name: str, params: Mapping[str, Any] | None = None) -> Recommender:
    """A new, unfitted model `name` with `params` (defaults for the rest). Unknown names raise
    UnknownModelError listing the known ones; a bad parameter raises pydantic's
    ValidationError, which names the field."""
    return MODELS.create(name, params)


def load_model(path: str | Path) -> Recommender:
    """Load a model saved with `Recommender.save`, whichever registered model it is."""
    cfg = json.loads((Path(path) / "config.json").read_text())
    cls = get_model(cfg["model"])
    loader = getattr(cls, "load", None)
    if loader is None:
        raise TypeError(f"model {cfg['model']!r} is registered as a factory and cannot be loaded")
    return loader(path)
