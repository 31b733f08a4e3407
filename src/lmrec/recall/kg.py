"""Knowledge-graph recall channels ("kg", "kg-embed").

"kg" walks two hops, item -> entity <- item: a user's score for item j is the sum over the
user's `recent` latest distinct items i of the cosine of i's and j's weighted slots (slot =
(relation, entity); weight = relation weight x entity rarity, see `lmrec.kg.graph`). With
`relation_weights = "fit"` the relation weights come from the training behaviour (the lift
in co-consumption of items sharing a slot of that relation). Only items reached through a
shared entity are listed. The graph is built from the item metadata and the data set's
imported triples at fit; a new item joins it from its metadata at once (`add_items`), and
the score reads the request's history, so an event changes the next list at once.

"kg-embed" scores items by the cosine between their KG embedding (TransE / DistMult,
`lmrec.kg.embed`) and the mean embedding of the user's recent items.

"ease-kg" is EASE with the graph as side information: the Gram matrix X^T X gains
`alpha * A A^T`, where A is the item x entity incidence (binary, or idf-weighted and
normalised): as if every entity were one more user who consumed exactly the items that hold
it (the "collective" EASE of item side information). Items sharing entities get weights to
each other even where few users saw both.

Example:
    >>> import numpy as np
    >>> from lmrec.data.dataset import Dataset, IdMap, Interactions, ItemTable
    >>> from lmrec.types import HistoryBatch
    >>> t = ItemTable(title=list("abcd"), categories=[["x"], ["x"], ["y"], ["y"]])
    >>> ds = Dataset("d", IdMap("u"), IdMap("abcd"), Interactions(np.array([0]), np.array([0]), np.array([1])),
    ...              item_table=t)
    >>> ch = KGChannel(max_df=1.0).fit(ds.interactions, ds)
    >>> s = ch.user_scores(HistoryBatch([0], [np.array([0])], [np.array([1])], [np.array([1.0])]))
    >>> s.top(0, 3, np.array([0]))[0].tolist()  # only b shares an entity with a
    [1]
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from lmrec.data.dataset import Dataset, Interactions
from lmrec.kg.graph import GraphOptions, KnowledgeGraph
from lmrec.recall.base import Recommender
from lmrec.recall.ease import EASE, EASEConfig, ease_weights, gram_matrix
from lmrec.recall.scores import SparseRowScores, UserScores, VectorCache, VectorScores
from lmrec.types import HistoryBatch

__all__ = ["KGChannel", "KGEmbeddingChannel", "EASEKG"]


class KGConfig(GraphOptions):
    """sources / attributes / max_df: how the graph is built (`lmrec.kg.graph.GraphConfig`);
    relation_weights: "fit" (from behaviour) or "uniform"; recent: how many of the user's
    latest distinct items are walked from."""

    relation_weights: Literal["fit", "uniform"] = "fit"
    recent: int = Field(200, ge=1)


def _latest(train: Interactions, n_users: int, width: int) -> np.ndarray:
    """Each user's latest `width` training events in time order, -1 padded on the left:
    what `score` walks from (a request walks from its own history)."""
    from lmrec.recall.transitions import latest_items

    out = np.full((n_users, width), -1, np.int64)
    latest_items(train.sorted(), out)
    return out


def _recent_distinct(items: np.ndarray, n: int) -> np.ndarray:
    """The `n` latest distinct items, latest first."""
    return np.array(list(dict.fromkeys(np.asarray(items, np.int64)[::-1].tolist()))[:n], np.int64)


class KGChannel(Recommender):
    """See the module docstring."""

    name = "kg"
    Config = KGConfig
    config: KGConfig
    history_based = True

    def _fit(self, matrix: sp.csr_matrix, train: Interactions, dataset: Dataset) -> None:
        self.graph = KnowledgeGraph.from_dataset(dataset, self.config.graph_config())
        self.relation_weights = (self.graph.fit_relation_weights(matrix)
                                 if self.config.relation_weights == "fit" else {})
        self.latest = _latest(train, self.n_users, self.config.recent)

    def add_items(self, items: np.ndarray, dataset: Dataset) -> None:
        super().add_items(items, dataset)
        if self.matrix is not None:
            self.graph.add_items(items, dataset)

    def _row(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hist = _recent_distinct(items, self.config.recent)
        slots, values = self.graph.profile(hist)
        return self.graph.scores_for(slots, values)

    def user_scores(self, batch: HistoryBatch) -> UserScores:
        self._check_fitted()
        rows = [self._row(batch.items[r]) for r in range(len(batch))]
        return SparseRowScores([c for c, _ in rows], [v for _, v in rows], self.n_items, fill=False)

    def _score(self, users: np.ndarray) -> np.ndarray:
        out = np.zeros((len(users), self.n_items), np.float32)
        for r, u in enumerate(users.tolist()):
            row = self.latest[u]
            c, v = self._row(row[row >= 0])
            out[r, c] = v
        return out

    def _state(self) -> dict[str, np.ndarray]:
        return {**self.graph.state(), "latest": self.latest}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.graph = KnowledgeGraph.from_state(state, self.config.graph_config())
        self.latest = np.asarray(state["latest"], np.int64)


class KGEmbedConfig(KGConfig):
    """The graph options of "kg" plus the embedding's (`lmrec.kg.embed.KGEConfig`)."""

    method: Literal["transe", "distmult"] = "transe"
    dim: int = Field(64, ge=2)
    epochs: int = Field(200, ge=1)
    lr: float = Field(0.01, gt=0)
    negatives: int = Field(16, ge=1)
    seed: int = 0
    threads: int = Field(1, ge=1)
    recent: int = Field(50, ge=1)


