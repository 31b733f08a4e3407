"""Knowledge-graph ranker features ("kg"): how the candidate connects to the user's history
through shared entities (`lmrec.kg.graph`).

Columns, against the user's `recent` latest items:
- `kg:linked`: 1 when the candidate holds at least one entity shared with another item;
- `kg:mean` / `kg:max`: mean and max over history items of the cosine of weighted slots
  (relation weights uniform: the ranker weighs relations through the next columns);
- `kg:rel:<relation>`: per relation, the share of history items that share an entity of
  that relation with the candidate (same director, same star, same brand ...);
- `kg:emb_cos` (with `embedding` set): cosine between the candidate's KG embedding and the
  mean embedding of the history items.
NaN for users without history. The per-user state is the latest items, folded in event by
event, so a request sees the history as of its last event; a new item joins the graph from
its metadata at once (`add_items`).

Example:
    >>> import numpy as np
    >>> from lmrec.data.dataset import Dataset, IdMap, Interactions, ItemTable
    >>> from lmrec.types import Candidates, Query
    >>> t = ItemTable(title=list("abcd"), categories=[["x"], ["x"], ["y"], ["y"]])
    >>> ds = Dataset("d", IdMap("u"), IdMap("abcd"), Interactions(np.array([0]), np.array([0]), np.array([1])),
    ...              item_table=t)
    >>> f = KGFeatures(max_df=1.0).fit(ds.interactions, ds)
    >>> f.columns
    ['kg:linked', 'kg:mean', 'kg:max', 'kg:rel:category']
    >>> f.values(Query(user=0), Candidates(np.array([1, 2]), np.zeros(2)))[:, 3].tolist()
    [1.0, 0.0]
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
from pydantic import Field

from lmrec.component import ComponentConfig
from lmrec.data.dataset import Dataset, Interactions
from lmrec.kg.graph import GraphConfig, KnowledgeGraph, relation_label, shared_counts_by_relation
from lmrec.rank.features import Feature, PairBatch
from lmrec.types import Event, grow_rows

__all__ = ["KGFeatures"]


class KGFeatureConfig(ComponentConfig):
    """sources / attributes / max_df: the graph (`lmrec.kg.graph.GraphConfig`); recent: how
    many of the user's latest events are compared; embedding: also train a KG embedding
    ("transe" / "distmult") and add `kg:emb_cos`."""

    sources: list[Literal["categories", "attributes", "triples"]] = ["categories", "attributes", "triples"]
    attributes: list[str] | Literal["auto"] = "auto"
    max_df: float = Field(0.3, gt=0, le=1)
    recent: int = Field(100, ge=1)
    embedding: Literal["none", "transe", "distmult"] = "none"
    embedding_dim: int = Field(64, ge=2)
    embedding_epochs: int = Field(200, ge=1)


def _col(relation: str) -> str:
    return "kg:rel:" + re.sub(r"\W+", "_", relation_label(relation)).strip("_")


class KGFeatures(Feature):
    """See the module docstring."""

    name = "kg"
    Config = KGFeatureConfig
    config: KGFeatureConfig

    def _reset(self, dataset: Dataset) -> None:
        c = self.config
        self.graph = KnowledgeGraph.from_dataset(dataset, GraphConfig(sources=c.sources, attributes=c.attributes,
                                                                      max_df=c.max_df))
        self.latest = np.full((dataset.n_users, c.recent), -1, np.int64)  # latest last, -1 = empty
        self.emb: np.ndarray | None = None
        if c.embedding != "none":
            from lmrec.kg.embed import KGEConfig, train_kge

            result = train_kge(self.graph, KGEConfig(method=c.embedding, dim=c.embedding_dim,
                                                     epochs=c.embedding_epochs))
            self.emb = result.item_vectors(normalised=True)
            self.link_metrics = result.metrics
        self._relations = list(self.graph.relations)

    def _fit_history(self, history: Interactions) -> None:
        s = history.sorted()
        n = len(self.latest)
        indptr = np.searchsorted(s.user, np.arange(n + 1))
        after = indptr[s.user + 1] - 1 - np.arange(len(s))  # later events of the same user
        r = self.latest.shape[1]
        keep = after < r
        self.latest[s.user[keep], r - 1 - after[keep]] = s.item[keep]

    def _update_one(self, event: Event) -> None:
        if event.user >= len(self.latest):
            self.latest = grow_rows(self.latest, event.user + 1, -1)
        row = self.latest[event.user]
        row[:-1] = row[1:]
        row[-1] = event.item

    def add_items(self, items: np.ndarray, dataset: Dataset) -> None:
        """New (or changed) items get their metadata entities now."""
        if self.fitted:
            self.graph.add_items(items, dataset)
            if self.emb is not None and len(self.emb) < dataset.n_items:
                self.emb = np.r_[self.emb, np.zeros((dataset.n_items - len(self.emb), self.emb.shape[1]), np.float32)]

    @property
    def columns(self) -> list[str]:
        cols = ["kg:linked", "kg:mean", "kg:max", *[_col(r) for r in self._relations]]
        return cols + ["kg:emb_cos"] if self.config.embedding != "none" else cols

    def compute(self, batch: PairBatch) -> np.ndarray:
        self._check_fitted()
        g = self.graph
        n_rel = len(self._relations)
        out = np.full((len(batch), len(self.columns)), np.nan, np.float32)
        if not len(batch):
            return out
        w = g.weighted()
        items = batch.items
        inside = items < w.shape[0]
        linked = np.zeros(len(items), np.float32)
        linked[inside] = (np.diff(w.indptr)[items[inside]] > 0).astype(np.float32)
        out[:, 0] = linked
        for q, query in enumerate(batch.queries):
            a, b = batch.offsets[q], batch.offsets[q + 1]
            if a == b or query.user is None or not 0 <= query.user < len(self.latest):
                continue
            hist = self.latest[query.user]
            hist = np.unique(hist[(hist >= 0) & (hist < w.shape[0])])
            if not len(hist):
                continue
            cands = items[a:b]
            ok = cands < w.shape[0]
            sims = np.zeros((b - a, len(hist)), np.float32)
            if ok.any():
                sims[ok] = (w[cands[ok]] @ w[hist].T).toarray()
            out[a:b, 1] = sims.mean(axis=1)
            out[a:b, 2] = sims.max(axis=1)
            shares = shared_counts_by_relation(g, cands, hist)
            out[a:b, 3:3 + n_rel] = shares[:, :n_rel]
            if self.emb is not None:
                e = self.emb
                hv = e[hist[hist < len(e)]].sum(axis=0)
                hv /= max(float(np.linalg.norm(hv)), 1e-12)
                cv = np.zeros((b - a, e.shape[1]), np.float32)
                cv[cands < len(e)] = e[cands[cands < len(e)]]
                out[a:b, 3 + n_rel] = cv @ hv
        return out
