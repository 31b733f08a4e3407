"""Knowledge-graph ranker features ("kg"): how the candidate connects to the user's history
through shared entities (`lmrec.kg.graph`).

Columns, against the user's `recent` latest items:
- `kg:linked`: 1 when the candidate holds at least one entity shared with another item;
- `kg:mean` / `kg:max`: mean and max over history items of the cosine of weighted slots
  (relation weights uniform: the ranker weighs relations through the next columns);
- `kg:rel:<relation>`: per relation, the share of history items that share an entity of
  that relation with the candidate (same director, same star, same brand ...);
- `kg:n_linked` and per relation `kg:aff:<relation>` (with `affinity`): how many history
  items share an entity with the candidate (a count), and the max over the candidate's
  entities of that relation of the share of the entity's other items the user has (saw 4 of
  the director's 5 other films: 0.8; rarity-normalised where `kg:rel` is not);
- `kg:emb_cos` (with `embedding` set): cosine between the candidate's KG embedding and the
  mean embedding of the history items;
- `kg:entity_lm_cos` (with `entity_text`): the same with the items' LM entity vectors (the
  weighted mean of their entities' text vectors, `KnowledgeGraph.entity_vectors`).
NaN for users without history. The per-user state is the latest items, folded in event by
event, so a request sees the history as of its last event (a session query, see
`lmrec.types.SESSION_KEY`, brings its own); a new item joins the graph from
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

from lmrec.data.dataset import Dataset, Interactions
from lmrec.kg.graph import GraphOptions, KnowledgeGraph, relation_label
from lmrec.rank.features import Feature, PairBatch
from lmrec.types import Event, Query, grow_rows, session_items

__all__ = ["KGFeatures"]


class KGFeatureConfig(GraphOptions):
    """sources / attributes / max_df: the graph (`lmrec.kg.graph.GraphConfig`); recent: how
    many of the user's latest events are compared; embedding: also train a KG embedding
    ("transe" / "distmult") and add `kg:emb_cos`; entity_text: add `kg:entity_lm_cos`, the
    cosine between the candidate's and the history's LM entity vectors (entities encoded by
    name where known, else the mean of their items' text vectors) with `encoder`; affinity:
    add `kg:n_linked` and the per-relation `kg:aff:<relation>` columns."""

    recent: int = Field(100, ge=1)
    embedding: Literal["none", "transe", "distmult"] = "none"
    embedding_dim: int = Field(64, ge=2)
    embedding_epochs: int = Field(200, ge=1)
    entity_text: bool = False
    affinity: bool = False
    encoder: str = "minilm"


def _col(relation: str) -> str:
    return "kg:rel:" + re.sub(r"\W+", "_", relation_label(relation)).strip("_")


class KGFeatures(Feature):
    """See the module docstring."""

    name = "kg"
    Config = KGFeatureConfig
    config: KGFeatureConfig

    def _reset(self, dataset: Dataset) -> None:
        c = self.config
        self.graph = KnowledgeGraph.from_dataset(dataset, c.graph_config())
        self.latest = np.full((dataset.n_users, c.recent), -1, np.int64)  # latest last, -1 = empty
        self.emb: np.ndarray | None = None
        if c.embedding != "none":
            from lmrec.kg.embed import KGEConfig, train_kge

            result = train_kge(self.graph, KGEConfig(method=c.embedding, dim=c.embedding_dim,
                                                     epochs=c.embedding_epochs))
            self.emb = result.item_vectors(normalised=True)
            self.link_metrics = result.metrics
        self._relations = list(self.graph.relations)
        self.ent: np.ndarray | None = None
        if c.entity_text:
            self.ent = self._entity_item_vectors(dataset)

    def _entity_item_vectors(self, dataset: Dataset) -> np.ndarray:
        from lmrec.recall.item2item import dataset_item_vectors, resolve_encoder
        from lmrec.text.base import normalize

        enc = resolve_encoder(self.config.encoder)
        slots = self.graph.entity_vectors(dataset_item_vectors(dataset, self.config.encoder),
                                          lambda texts: normalize(enc.encode_items(texts)))
        v = np.asarray(self.graph.weighted() @ slots, np.float32)
        n = np.linalg.norm(v, axis=1, keepdims=True)
        return np.where(n > 0, v / np.maximum(n, 1e-12), 0.0).astype(np.float32)

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
            if self.ent is not None:
                self.ent = self._entity_item_vectors(dataset)

    def _history(self, query: Query) -> np.ndarray | None:
        """The latest items the columns compare with: a session's own (the `recent` latest,
        as `update` would keep them), else the stored user's; None without either."""
        items = session_items(query)
        if items is not None:
            return np.asarray(items, np.int64)[-self.config.recent:]
        if query.user is None or not 0 <= query.user < len(self.latest):
            return None
        return self.latest[query.user]

    @property
    def columns(self) -> list[str]:
        cols = ["kg:linked", "kg:mean", "kg:max", *[_col(r) for r in self._relations]]
        if self.config.affinity:
            cols += ["kg:n_linked", *[_col(r).replace("kg:rel:", "kg:aff:", 1) for r in self._relations]]
        if self.config.embedding != "none":
            cols.append("kg:emb_cos")
        if self.config.entity_text:
            cols.append("kg:entity_lm_cos")
        return cols

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
            hist = self._history(query)
            if a == b or hist is None:
                continue
            hist = np.unique(hist[(hist >= 0) & (hist < w.shape[0])])
            if not len(hist):
                continue
            cands = items[a:b]
            sims, shares = g.overlap(cands, hist)
            out[a:b, 1] = sims.mean(axis=1)
            out[a:b, 2] = sims.max(axis=1)
            out[a:b, 3:3 + n_rel] = shares[:, :n_rel]
            col = 3 + n_rel
            if self.config.affinity:
                aff, n_linked = g.affinity(cands, hist)
                out[a:b, col] = n_linked
                out[a:b, col + 1:col + 1 + n_rel] = aff[:, :n_rel]
                col += 1 + n_rel
            for table in (self.emb, self.ent):
                if table is None:
                    continue
                out[a:b, col] = _profile_cos(table, hist, cands)
                col += 1
        return out


def _profile_cos(table: np.ndarray, hist: np.ndarray, cands: np.ndarray) -> np.ndarray:
    """Cosine of each candidate's row of `table` with the normalised sum of the history's rows."""
    hv = table[hist[hist < len(table)]].sum(axis=0)
    hv = hv / max(float(np.linalg.norm(hv)), 1e-12)
    cv = np.zeros((len(cands), table.shape[1]), np.float32)
    inside = cands < len(table)
    cv[inside] = table[cands[inside]]
    return cv @ hv
