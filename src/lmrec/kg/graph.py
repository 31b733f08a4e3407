"""A typed knowledge graph over the catalog: items, attribute entities and their relations.

Nodes are the catalog's items and attribute entities (a genre, a brand, a director, a
decade, a category). Every item -> entity edge is a *slot* `(relation, entity)`: two items
that share a slot are two hops apart (item -> entity <- item), which is what the KG channel,
the KG features and the explanation paths walk. Entity -> entity edges (a sub-category of a
category, or any imported triple between entities) are kept for the KG embeddings.

Sources (`GraphConfig.sources`):
- "categories": each item category (a "A > B > C" path gives every prefix, linked by
  "subcategory_of" edges);
- "attributes": string item attributes with repeated values (e.g. brand), and a "year"
  attribute as its decade;
- "triples": the data set's imported triples (`Dataset.triples`, see `lmrec.kg.triples`).

Slot weights: `relation_weight[r] * idf(slot)` with `idf = log(1 + n_items / df)`; slots
held by more than `max_df` of the catalog carry nothing and are dropped. Relation weights are
1 until `fit_relation_weights` sets them from behaviour (how much more often items sharing a
slot of that relation are consumed by the same users than items in general).

A new item joins the graph at once: `add_items` reads its categories and attributes from the
(grown) item table; an attribute value never seen before becomes a new entity.

Example:
    >>> import numpy as np
    >>> from lmrec.data.dataset import Dataset, IdMap, Interactions, ItemTable
    >>> table = ItemTable(title=["Heat", "Collateral", "Up"], categories=[["crime"], ["crime"], ["family"]])
    >>> ds = Dataset("d", IdMap("u"), IdMap("abc"), Interactions.empty(), item_table=table)
    >>> g = KnowledgeGraph.from_dataset(ds)
    >>> g.shared(0, 1)
    [('category', 'category:crime')]
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, Field

from lmrec.component import ComponentConfig
from lmrec.data.dataset import Dataset, IdMap

__all__ = ["GraphConfig", "GraphOptions", "KnowledgeGraph", "SEP", "relation_label"]

SEP = "\x1f"  # between a slot's relation and entity
_PATH = re.compile(r"\s*>\s*")


def relation_label(relation: str) -> str:
    """A readable relation name: the last dotted part, underscores as spaces
    ("film.film.director" -> "director")."""
    return relation.rsplit(".", 1)[-1].replace("_", " ")


class GraphConfig(BaseModel):
    """Which sources build the graph, and which slots count (see the module docstring)."""

    model_config = {"extra": "forbid"}

    sources: list[Literal["categories", "attributes", "triples"]] = ["categories", "attributes", "triples"]
    attributes: list[str] | Literal["auto"] = "auto"
    max_df: float = Field(0.3, gt=0, le=1)


class GraphOptions(ComponentConfig):
    """The graph options of every KG component's config (see `GraphConfig`)."""

    sources: list[Literal["categories", "attributes", "triples"]] = ["categories", "attributes", "triples"]
    attributes: list[str] | Literal["auto"] = "auto"
    max_df: float = Field(0.3, gt=0, le=1)

    def graph_config(self) -> GraphConfig:
        return GraphConfig(sources=self.sources, attributes=self.attributes, max_df=self.max_df)


