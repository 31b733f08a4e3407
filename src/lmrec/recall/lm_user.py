"""User-history language-model recommenders: items are text embeddings, a user is a vector
(or a few interest vectors) built from the embeddings of the items in their history.

Registered as "lm-mean", "lm-recency" and "lm-multi". Every item with text is scorable, so
new (cold) items are recommended from the first moment; `update` folds in one event and
`add_item` adds one item without refitting.

Example:
    >>> from lmrec.testing.toy import toy_dataset
    >>> ds = toy_dataset()
    >>> model = LMRecencyRecommender(encoder="fake", half_life=5).fit(ds.interactions, ds)
    >>> [len(c) for c in model.recommend([0, 1], k=5)]
    [5, 5]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field, field_validator

from lmrec.data.dataset import Dataset, Interactions
from lmrec.component import ComponentConfig
from lmrec.recall.base import Recommender
from lmrec.recall.item2item import (batched_spherical_kmeans, dataset_item_vectors, item_vectors_for,
                                    recency_weights, resolve_encoder, spherical_kmeans)
from lmrec.recall.scores import DenseScores, UserScores, VectorCache, VectorScores
from lmrec.types import Event, HistoryBatch
from lmrec.text.base import normalize
from lmrec.text.registry import check_encoder_name

__all__ = ["history_vector", "LMUserConfig", "LMUserRecommender", "LMMeanRecommender", "LMRecencyRecommender",
           "LMMultiRecommender", "recency_weights", "spherical_kmeans"]

Mode = Literal["mean", "recency", "multi"]


class LMUserConfig(ComponentConfig):
    """Parameters of the LM user-history models.

    encoder: a `lmrec.text.registry` name ("minilm", "minilm-int8", "minilm-onnx", "e5-small",
    "fake"; real encoders go through the on-disk embedding cache). mode: "mean" (average of history vectors),
    "recency" (exponentially decayed by position from the end, half-life `half_life` events,
    times the rating when `rating_weight`), "multi" (spherical k-means into at most
    `n_interests` interests; score = max over interests, or with `temperature` > 0 the soft
    maximum tau * log sum_k share_k * exp(s_k / tau), share_k = the interest's share of events).
    With `calibrate` each interest's similarities are z-scored over the catalog before the
    maximum, so a tight interest does not crowd out the others.
    """

    encoder: str = "minilm"
    mode: Mode = "mean"
    half_life: float = Field(10.0, gt=0.0)
    rating_weight: bool = False
    n_interests: int = Field(3, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    calibrate: bool = True
    kmeans_iters: int = Field(20, ge=1)
    seed: int = 0

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, v: str) -> str:
        return check_encoder_name(v)


class LMUserRecommender(Recommender):
    """score(u, i) = <item vector i, user vector u> over the full catalog (see LMUserConfig).

    User state is kept as running sums so `update` is O(dim) for "mean"/"recency": the
    decayed weighted sum of history vectors and of weights. Users without history get the
    popularity-weighted mean item vector of the training data.
    """

    name = "lm-user"
    Config = LMUserConfig
    config: LMUserConfig
    history_based = True  # as a channel the user vector comes from the request's history

    item_vectors: np.ndarray  # (n_items, dim) normalised
    fallback: np.ndarray  # (dim,) vector of users without history
    sums: np.ndarray  # mean/recency: (n_users, dim); multi: (n_users, n_interests, dim)
    weights: np.ndarray  # mean/recency: (n_users,) weight sums; multi: (n_users, n_interests) counts

    # --- fitting ---------------------------------------------------------------------------
    def _fit(self, matrix: sp.csr_matrix, train: Interactions, dataset: Dataset) -> None:
        self._vectors = VectorCache()
        self.item_vectors = dataset_item_vectors(dataset, self.config.encoder).copy()
        counts = np.bincount(train.item, minlength=self.n_items).astype(np.float32)
        self.fallback = _fallback(self.item_vectors, counts)
        # fitted on an empty catalog (a service's first version): nothing to weight by, so users
        # without history get the mean of the available items, kept current as the catalog
        # changes (the same whatever order the items came in, a restart included)
        self._follows_catalog = not len(self.item_vectors)
        self._live_sum: np.ndarray | None = None
        self._live_rows = np.zeros(0, bool)
        s = train.sorted()
        self._pending: list[tuple[int, int]] = []
        self.hist_indptr = np.searchsorted(s.user, np.arange(self.n_users + 1)).astype(np.int64)
        self.hist_items, self.hist_ts, self.hist_val = s.item.copy(), s.timestamp.copy(), s.value.copy()
        self._alloc(self.n_users)
        self._rebuild_all()

    def _rebuild_all(self) -> None:
        """Every user's state from the stored histories at once (what `_rebuild_user` does for
        one user): one sparse product for "mean"/"recency", batched k-means for "multi"."""
        cfg, indptr = self.config, self.hist_indptr
        lengths = np.diff(indptr)
        if not len(self.hist_items):
            return
        owner = np.repeat(np.arange(self.n_users), lengths)  # the user of each history event
        if cfg.mode == "multi":
            sums, labels = batched_spherical_kmeans(self.item_vectors, indptr, cfg.n_interests, index=self.hist_items,
                                                    seeds=cfg.seed + np.arange(self.n_users),
                                                    iters=cfg.kmeans_iters)
            self.sums[:] = sums
            self.weights[:] = np.bincount(owner * cfg.n_interests + labels,
                                          minlength=self.n_users * cfg.n_interests).reshape(self.weights.shape)
            return
        w = np.ones(len(self.hist_items))
        if cfg.mode == "recency":  # events after this one in the user's history
            w = np.power(2.0, -(indptr[owner + 1] - 1 - np.arange(len(owner))) / cfg.half_life)
        if cfg.rating_weight:
            w = w * self.hist_val
        m = sp.csr_matrix((w, (owner, self.hist_items)), shape=(self.n_users, self.n_items))
        self.sums[:] = m @ self.item_vectors.astype(np.float64)
        self.weights[:] = np.bincount(owner, weights=w, minlength=self.n_users)

    def _alloc(self, n_users: int) -> None:
        dim = self.item_vectors.shape[1]
        shape = (n_users, self.config.n_interests) if self.config.mode == "multi" else (n_users,)
        self.sums = np.zeros(shape + (dim,), dtype=np.float64)
        self.weights = np.zeros(shape, dtype=np.float64)

    def _history(self, u: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, b = self.hist_indptr[u], self.hist_indptr[u + 1]
        return self.hist_items[a:b], self.hist_ts[a:b], self.hist_val[a:b]

    def _event_weights(self, values: np.ndarray) -> np.ndarray:
        cfg = self.config
        w = recency_weights(len(values), cfg.half_life) if cfg.mode == "recency" else np.ones(len(values))
        return w * values if cfg.rating_weight else w

    def _rebuild_user(self, u: int) -> None:
        """Recompute user u's state from their stored history (in (timestamp, item) order)."""
        items, _, values = self._history(u)
        self.sums[u], self.weights[u] = 0.0, 0.0
        if not len(items):
            return
        vecs = self.item_vectors[items].astype(np.float64)
        if self.config.mode == "multi":
            sums, labels = spherical_kmeans(vecs, self.config.n_interests, seed=self.config.seed + u,
                                            iters=self.config.kmeans_iters)  # as _rebuild_all does
            self.sums[u, :len(sums)] = sums
            self.weights[u, :len(sums)] = np.bincount(labels, minlength=len(sums))
        else:
            w = self._event_weights(values)
            self.sums[u] = w @ vecs
            self.weights[u] = w.sum()

    # --- scoring ---------------------------------------------------------------------------
    def user_vectors(self, users: np.ndarray) -> np.ndarray:
        """(len(users), dim) normalised user vectors ("mean"/"recency" modes)."""
        vecs = normalize(self.sums[users])
        empty = self.weights[users] <= 0
        vecs[empty] = self.fallback
        return vecs

    def _score(self, users: np.ndarray) -> np.ndarray:
        if self.config.mode != "multi":
            return self.user_vectors(users) @ self.item_vectors.T
        return self._multi_from_state(self.sums[users], self.weights[users])

    def _multi_from_state(self, sums: np.ndarray, weights: np.ndarray) -> np.ndarray:
        n, k, dim = len(sums), self.config.n_interests, self.item_vectors.shape[1]
        counts = np.array(weights, np.float64)  # (n, k)
        centers = normalize(sums.reshape(n * k, dim)).reshape(n, k, dim)
        empty = counts.sum(axis=1) <= 0
        centers[empty, 0], counts[empty, 0] = self.fallback, 1.0
        sims = np.einsum("nkd,id->nki", centers, self.item_vectors)
        if self.config.calibrate:
            sims -= sims.mean(axis=2, keepdims=True)
            sims /= np.maximum(sims.std(axis=2, keepdims=True), 1e-6)
        sims[counts <= 0] = -np.inf
        tau = self.config.temperature
        if tau <= 0:
            return sims.max(axis=1)
        share = counts / counts.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore"):
            logits = sims / tau + np.log(share)[:, :, None]
        top = logits.max(axis=1)
        return tau * (top + np.log(np.exp(logits - top[:, None]).sum(axis=1)))

    # --- as a channel: the user vector from the request's history --------------------------
    def _row_vector(self, items: np.ndarray, values: np.ndarray) -> np.ndarray:
        cfg = self.config
        v = history_vector(self.item_vectors, items, values, half_life=cfg.half_life if cfg.mode == "recency" else None,
                           rating_weight=cfg.rating_weight)
        return self.fallback if v is None else v

    def user_scores(self, batch: HistoryBatch) -> UserScores:
        """"mean"/"recency": the (recency-)weighted mean of the row's item vectors against the
        item table (exact, or through the HNSW index); "multi": the interests of the row's
        history (k-means, seeded per user as in `fit`) scored over the catalog."""
        self._check_fitted()
        if self.config.mode == "multi":
            return DenseScores(np.stack([self._multi_scores(int(u), batch.items[r])
                                         for r, u in enumerate(batch.users.tolist())])
                               if len(batch) else np.zeros((0, self.n_items), np.float32))
        users = np.stack([self._row_vector(batch.items[r], batch.values[r]) for r in range(len(batch))]) \
            if len(batch) else np.zeros((0, self.item_vectors.shape[1]), np.float32)
        if not hasattr(self, "_vectors"):
            self._vectors = VectorCache()
        stats, ann = self._vectors.get(self.item_vectors, None, self.n_items, self.retrieval)
        return VectorScores(users, self.item_vectors, stats, None, ann, self.n_items)

    def _multi_scores(self, u: int, items: np.ndarray) -> np.ndarray:
        cfg, dim = self.config, self.item_vectors.shape[1]
        items = items[items < len(self.item_vectors)]
        sums = np.zeros((cfg.n_interests, dim))
        counts = np.zeros(cfg.n_interests)
        if len(items):
            c, labels = spherical_kmeans(self.item_vectors[items].astype(np.float64), cfg.n_interests,
                                         seed=cfg.seed + max(u, 0), iters=cfg.kmeans_iters)
            sums[:len(c)], counts[:len(c)] = c, np.bincount(labels, minlength=len(c))
        return self._multi_from_state(sums[None], counts[None])[0]

    def prepare_retrieval(self, index: str = "exact", **params: Any) -> None:
        super().prepare_retrieval(index, **params)
        if self.matrix is not None and self.config.mode != "multi":
            self._vectors = VectorCache()
            self._vectors.get(self.item_vectors, None, self.n_items, self.retrieval)

    def add_items(self, items: np.ndarray, dataset: Dataset) -> None:
        """Embed new (or changed) items from their text in `dataset`: recommendable at once."""
        self._check_fitted()
        n_old = len(self.item_vectors)
        rows = np.unique(np.r_[np.asarray(items, np.int64), np.arange(n_old, dataset.n_items)]).astype(np.int64)
        old = self.item_vectors[rows[rows < n_old]].copy()
        self.item_vectors = item_vectors_for(dataset, self.config.encoder, items, self.item_vectors)
        grew = dataset.n_items > self.n_items
        self.n_items = max(self.n_items, dataset.n_items)
        if grew:
            self._pending.append((-1, -1))
        table = dataset.item_table
        avail = np.asarray(table.available, bool) if table is not None else np.ones(dataset.n_items, bool)
        inside = rows[rows < len(avail)]
        dead = np.union1d(inside[~avail[inside]], rows[rows >= len(avail)])
        if getattr(self, "_follows_catalog", False):
            self._follow_catalog(rows, old, n_old, avail, dead)
        if hasattr(self, "_vectors"):
            self._vectors.rows_changed(self.item_vectors, rows, old, n_old, dead=dead)

    def _follow_catalog(self, rows: np.ndarray, old: np.ndarray, n_old: int, avail: np.ndarray,
                        dead: np.ndarray) -> None:
        """Keep the fallback the mean of the available items' vectors: O(dim) per changed item."""
        dim = self.item_vectors.shape[1]
        counted = np.zeros(len(self.item_vectors), bool)
        if self._live_sum is None:  # the first change since a load: the available rows it holds
            start = np.setdiff1d(np.arange(min(n_old, len(avail))), rows)
            start = start[avail[start]]
            counted[start] = True
            self._live_sum = self.item_vectors[start].astype(np.float64).sum(axis=0)
        else:
            n = min(len(self._live_rows), len(counted))
            counted[:n] = self._live_rows[:n]
        prev = {int(r): o for r, o in zip(rows[rows < n_old], old)}
        gone = set(np.asarray(dead, np.int64).tolist())
        for r in rows.tolist():
            if counted[r] and r in prev:
                self._live_sum -= np.asarray(prev[r], np.float64)
            counted[r] = r not in gone
            if counted[r]:
                self._live_sum += self.item_vectors[r].astype(np.float64)
        self._live_rows = counted
        self.fallback = np.zeros(dim, np.float32)
        if counted.any() and np.any(self._live_sum):
            self.fallback = np.asarray(normalize(self._live_sum[None, :].astype(np.float32))[0], np.float32)

    def recommend(self, users: np.ndarray | list[int], k: int = 10, **kwargs: Any) -> list:
        self._sync_matrix()
        return super().recommend(users, k, **kwargs)

    # --- online updates --------------------------------------------------------------------
    def update(self, events: Sequence[Event]) -> None:
        """Nothing to fold in: the model keeps no global statistics, and as a pipeline channel
        it reads each user's history from the request (`user_scores`). To move this model's
        own fit-time user state (what `score` reads), call `update_one` per event."""

    def update_one(self, user: int, item: int, timestamp: int | None = None, value: float = 1.0) -> None:
        """Fold in one new event of `user` (any index; new users grow the state). Without a
        `timestamp` the event comes one second after the user's last one.

        For "mean"/"recency" an event newer than the user's history costs O(dim) and gives
        the same vector as refitting on the extended history; an older one rebuilds that
        user. For "multi" the item joins its nearest interest (or opens a free one).
        """
        if not self.is_fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
        if not 0 <= item < self.n_items:
            raise IndexError(f"item index {item} out of range 0..{self.n_items - 1}; add_item() it first")
        if user >= self.n_users:
            self._grow_users(user + 1)
        items, ts, _ = self._history(user)
        last = int(ts[-1]) if len(ts) else None
        timestamp = (last + 1 if last is not None else 0) if timestamp is None else int(timestamp)
        in_order = last is None or (timestamp, item) >= (last, int(items[-1]))
        pos = self.hist_indptr[user + 1] if in_order else \
            self.hist_indptr[user] + int(np.searchsorted(ts * (self.n_items + 1) + items,
                                                         timestamp * (self.n_items + 1) + item, side="right"))
        self.hist_items = np.insert(self.hist_items, pos, item)
        self.hist_ts = np.insert(self.hist_ts, pos, timestamp)
        self.hist_val = np.insert(self.hist_val, pos, np.float32(value))
        self.hist_indptr[user + 1:] += 1
        self._pending.append((user, item))
        vec = self.item_vectors[item].astype(np.float64)
        cfg = self.config
        if not in_order:
            self._rebuild_user(user)
        elif cfg.mode == "multi":
            used = self.weights[user] > 0
            if used.sum() < cfg.n_interests and not self._history_has(user, item):
                j = int(np.argmin(used))
            else:
                j = int(np.argmax(np.where(used, normalize(self.sums[user]) @ vec, -np.inf)))
            self.sums[user, j] += vec
            self.weights[user, j] += 1.0
        else:
            decay = 2.0 ** (-1.0 / cfg.half_life) if cfg.mode == "recency" else 1.0
            w = value if cfg.rating_weight else 1.0
            self.sums[user] = self.sums[user] * decay + w * vec
            self.weights[user] = self.weights[user] * decay + w

    def _history_has(self, user: int, item: int) -> bool:
        items = self._history(user)[0]
        return bool(np.count_nonzero(items == item) > 1)

    def add_item(self, item_index: int, text: str) -> None:
        """Give item `item_index` (new or existing) the embedding of `text`; it can be
        recommended at once. Indices beyond the catalog grow it."""
        if not self.is_fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
        vec = normalize(resolve_encoder(self.config.encoder).encode_items([text]))[0]
        if item_index >= self.n_items:
            grown = np.zeros((item_index + 1, self.item_vectors.shape[1]), dtype=np.float32)
            grown[:self.n_items] = self.item_vectors
            self.item_vectors = grown
            self.n_items = item_index + 1
            self._pending.append((-1, -1))  # the matrix must widen
        self.item_vectors[item_index] = vec
        self._vectors = VectorCache()

    def _grow_users(self, n_users: int) -> None:
        sums, weights = self.sums, self.weights
        self._alloc(n_users)
        self.sums[:len(sums)], self.weights[:len(weights)] = sums, weights
        self.hist_indptr = np.r_[self.hist_indptr, np.full(n_users - self.n_users, self.hist_indptr[-1])]
        self.n_users = n_users
        self._pending.append((-1, -1))

    def _sync_matrix(self) -> None:
        """Bring `self.matrix` (seen items) up to date with events and growth since fit."""
        if not getattr(self, "_pending", None) or self.matrix is None:
            return
        users = np.repeat(np.arange(self.n_users), np.diff(self.hist_indptr))
        m = Interactions(users, self.hist_items, self.hist_ts).to_csr(self.n_users, self.n_items)
        self.matrix, self._pending = m, []

    # --- persistence -------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        self._sync_matrix()
        return {"item_vectors": self.item_vectors, "fallback": self.fallback, "sums": self.sums,
                "weights": self.weights, "hist_indptr": self.hist_indptr, "hist_items": self.hist_items,
                "hist_ts": self.hist_ts, "hist_val": self.hist_val,
                "follows_catalog": np.array([getattr(self, "_follows_catalog", False)])}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        for key in ("item_vectors", "fallback", "sums", "weights", "hist_indptr", "hist_items",
                    "hist_ts", "hist_val"):
            setattr(self, key, state[key])
        self._pending = []
        # saved before the flag existed: a zero fallback is one fitted on an empty catalog
        self._follows_catalog = bool(state["follows_catalog"][0]) if "follows_catalog" in state \
            else not np.any(self.fallback)
        self._live_sum, self._live_rows = None, np.zeros(0, bool)


