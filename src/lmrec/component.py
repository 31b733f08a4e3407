"""The model registry: build any recommender from its name and a parameter dict.

Built-in models are registered as "module:Class" strings and imported on first use, so
importing this module stays cheap (no implicit / scipy.linalg import). Other modules (LM
channels, plugins) add their own with `register_model` or the `register` decorator.

Example:
    >>> from lmrec.component import create, model_names
    >>> model_names()[:5]
    ['popular', 'itemknn', 'ease', 'als', 'bpr']
    >>> create("ease", {"lam": 100.0})
    EASE(lam=100.0)
"""

from __future__ import annotations

import importlib
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from lmrec.recall.base import Recommender

    Factory = Callable[..., Recommender]

T = TypeVar("T")

# name -> a Recommender subclass, a factory callable(**params), or a lazy "module:attr" path
_REGISTRY: dict[str, str | type[Recommender] | Factory] = {
    "popular": "lmrec.recall.popular:MostPopular",
    "itemknn": "lmrec.recall.itemknn:ItemKNN",
    "ease": "lmrec.recall.ease:EASE",
    "als": "lmrec.recall.implicit_mf:ALS",
    "bpr": "lmrec.recall.implicit_mf:BPR",
    "lm-mean": "lmrec.recall.lm_user:LMMeanRecommender",
    "lm-recency": "lmrec.recall.lm_user:LMRecencyRecommender",
    "lm-multi": "lmrec.recall.lm_user:LMMultiRecommender",
    "blend": "lmrec.recall.blend:BlendRecommender",
    "pipeline": "lmrec.pipeline:RecPipeline",
    "two-tower": "lmrec.models.two_tower:TwoTowerRecommender",
}


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
    "blend": _product(weight=[0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0]),
}
"""A small validation grid per model (at most 12 points each), used by `lmrec eval --tune`."""


class UnknownModelError(ValueError):
    """Raised for a model name that is not registered; the message lists the known names."""


def register_model(name: str, model: str | type[Recommender] | Factory, *,
                   grid: list[dict[str, Any]] | None = None, replace: bool = False) -> None:
    """Register a model under `name`.

    `model` is a Recommender subclass, a callable `(**params) -> Recommender`, or a
    "package.module:Attr" string imported on first use. `grid` sets its DEFAULT_GRIDS entry.
    Registering a taken name raises ValueError unless `replace=True`.
    """
    if not name or not isinstance(name, str):
        raise ValueError("a model name must be a non-empty string")
    if name in _REGISTRY and not replace and _REGISTRY[name] is not model:
        raise ValueError(f"model name {name!r} is already registered; pass replace=True to override it")
    if isinstance(model, str) and ":" not in model:
        raise ValueError(f"lazy model path {model!r} must look like 'package.module:Attr'")
    _REGISTRY[name] = model
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
        PopularCopy()
        >>> unregister("popular-copy")
    """

    def deco(obj: T) -> T:
        register_model(name, obj, grid=grid, replace=replace)  # type: ignore[arg-type]
        return obj

    return deco


def unregister(name: str) -> None:
    """Remove a registered model (and its grid); unknown names are ignored."""
    _REGISTRY.pop(name, None)
    DEFAULT_GRIDS.pop(name, None)


def model_names() -> list[str]:
    """Registered model names, in registration order (built-ins first)."""
    return list(_REGISTRY)


def get_model(name: str) -> type[Recommender] | Factory:
    """The class (or factory) registered under `name`, importing it if needed."""
    try:
        entry = _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; known: {', '.join(model_names())}") from None
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)
        _REGISTRY[name] = entry
    return entry


def create(name: str, params: dict[str, Any] | None = None) -> Recommender:
    """A new, unfitted model `name` with `params` (defaults for the rest).

    Unknown names raise UnknownModelError listing the known ones; a bad or unknown parameter
    raises pydantic's ValidationError, which names the field.
    """
    return get_model(name)(**dict(params or {}))


def load_model(path: str | Path) -> Recommender:
    """Load a model saved with `Recommender.save`, whichever registered model it is."""
    cfg = json.loads((Path(path) / "config.json").read_text())
    cls = get_model(cfg["model"])
    loader = getattr(cls, "load", None)
    if loader is None:
        raise TypeError(f"model {cfg['model']!r} is registered as a factory and cannot be loaded")
    return loader(path)


import lmrec.models  # noqa: E402,F401  registers the trained models ("sasrec", ...) lazily; imports no torch