class KGEmbeddingChannel(Recommender):
    """See the module docstring. `link_metrics` holds the embedding's link-prediction MRR and
    Hits@10 on held-out triples."""

    name = "kg-embed"
    Config = KGEmbedConfig
    config: KGEmbedConfig
    history_based = True

    def _fit(self, matrix: sp.csr_matrix, train: Interactions, dataset: Dataset) -> None:
        from lmrec.kg.embed import KGEConfig, train_kge

        c = self.config
        graph = KnowledgeGraph.from_dataset(dataset, c.graph_config())
        result = train_kge(graph, KGEConfig(method=c.method, dim=c.dim, epochs=c.epochs, lr=c.lr,
                                            negatives=c.negatives, seed=c.seed, threads=c.threads))
        self.item_vectors = result.item_vectors(normalised=True)
        self.link_metrics: dict[str, Any] = result.metrics
        self.latest = _latest(train, self.n_users, c.recent)
        self._vectors = VectorCache()

    def add_items(self, items: np.ndarray, dataset: Dataset) -> None:
        """New items have no KG embedding until the next fit (the "kg" channel links them)."""
        super().add_items(items, dataset)
        if self.matrix is not None and len(self.item_vectors) < self.n_items:
            self.item_vectors = np.r_[self.item_vectors, np.zeros((self.n_items - len(self.item_vectors),
                                                                   self.item_vectors.shape[1]), np.float32)]

    def _users(self, histories: list[np.ndarray]) -> np.ndarray:
        v = self.item_vectors
        out = np.zeros((len(histories), v.shape[1]), np.float32)
        for r, items in enumerate(histories):
            hist = _recent_distinct(items, self.config.recent)
            hist = hist[hist < len(v)]
            if len(hist):
                m = v[hist].sum(axis=0)
                out[r] = m / max(float(np.linalg.norm(m)), 1e-12)
        return out

    def user_scores(self, batch: HistoryBatch) -> UserScores:
        self._check_fitted()
        if getattr(self, "_vectors", None) is None:
            self._vectors = VectorCache()
        stats, ann = self._vectors.get(self.item_vectors, None, self.n_items, self.retrieval)
        return VectorScores(self._users(batch.items), self.item_vectors, stats, None, ann, self.n_items)

    def _score(self, users: np.ndarray) -> np.ndarray:
        u = self._users([row[row >= 0] for row in self.latest[users]])
        return u @ self.item_vectors[:self.n_items].T

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_vectors": self.item_vectors, "latest": self.latest}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_vectors = np.asarray(state["item_vectors"], np.float32)
        self.latest = np.asarray(state["latest"], np.int64)
        self._vectors = VectorCache()


class EASEKGConfig(EASEConfig, GraphOptions):
    """lam: EASE's L2 penalty; alpha: weight of the graph's item-item co-membership added to
    the Gram matrix; weighting: "binary" (each shared entity counts 1) or "idf" (the graph's
    normalised, rarity-weighted rows); sources / attributes / max_df: the graph."""

    lam: float = Field(1000.0, gt=0)
    alpha: float = Field(15.0, ge=0)
    weighting: Literal["binary", "idf"] = "binary"


class EASEKG(EASE):
    """See the module docstring ("ease-kg"). Only the fit differs from EASE: scores, online
    behaviour and state are EASE's (x_u B of the request's items)."""

    name = "ease-kg"
    Config = EASEKGConfig
    config: EASEKGConfig

    def _fit(self, matrix: sp.csr_matrix, train: Interactions, dataset: Dataset) -> None:
        c = self.config
        graph = KnowledgeGraph.from_dataset(dataset, c.graph_config())
        a = graph.live_slots() if c.weighting == "binary" else graph.weighted()
        gram = gram_matrix(matrix)
        if c.alpha > 0 and a.nnz:
            gram += c.alpha * (a @ a.T).toarray()
        gram[np.diag_indices_from(gram)] += c.lam
        self.weights = ease_weights(gram)