def _norm(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    s = " ".join(str(value).split())
    return s or None


class KnowledgeGraph:
    """See the module docstring. Build with `from_dataset`; `item_slots` is the binary
    (n_items, n_slots) CSR incidence, `weights` the per-slot weights."""

    def __init__(self, config: GraphConfig | None = None) -> None:
        self.config = config or GraphConfig()
        self.relations: list[str] = []
        self.slots = IdMap(sort=False)  # "relation\x1fentity"
        self.slot_relation = np.zeros(0, np.int64)
        self.entities = IdMap(sort=False)
        self.entity_names: dict[str, str] = {}
        self.item_slots = sp.csr_matrix((0, 0), dtype=np.float32)
        self.edges = np.zeros((0, 3), np.int64)  # (head entity, relation, tail entity)
        self.relation_weight = np.zeros(0, np.float64)
        self.attrs: list[str] = []
        self._weighted: sp.csr_matrix | None = None
        self._weighted_csc: sp.csc_matrix | None = None
        self._sw: np.ndarray | None = None

    # --- building --------------------------------------------------------------------------
    @classmethod
    def from_dataset(cls, dataset: Dataset, config: GraphConfig | None = None) -> KnowledgeGraph:
        g = cls(config)
        g.attrs = g._pick_attributes(dataset)
        rows: list[int] = []
        cols: list[int] = []
        for i in range(dataset.n_items):
            for slot in g._metadata_slots(dataset, i):
                rows.append(i)
                cols.append(g._slot(*slot))
        edges: list[tuple[int, int, int]] = []
        if "categories" in g.config.sources and dataset.item_table is not None:
            for cats in dataset.item_table.categories:
                for c in cats:
                    parts = [p for p in _PATH.split(c) if p]
                    for k in range(1, len(parts)):
                        child, parent = " > ".join(parts[:k + 1]), " > ".join(parts[:k])
                        edges.append((g.entities.add(f"category:{child}"), g._relation("subcategory_of"),
                                      g.entities.add(f"category:{parent}")))
        triples = getattr(dataset, "triples", None)
        if "triples" in g.config.sources and triples is not None and len(triples):
            for h, r, t, hi, ti in zip(triples["head"], triples["relation"], triples["tail"],
                                       triples["head_item"], triples["tail_item"], strict=True):
                if hi:
                    i = dataset.items.get(h)
                    if i < 0:
                        continue
                    tail = f"item:{t}" if ti else str(t)
                    rows.append(i)
                    cols.append(g._slot(r, tail))
                    if ti and (j := dataset.items.get(t)) >= 0:  # item -> item: both hold the slot
                        rows.append(j)
                        cols.append(g._slot(r, tail))
                elif ti:
                    j = dataset.items.get(t)
                    if j >= 0:
                        rows.append(j)
                        cols.append(g._slot(r, str(h)))
                else:
                    edges.append((g.entities.add(str(h)), g._relation(r), g.entities.add(str(t))))
        g.item_slots = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                                     shape=(dataset.n_items, len(g.slots)))
        g.item_slots.sum_duplicates()
        g.item_slots.data[:] = 1.0
        g.edges = np.array(sorted(set(edges)), np.int64).reshape(-1, 3)
        g.relation_weight = np.ones(len(g.relations))
        return g

    def _pick_attributes(self, dataset: Dataset) -> list[str]:
        table = dataset.item_table
        if "attributes" not in self.config.sources or table is None:
            return []
        if self.config.attributes != "auto":
            missing = [a for a in self.config.attributes if a not in table.attributes]
            if missing:
                raise ValueError(f"kg attributes {missing} are not item attributes; known: {sorted(table.attributes)}")
            return list(self.config.attributes)
        out = []
        n = max(dataset.n_items, 1)
        for name, values in table.attributes.items():
            if name == "year":
                out.append(name)
                continue
            vals = [_norm(v) for v in values if isinstance(v, str)]
            vals = [v for v in vals if v]
            if len(vals) >= 2 and len(set(vals)) <= max(0.5 * n, 1) and len(set(vals)) < len(vals):
                out.append(name)
        return out

    def _metadata_slots(self, dataset: Dataset, i: int) -> list[tuple[str, str]]:
        table = dataset.item_table
        if table is None or i >= len(table):
            return []
        out: list[tuple[str, str]] = []
        if "categories" in self.config.sources:
            for c in table.categories[i]:
                parts = [p for p in _PATH.split(str(c)) if p]
                for k in range(1, len(parts) + 1):
                    out.append(("category", f"category:{' > '.join(parts[:k])}"))
        for name in self.attrs:
            v = table.attributes.get(name, [None] * (i + 1))[i]
            if name == "year":
                try:
                    year = int(float(v))
                except (TypeError, ValueError):
                    continue
                out.append(("decade", f"decade:{year // 10 * 10}s"))
            else:
                s = _norm(v) if isinstance(v, str) else None
                if s:
                    out.append((name, f"{name}:{s.casefold()}"))
                    self.entity_names.setdefault(f"{name}:{s.casefold()}", s)
        return list(dict.fromkeys(out))

    def _relation(self, name: str) -> int:
        name = str(name)
        if name not in self.relations:
            self.relations.append(name)
            self.relation_weight = np.r_[self.relation_weight, 1.0] if len(self.relation_weight) else np.ones(1)
        return self.relations.index(name)

    def _slot(self, relation: str, entity: str) -> int:
        key = f"{relation}{SEP}{entity}"
        n = len(self.slots)
        s = self.slots.add(key)
        if s == n:
            self.slot_relation = np.r_[self.slot_relation, self._relation(relation)]
            self.entities.add(entity)
            if entity.startswith(("category:", "decade:")):
                self.entity_names.setdefault(entity, entity.split(":", 1)[1])
        return s

    def add_items(self, items: np.ndarray, dataset: Dataset) -> None:
        """Give new (or changed) items their metadata slots now (imported triples of
        existing items are kept; a changed item's metadata slots are replaced)."""
        n_old_slots = len(self.slots)
        lil = self.item_slots.tolil()
        if dataset.n_items > lil.shape[0]:
            lil.resize((dataset.n_items, lil.shape[1]))
        meta_rel = {self.relations.index(r) for r in ("category", "decade", *self.attrs) if r in self.relations}
        new_rows: dict[int, list[int]] = {}
        for i in np.asarray(items, np.int64).tolist():
            keep = [s for s in lil.rows[i] if int(self.slot_relation[s]) not in meta_rel]
            new_rows[i] = sorted(set(keep + [self._slot(*slot) for slot in self._metadata_slots(dataset, i)]))
        lil.resize((lil.shape[0], len(self.slots)))
        for i, cols in new_rows.items():
            lil.rows[i], lil.data[i] = list(cols), [1.0] * len(cols)
        self.item_slots = lil.tocsr().astype(np.float32)
        if len(self.slots) > n_old_slots and len(self.relation_weight) < len(self.relations):
            self.relation_weight = np.r_[self.relation_weight, np.ones(len(self.relations) - len(self.relation_weight))]
        self._weighted = self._weighted_csc = self._sw = None

    # --- weights ---------------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        return self.item_slots.shape[0]

    def df(self) -> np.ndarray:
        return np.bincount(self.item_slots.indices, minlength=len(self.slots)).astype(np.float64)

    def slot_weights(self) -> np.ndarray:
        """relation weight x idf per slot; 0 for slots over `max_df` or held by one item."""
        if self._sw is not None:
            return self._sw
        df = self.df()
        n = max(self.n_items, 1)
        w = np.log1p(n / np.maximum(df, 1.0)) * self.relation_weight[self.slot_relation]
        w[(df > self.config.max_df * n) | (df < 2)] = 0.0
        self._sw = w
        return w

    def live_slots(self) -> sp.csr_matrix:
        """The binary incidence restricted to slots with a positive weight."""
        if getattr(self, "_live", None) is None or self._live_of is not self._sw:
            w = self.slot_weights()
            m = (self.item_slots @ sp.diags((w > 0).astype(np.float32))).tocsr()
            m.eliminate_zeros()
            self._live, self._live_of = m, self._sw
        return self._live

    def weighted(self) -> sp.csr_matrix:
        """Item rows of slot weights, L2-normalised: `weighted() @ weighted().T` is the
        cosine of two items' weighted slots."""
        if self._weighted is None:
            m = (self.item_slots @ sp.diags(self.slot_weights().astype(np.float32))).tocsr()
            m.eliminate_zeros()
            norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
            self._weighted = (sp.diags((1.0 / np.maximum(norms, 1e-12)).astype(np.float32)) @ m).tocsr()
            self._weighted_csc = self._weighted.tocsc()
        return self._weighted

    def fit_relation_weights(self, matrix: sp.csr_matrix, *, max_items: int = 3000, seed: int = 0) -> dict[str, float]:
        """Relation weights from behaviour: for relation r, the mean co-consumption count of
        item pairs sharing an r-slot divided by the mean over all item pairs (on a sample of
        at most `max_items` items), weight = log of that lift, floored at 0 (1 where the
        sample has no pair to judge by). Returns {relation: weight}."""
        n = min(self.n_items, matrix.shape[1])
        rng = np.random.default_rng(seed)
        active = np.flatnonzero(np.diff(matrix.tocsc().indptr)[:n] > 0)
        if len(active) > max_items:
            active = np.sort(rng.choice(active, max_items, replace=False))
        x = matrix.tocsc()[:, active].astype(np.float32)
        co = (x.T @ x).toarray()
        np.fill_diagonal(co, 0.0)
        base = co.sum() / max(len(active) * (len(active) - 1), 1)
        a = self.item_slots[active]
        weights = np.ones(len(self.relations))  # no evidence either way: uniform
        for r in range(len(self.relations)):
            cols = np.flatnonzero(self.slot_relation == r)
            if not len(cols):
                continue
            ar = a[:, cols]
            share = (ar @ ar.T).toarray() > 0
            np.fill_diagonal(share, False)
            if share.sum() == 0 or base <= 0:
                continue
            lift = co[share].mean() / base
            weights[r] = max(math.log(lift), 0.0) if lift > 0 else 0.0
        self.relation_weight = weights
        self._weighted = self._weighted_csc = self._sw = None
        return {r: round(float(w), 4) for r, w in zip(self.relations, weights, strict=True)}

    # --- two hops ----------------------------------------------------------------------------
    def profile(self, items: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The summed weighted slot rows of `items`: (slot indices, values)."""
        w = self.weighted()
        items = np.asarray(items, np.int64)
        items = items[items < w.shape[0]]
        if not len(items):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        rows = w[items]
        if weights is not None:
            rows = sp.diags(np.asarray(weights, np.float32)[:len(items)]) @ rows
        p = sp.csr_matrix(rows.sum(axis=0))
        return p.indices.astype(np.int64), p.data.astype(np.float32)

    def scores_for(self, slots: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Items reached from a slot profile: (sorted item indices, summed cosine parts)."""
        self.weighted()
        csc = self._weighted_csc
        if not len(slots):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        sub = csc[:, slots]
        s = sp.csr_matrix(sub @ sp.csr_matrix(values.reshape(-1, 1)))
        s = s.tocoo()
        order = np.argsort(s.row)
        return s.row[order].astype(np.int64), s.data[order].astype(np.float32)

    def overlap(self, candidates: np.ndarray, history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """How each candidate meets the history through shared (weighted) slots, by a sorted
        join of their slot lists (no sparse products: cheap per request).

        Returns (sims, shares): sims (n_candidates, n_history) the weighted-slot cosines;
        shares (n_candidates, n_relations) per relation the share of history items that share
        at least one slot of that relation with the candidate. Items outside the graph: 0."""
        w = self.weighted()
        n_rel = len(self.relations)
        cands = np.asarray(candidates, np.int64)
        hist = np.asarray(history, np.int64)
        sims = np.zeros((len(cands), len(hist)), np.float32)
        shares = np.zeros((len(cands), n_rel), np.float32)
        if not len(cands) or not len(hist):
            return sims, shares
        hp, hs, hw = _row_entries(w, hist)
        cp, cs, cw = _row_entries(w, cands)
        if not len(hs) or not len(cs):
            return sims, shares
        order = np.argsort(hs, kind="stable")
        hp, hs, hw = hp[order], hs[order], hw[order]
        lo = np.searchsorted(hs, cs, "left")
        cnt = np.searchsorted(hs, cs, "right") - lo
        keep = cnt > 0
        if not keep.any():
            return sims, shares
        cp, cs, cw, lo, cnt = cp[keep], cs[keep], cw[keep], lo[keep], cnt[keep]
        rep_c = np.repeat(np.arange(len(cp)), cnt)
        at = np.repeat(lo - np.cumsum(cnt) + cnt, cnt) + np.arange(int(cnt.sum()))
        pc, ph = cp[rep_c], hp[at]
        nh = len(hist)
        sims = np.bincount(pc * nh + ph, weights=cw[rep_c] * hw[at],
                           minlength=len(cands) * nh).astype(np.float32).reshape(len(cands), nh)
        key = np.unique((pc * nh + ph) * n_rel + self.slot_relation[cs[rep_c]])
        shares = np.bincount((key // n_rel // nh) * n_rel + key % n_rel,
                             minlength=len(cands) * n_rel).astype(np.float32).reshape(len(cands), n_rel)
        return sims, shares / nh

    def affinity(self, candidates: np.ndarray, history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """How much of each candidate's entities the history already covers.

        Returns (aff, linked): aff (n_candidates, n_relations), per relation the max over the
        candidate's live slots of that relation of (history items holding the slot) / (the
        other items holding it): 1 when the user saw every other film of the candidate's
        director, whatever the director's output; linked (n_candidates,) how many history
        items share at least one live slot with the candidate (a count, not a share)."""
        w = self.weighted()
        n_rel = len(self.relations)
        cands = np.asarray(candidates, np.int64)
        hist = np.asarray(history, np.int64)
        aff = np.zeros((len(cands), n_rel), np.float32)
        linked = np.zeros(len(cands), np.float32)
        if not len(cands) or not len(hist):
            return aff, linked
        hp, hs, _ = _row_entries(w, hist)
        cp, cs, _ = _row_entries(w, cands)
        if not len(hs) or not len(cs):
            return aff, linked
        order = np.argsort(hs, kind="stable")
        hp, hs = hp[order], hs[order]
        lo = np.searchsorted(hs, cs, "left")
        cnt = np.searchsorted(hs, cs, "right") - lo
        keep = cnt > 0
        if not keep.any():
            return aff, linked
        cp, cs, lo, cnt = cp[keep], cs[keep], lo[keep], cnt[keep]
        # the join on the slot: (candidate, history item) pairs; a candidate in the history
        # does not count itself
        rep = np.repeat(np.arange(len(cp)), cnt)
        at = np.repeat(lo - np.cumsum(cnt) + cnt, cnt) + np.arange(int(cnt.sum()))
        other = hist[hp[at]] != cands[cp[rep]]
        n_other = np.bincount(rep[other], minlength=len(cp)).astype(np.float64)
        df = self.df()
        ratio = np.minimum(n_other / np.maximum(df[cs] - 1.0, 1.0), 1.0).astype(np.float32)
        np.maximum.at(aff, (cp, self.slot_relation[cs]), ratio)
        pairs = np.unique(cp[rep[other]] * len(hist) + hp[at][other])
        linked = np.bincount(pairs // len(hist), minlength=len(cands)).astype(np.float32)
        return aff, linked

    def shared(self, a: int, b: int) -> list[tuple[str, str]]:
        """(relation, entity) slots items `a` and `b` share, heaviest first."""
        sa = set(self.item_slots.indices[self.item_slots.indptr[a]:self.item_slots.indptr[a + 1]].tolist()) \
            if a < self.n_items else set()
        sb = set(self.item_slots.indices[self.item_slots.indptr[b]:self.item_slots.indptr[b + 1]].tolist()) \
            if b < self.n_items else set()
        both = sorted(sa & sb)
        w = self.slot_weights()
        both.sort(key=lambda s: -w[s])
        return [tuple(self.slots.ids[s].split(SEP, 1)) for s in both]  # type: ignore[misc]

    def entity_label(self, entity: str) -> str:
        """The entity's name where known, else "entity <id>"."""
        if entity in self.entity_names:
            return self.entity_names[entity]
        if entity.startswith("item:"):
            return f"item {entity[5:]}"
        return f"entity {entity}"

    def slot_relations(self, item: int) -> np.ndarray:
        if item >= self.n_items:
            return np.zeros(0, np.int64)
        return self.slot_relation[self.item_slots.indices[self.item_slots.indptr[item]:self.item_slots.indptr[item + 1]]]

    def slot_texts(self) -> list[str | None]:
        """Per slot "relation: entity name" where the entity has a name, else None."""
        out: list[str | None] = []
        for key in self.slots.ids:
            rel, entity = key.split(SEP, 1)
            name = self.entity_names.get(entity)
            out.append(f"{relation_label(rel)}: {name}" if name else None)
        return out

    def entity_vectors(self, item_vectors: np.ndarray, encode: Any = None) -> np.ndarray:
        """(n_slots, dim) normalised LM vectors of the entities: the encoded "relation: name"
        where the entity has a name (with `encode`, a function texts -> vectors), else the
        mean vector of the items that hold it."""
        m = self.item_slots
        iv = np.asarray(item_vectors, np.float32)[:m.shape[0]]
        df = np.maximum(self.df(), 1.0).astype(np.float32)
        vec = np.asarray((m.T @ iv)) / df[:, None]
        texts = self.slot_texts()
        named = [k for k, t in enumerate(texts) if t]
        if encode is not None and named:
            vec[named] = np.asarray(encode([texts[k] for k in named]), np.float32)
        norms = np.linalg.norm(vec, axis=1, keepdims=True)
        return np.where(norms > 0, vec / np.maximum(norms, 1e-12), 0.0).astype(np.float32)

    def relation_vectors(self, encode: Any) -> np.ndarray:
        """(n_relations, dim) LM vectors of the relation labels ("director", "brand", ...)."""
        v = np.asarray(encode([relation_label(r) for r in self.relations]), np.float32)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    def triples(self) -> pd.DataFrame:
        """Every edge as (head, relation, tail) node keys: items as "item:<index>"."""
        coo = self.item_slots.tocoo()
        heads = [f"item:{i}" for i in coo.row.tolist()]
        rels = [self.relations[self.slot_relation[s]] for s in coo.col.tolist()]
        tails = [self.slots.ids[s].split(SEP, 1)[1] for s in coo.col.tolist()]
        for h, r, t in self.edges.tolist():
            heads.append(self.entities.ids[h])
            rels.append(self.relations[r])
            tails.append(self.entities.ids[t])
        return pd.DataFrame({"head": heads, "relation": rels, "tail": tails})

    def summary(self) -> dict[str, Any]:
        df = self.df()
        per_rel = {r: int(self.item_slots[:, self.slot_relation == k].nnz) for k, r in enumerate(self.relations)}
        return {"items": self.n_items, "items_in_graph": int((np.diff(self.item_slots.indptr) > 0).sum()),
                "slots": len(self.slots), "entities": len(self.entities), "item_links": int(self.item_slots.nnz),
                "entity_edges": len(self.edges), "links_per_relation": per_rel,
                "shared_slots": int((df >= 2).sum())}

    # --- persistence -----------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        m = self.item_slots
        names = list(self.entity_names.items())
        return {"kg_indptr": m.indptr, "kg_indices": m.indices, "kg_shape": np.array(m.shape, np.int64),
                "kg_slots": np.array(self.slots.ids, dtype=str), "kg_slot_relation": self.slot_relation,
                "kg_entities": np.array(self.entities.ids, dtype=str),
                "kg_relations": np.array(self.relations, dtype=str), "kg_edges": self.edges,
                "kg_relation_weight": self.relation_weight, "kg_attrs": np.array(self.attrs, dtype=str),
                "kg_name_keys": np.array([k for k, _ in names], dtype=str),
                "kg_name_values": np.array([v for _, v in names], dtype=str)}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], config: GraphConfig | None = None) -> KnowledgeGraph:
        g = cls(config)
        shape = tuple(int(x) for x in state["kg_shape"])
        g.item_slots = sp.csr_matrix((np.ones(len(state["kg_indices"]), np.float32), state["kg_indices"],
                                      state["kg_indptr"]), shape=shape)
        g.slots = IdMap([str(s) for s in state["kg_slots"]], sort=False)
        g.slot_relation = np.asarray(state["kg_slot_relation"], np.int64)
        g.entities = IdMap([str(s) for s in state["kg_entities"]], sort=False)
        g.relations = [str(r) for r in state["kg_relations"]]
        g.edges = np.asarray(state["kg_edges"], np.int64).reshape(-1, 3)
        g.relation_weight = np.asarray(state["kg_relation_weight"], np.float64)
        g.attrs = [str(a) for a in state["kg_attrs"]]
        g.entity_names = dict(zip((str(k) for k in state["kg_name_keys"]), (str(v) for v in state["kg_name_values"]),
                                  strict=True))
        return g


def _row_entries(m: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(position in `rows`, column, value) of every stored entry of `m`'s rows `rows` (rows
    beyond the matrix have none)."""
    rows = np.asarray(rows, np.int64)
    inside = rows < m.shape[0]
    r = np.where(inside, rows, 0)
    starts = m.indptr[r]
    lens = np.where(inside, m.indptr[r + 1] - starts, 0)
    total = int(lens.sum())
    pos = np.repeat(np.arange(len(rows)), lens)
    idx = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(starts, lens)
    return pos, m.indices[idx].astype(np.int64), m.data[idx].astype(np.float32)
