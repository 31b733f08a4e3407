"""Saving a fitted `RecPipeline` as a folder and loading it back (no pickle).

Layout: `config.json` (model name, parameters, the resolved spec, config hash),
`catalog.json` (id maps and item table, so the pipeline loads without the data files),
`history.npz` (every event the pipeline has seen: fit + updates), `channels/<name>/` (each
recall model's own saved folder), `ranker/` and `rerank.npz` (feedback of exploration
stages). Features are rebuilt from the history on load: their vectorised fit equals replaying
the events, so the loaded state is the one that was saved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd

from lmrec.data.dataset import Dataset, IdMap, Interactions, ItemTable
from lmrec.pipeline.recall import RecallStage
from lmrec.rank.base import RankData, Ranker
from lmrec.rank.history import UserHistory
from lmrec.rerank.base import StageContext
from lmrec.rerank.explain import Explainer
from lmrec.types import config_hash

if TYPE_CHECKING:
    from lmrec.pipeline.core import RecPipeline

P = TypeVar("P", bound="RecPipeline")

__all__ = ["save_pipeline", "load_pipeline", "catalog_dict", "catalog_from_dict"]


def _plain(v: Any) -> Any:
    """A JSON-able copy of an attribute value."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def catalog_dict(ds: Dataset) -> dict[str, Any]:
    """Id maps and item table of `ds` as plain JSON (no interactions)."""
    t = ds.item_table
    table = None if t is None else {
        "title": t.title, "categories": t.categories, "text": t.text,
        "attributes": {k: [_plain(x) for x in v] for k, v in t.attributes.items()},
        "created_at": np.asarray(t.created_at).tolist(), "available": np.asarray(t.available).tolist()}
    return {"name": ds.name, "users": ds.users.ids, "items": ds.items.ids, "has_timestamps": ds.has_timestamps,
            "item_table": table, "template": ds.template, "user_attributes": {
                k: [_plain(x) for x in v] for k, v in ds.user_attributes.items()},
            "triples": None if ds.triples is None else {c: [_plain(x) for x in ds.triples[c]] for c in ds.triples}}


def catalog_from_dict(d: dict[str, Any], interactions: Interactions) -> Dataset:
    t = d["item_table"]
    table = None if t is None else ItemTable(
        title=t["title"], categories=t["categories"], text=t["text"], attributes=t["attributes"],
        created_at=np.asarray(t["created_at"], np.int64), available=np.asarray(t["available"], bool))
    triples = d.get("triples")
    return Dataset(d["name"], IdMap(d["users"], sort=False), IdMap(d["items"], sort=False), interactions,
                   item_table=table, has_timestamps=d["has_timestamps"], template=d.get("template"),
                   user_attributes=d.get("user_attributes") or {},
                   triples=None if triples is None else pd.DataFrame(triples))


def _all_events(h: UserHistory) -> Interactions:
    users, items, ts, vals = [], [], [], []
    for u in range(h.n_users):
        i, t, v = h.events(u)
        users.append(np.full(len(i), u))
        items.append(i)
        ts.append(t)
        vals.append(v)
    cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))
    return Interactions(cat(users, np.int64), cat(items, np.int64), cat(ts, np.int64), value=cat(vals, np.float32))


def save_pipeline(pipe: RecPipeline, path: Path) -> Path:
    """Write a fitted pipeline to the folder `path` (see the module docstring)."""
    pipe._check_ready()
    path.mkdir(parents=True, exist_ok=True)
    cfg = {"model": pipe.name, "params": pipe.params, "spec": pipe.spec.model_dump(mode="json"),
           "n_users": pipe.n_users, "n_items": pipe.n_items, "fit_info": pipe.fit_info}
    cfg["config_hash"] = config_hash({k: v for k, v in cfg.items() if k != "fit_info"})
    (path / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True, default=str))
    (path / "catalog.json").write_text(json.dumps(catalog_dict(pipe.dataset)))
    ev = _all_events(pipe.history)
    np.savez(path / "history.npz", user=ev.user, item=ev.item, timestamp=ev.timestamp, value=ev.value)
    for name, ch in pipe.recall.channels.items():
        ch.model.save(path / "channels" / name)
    pipe.ranker.save(path / "ranker")
    states = {f"{j}__{k}": v for j, r in enumerate(pipe.rerankers) for k, v in r.state().items()}
    np.savez(path / "rerank.npz", **states)
    return path


def load_pipeline(cls: type[P], path: Path) -> P:
    """Load a pipeline written by `save_pipeline`."""
    from lmrec.component import load_model

    cfg = json.loads((path / "config.json").read_text())
    if cfg.get("model") != cls.name:
        raise ValueError(f"{path}: holds a {cfg.get('model')!r} model, not {cls.name!r}")
    pipe = cls(**cfg["params"])
    with np.load(path / "history.npz", allow_pickle=False) as z:
        events = Interactions(z["user"], z["item"], z["timestamp"], value=z["value"])
    ds = catalog_from_dict(json.loads((path / "catalog.json").read_text()), events)
    pipe.dataset, pipe.n_users, pipe.n_items = ds, cfg["n_users"], cfg["n_items"]
    pipe.fit_info = cfg.get("fit_info", {})
    pipe.history = UserHistory().fit(events, pipe.n_users)
    pipe.matrix = pipe.history.seen_matrix(pipe.n_items)
    pipe.ctx = StageContext(ds, pipe.history, encoder=pipe.spec.encoder)
    spec = pipe.spec
    channels = pipe._new_channels({c.name: load_model(path / "channels" / c.name) for c in spec.channels})
    for ch in channels:
        ch.prepare()
    pipe.recall = RecallStage(channels, chain=spec.fallback.chain, min_candidates=spec.fallback.min_candidates,
                              method=spec.merge.method, k_rrf=spec.merge.k_rrf)
    pipe.features = pipe._new_features().fit(events, ds)
    pipe.ranker = Ranker.load(path / "ranker")
    if pipe.ranker.columns is None:  # a pass-through ranker saved before any fit
        pipe.ranker.fit(RankData(np.zeros((0, len(pipe.features.columns))), pipe.features.columns,
                                 np.zeros(0, np.int64)))
    pipe.rerankers = pipe._new_rerankers()
    with np.load(path / "rerank.npz", allow_pickle=False) as z:
        saved = dict(z)
    for j, r in enumerate(pipe.rerankers):
        r.bind(pipe.ctx)
        own = {k.split("__", 1)[1]: v for k, v in saved.items() if k.startswith(f"{j}__")}
        if own:
            r.set_state(own)
    pipe.explainer = Explainer(pipe.ctx, history=spec.explain.history, max_shared=spec.explain.max_shared,
                               graph=pipe.knowledge_graph())
    return pipe