def _fallback(item_vectors: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The vector of a user without history: the popularity-weighted mean item vector (the
    plain mean without events; zeros for an empty catalog)."""
    if not len(item_vectors):
        return np.zeros(item_vectors.shape[1], np.float32)
    return normalize(counts @ item_vectors if counts.sum() else item_vectors.mean(axis=0))


def history_vector(item_vectors: np.ndarray, items: np.ndarray, values: np.ndarray | None = None, *,
                   half_life: float | None = None, rating_weight: bool = False) -> np.ndarray | None:
    """A history's profile: the normalised mean of its items' vectors (events in time order),
    each weighted 2^-(events after it / half_life) when `half_life` is given and by its value
    when `rating_weight`; None for a history without known items. What "lm-mean" and
    "lm-recency" use as the user vector, and what the service personalises search with."""
    items = np.asarray(items, np.int64)
    keep = (items >= 0) & (items < len(item_vectors))
    items = items[keep]
    if not len(items):
        return None
    w = recency_weights(len(items), half_life) if half_life is not None else np.ones(len(items))
    if rating_weight and values is not None:
        w = w * np.asarray(values, np.float64)[keep]
    v = w @ np.asarray(item_vectors[items], np.float64)
    if float(w.sum()) <= 0 or not np.any(v):
        return None
    return normalize(v[None, :].astype(np.float32))[0]


def _mode_config(mode: str, **defaults: Any) -> type[LMUserConfig]:
    fields = {"mode": (Literal[mode], mode)}  # type: ignore[valid-type]
    from pydantic import create_model

    return create_model(f"LM{mode.title()}Config", __base__=LMUserConfig, **fields,
                        **{k: (type(v), v) for k, v in defaults.items()})


class LMMeanRecommender(LMUserRecommender):
    """"lm-mean": the user is the mean of their history's item vectors."""

    name = "lm-mean"
    Config = _mode_config("mean")


class LMRecencyRecommender(LMUserRecommender):
    """"lm-recency": recent events weigh more (half-life `half_life` events)."""

    name = "lm-recency"
    Config = _mode_config("recency")


class LMMultiRecommender(LMUserRecommender):
    """"lm-multi": up to `n_interests` interest vectors per user; an item's score is its
    best match."""

    name = "lm-multi"
    Config = _mode_config("multi")
