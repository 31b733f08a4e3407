"""Knowledge-graph embeddings in torch: TransE and DistMult, with early stopping on held-out
triples and link-prediction metrics (filtered MRR and Hits@10 of tail prediction).

Nodes are the graph's items (0..n_items-1) and entities (n_items + entity index); edges are
every item -> entity slot link and every entity -> entity edge. A random `valid_fraction`
and `test_fraction` of the edges are held out (never the only edge of an item, so every
item keeps a vector trained from its own links); training minimises a logistic loss with
`negatives` corrupted tails (and heads) per edge; every `eval_every` epochs the validation
MRR decides early stopping (`patience` checks without improvement), and the best epoch's
weights are kept.

Example:
    >>> from lmrec.data.dataset import Dataset, IdMap, Interactions, ItemTable
    >>> from lmrec.kg.graph import KnowledgeGraph
    >>> t = ItemTable(title=list("abcdef"), categories=[["x"], ["x"], ["x"], ["y"], ["y"], ["y"]])
    >>> g = KnowledgeGraph.from_dataset(Dataset("d", IdMap("u"), IdMap("abcdef"), Interactions.empty(), item_table=t))
    >>> r = train_kge(g, KGEConfig(dim=8, epochs=20, valid_fraction=0.0, test_fraction=0.0))
    >>> r.item_vectors().shape
    (6, 8)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from lmrec.kg.graph import KnowledgeGraph

__all__ = ["KGEConfig", "KGEResult", "train_kge", "edges_of"]

log = logging.getLogger(__name__)


class KGEConfig(BaseModel):
    model_config = {"extra": "forbid"}

    method: Literal["transe", "distmult"] = "transe"
    dim: int = Field(64, ge=2)
    epochs: int = Field(200, ge=1)
    lr: float = Field(0.01, gt=0)
    batch_size: int = Field(1024, ge=1)
    negatives: int = Field(16, ge=1)
    margin: float = Field(4.0, gt=0)  # TransE: score = margin - ||h + r - t||
    l2: float = Field(1e-6, ge=0)
    valid_fraction: float = Field(0.05, ge=0, lt=0.5)
    test_fraction: float = Field(0.05, ge=0, lt=0.5)
    eval_every: int = Field(10, ge=1)
    patience: int = Field(3, ge=1)
    seed: int = 0
    threads: int = Field(1, ge=1)


@dataclass
class KGEResult:
    n_items: int
    nodes: np.ndarray  # (n_nodes, dim)
    relations: np.ndarray  # (n_relations, dim)
    metrics: dict[str, Any] = field(default_factory=dict)
    has_links: np.ndarray | None = None  # items with at least one KG edge

    def item_vectors(self, *, normalised: bool = False) -> np.ndarray:
        """(n_items, dim) item node vectors; zero for items without a KG link."""
        v = self.nodes[:self.n_items].astype(np.float32).copy()
        if self.has_links is not None:
            v[~self.has_links] = 0.0
        if normalised:
            n = np.linalg.norm(v, axis=1, keepdims=True)
            v = np.where(n > 0, v / np.maximum(n, 1e-12), 0.0).astype(np.float32)
        return v


def edges_of(graph: KnowledgeGraph) -> np.ndarray:
    """(n_edges, 3) (head node, relation, tail node) of `graph` (see the module docstring)."""
    coo = graph.item_slots.tocoo()
    n = graph.n_items
    slot_entity = np.array([graph.entities.index(k.split("\x1f", 1)[1]) for k in graph.slots.ids], np.int64) \
        if len(graph.slots) else np.zeros(0, np.int64)
    item_edges = np.stack([coo.row.astype(np.int64), graph.slot_relation[coo.col], n + slot_entity[coo.col]], axis=1) \
        if coo.nnz else np.zeros((0, 3), np.int64)
    ent = graph.edges.copy()
    if len(ent):
        ent[:, 0] += n
        ent[:, 2] += n
    return np.unique(np.r_[item_edges, ent], axis=0)


def _split(edges: np.ndarray, cfg: KGEConfig, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    order = rng.permutation(len(edges))
    n_valid = int(len(edges) * cfg.valid_fraction)
    n_test = int(len(edges) * cfg.test_fraction)
    # an edge is held out only when its head keeps another edge in training
    heads = edges[:, 0]
    counts = np.bincount(heads, minlength=int(heads.max()) + 1 if len(heads) else 0)
    held: list[int] = []
    for k in order.tolist():
        if len(held) >= n_valid + n_test:
            break
        if counts[heads[k]] > 1:
            counts[heads[k]] -= 1
            held.append(k)
    held_arr = np.array(held, np.int64)
    train = np.setdiff1d(np.arange(len(edges)), held_arr)
    return edges[train], edges[held_arr[:n_valid]], edges[held_arr[n_valid:]]


def train_kge(graph: KnowledgeGraph, config: KGEConfig | None = None) -> KGEResult:
    """Train node and relation embeddings on `graph` (see the module docstring)."""
    import torch

    cfg = config or KGEConfig()
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    n_nodes = graph.n_items + len(graph.entities)
    n_rel = max(len(graph.relations), 1)
    edges = edges_of(graph)
    has_links = np.zeros(graph.n_items, bool)
    has_links[edges[edges[:, 0] < graph.n_items, 0]] = True
    if not len(edges):
        return KGEResult(graph.n_items, np.zeros((n_nodes, cfg.dim), np.float32), np.zeros((n_rel, cfg.dim), np.float32),
                         {"edges": 0}, has_links)
    train, valid, test = _split(edges, cfg, rng)
    known: dict[tuple[int, int], list[int]] = {}  # (head, relation) -> every true tail
    for h_, r_, t_ in edges.tolist():
        known.setdefault((h_, r_), []).append(t_)
    prev = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        node = torch.nn.Embedding(n_nodes, cfg.dim)
        rel = torch.nn.Embedding(n_rel, cfg.dim)
        bound = 6.0 / math.sqrt(cfg.dim)
        torch.nn.init.uniform_(node.weight, -bound, bound)
        torch.nn.init.uniform_(rel.weight, -bound, bound)
        opt = torch.optim.Adam([*node.parameters(), *rel.parameters()], lr=cfg.lr)
        t_train = torch.from_numpy(train)
        best = (-1.0, 0, node.weight.detach().clone(), rel.weight.detach().clone())
        bad = 0
        epoch = 0
        for epoch in range(1, cfg.epochs + 1):
            perm = torch.randperm(len(t_train))
            total = 0.0
            for start in range(0, len(perm), cfg.batch_size):
                b = t_train[perm[start:start + cfg.batch_size]]
                h, r, t = b[:, 0], b[:, 1], b[:, 2]
                neg = torch.randint(0, n_nodes, (len(b), cfg.negatives))
                corrupt_head = torch.rand(len(b), cfg.negatives) < 0.5
                pos = _score(cfg, node(h), rel(r), node(t))
                nh = torch.where(corrupt_head, neg, h[:, None])
                nt = torch.where(corrupt_head, t[:, None], neg)
                negs = _score(cfg, node(nh), rel(r)[:, None, :], node(nt))
                loss = torch.nn.functional.softplus(-pos).mean() + torch.nn.functional.softplus(negs).mean()
                if cfg.l2:
                    loss = loss + cfg.l2 * (node(h).pow(2).sum() + node(t).pow(2).sum() + rel(r).pow(2).sum()) / len(b)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if cfg.method == "transe":
                    with torch.no_grad():  # TransE keeps entity vectors on the unit ball
                        w = node.weight
                        w.div_(w.norm(dim=1, keepdim=True).clamp(min=1.0))
                total += float(loss.detach()) * len(b)
            if len(valid) and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
                mrr, _ = _link_metrics(cfg, node.weight.detach(), rel.weight.detach(), valid, known)
                log.info("kge %s epoch %d loss %.4f valid MRR %.4f", cfg.method, epoch, total / len(train), mrr)
                if mrr > best[0]:
                    best, bad = (mrr, epoch, node.weight.detach().clone(), rel.weight.detach().clone()), 0
                else:
                    bad += 1
                    if bad >= cfg.patience:
                        break
        if best[0] < 0:
            best = (float("nan"), epoch, node.weight.detach().clone(), rel.weight.detach().clone())
        metrics: dict[str, Any] = {"method": cfg.method, "edges": int(len(edges)), "train_edges": int(len(train)),
                                   "epochs_run": epoch, "best_epoch": best[1],
                                   "valid_mrr": round(best[0], 4) if math.isfinite(best[0]) else None}
        if len(test):
            mrr, hits = _link_metrics(cfg, best[2], best[3], test, known)
            metrics.update(test_mrr=round(mrr, 4), test_hits10=round(hits, 4), test_edges=int(len(test)))
        return KGEResult(graph.n_items, best[2].numpy().astype(np.float32), best[3].numpy().astype(np.float32),
                         metrics, has_links)
    finally:
        torch.set_num_threads(prev)


def _score(cfg: KGEConfig, h: Any, r: Any, t: Any) -> Any:
    if cfg.method == "transe":
        return cfg.margin - (h + r - t).norm(p=2, dim=-1)
    return (h * r * t).sum(dim=-1)


def _link_metrics(cfg: KGEConfig, nodes: Any, rels: Any, edges: np.ndarray,
                  known: dict[tuple[int, int], list[int]]) -> tuple[float, float]:
    """Filtered tail-prediction MRR and Hits@10 of `edges` over every node."""
    import torch

    rr, hits = [], []
    with torch.no_grad():
        for start in range(0, len(edges), 256):
            b = torch.from_numpy(edges[start:start + 256])
            s = _score(cfg, nodes[b[:, 0]][:, None, :], rels[b[:, 1]][:, None, :], nodes[None, :, :])
            s = s.numpy()
            for k, (h, r, t) in enumerate(edges[start:start + 256].tolist()):
                row = s[k]
                target = row[t]
                others = [x for x in known.get((h, r), ()) if x != t]
                row = row.copy()
                row[others] = -np.inf
                rank = 1 + int((row > target).sum())
                rr.append(1.0 / rank)
                hits.append(rank <= 10)
    return float(np.mean(rr)), float(np.mean(hits))

