"""Content ranker features: language-model similarity between the user (or the query) and the
item, and the user's affinity for the item's categories and categorical attributes.

Example:
    >>> from lmrec.testing.toy import toy_dataset
    >>> from lmrec.types import Query
    >>> from lmrec.types import Candidates
    >>> ds = toy_dataset()
    >>> f = CategoryAffinity().fit(ds.interactions, ds)
    >>> f.columns
    ['cat:max_share', 'cat:mean_share']
    >>> v = f.values(Query(user=0), Candidates(np.array([0, 1]), np.zeros(2)))
    >>> bool(v[0, 0] > v[1, 0])  # user 0 prefers action (item 0) over comedy (item 1)
    True
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field, field_validator

from lmrec.data.dataset import Dataset, Interactions
from lmrec.component import ComponentConfig
from lmrec.types import Event, Query, session_items
from lmrec.rank.features import Feature, PairBatch
from lmrec.recall.item2item import dataset_item_vectors, resolve_encoder
from lmrec.text.base import normalize
from lmrec.text.registry import check_encoder_name

__all__ = ["LMSimilarity", "CategoryAffinity", "KeyCounts", "categorical_attributes"]


class LMConfig(ComponentConfig):
    """encoder: a `lmrec.text.registry` name; half_life: of the recency-weighted profile, in
    events; recent: how many of the latest history items the max-similarity column looks at;
    query: add the query-item cosine column (search requests)."""

    encoder: str = "minilm"
    half_life: float = Field(5.0, gt=0)
    recent: int = Field(5, ge=1)
    query: bool = False

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, v: str) -> str:
        return check_encoder_name(v)


class LMSimilarity(Feature):
    """Cosine between the item's text embedding and (a) the user's recency-weighted profile,
    (b) each of the user's `recent` latest items (max and latest), (c) the query text.
    Exposes "item" and "user" embeddings for neural rankers. NaN for users without history."""

    name = "lm"
    Config = LMConfig
    config: LMConfig

    def _reset(self, dataset: Dataset) -> None:
        cfg = self.config
        self.item_vectors = np.asarray(dataset_item_vectors(dataset, cfg.encoder), np.float32)
        n, dim = dataset.n_users, self.item_vectors.shape[1]
        self.sums = np.zeros((n, dim), np.float64)
        self.weights = np.zeros(n, np.float64)
        self.recent = np.full((n, cfg.recent), -1, np.int64)  # latest last, -1 = empty
        self.decay = 2.0 ** (-1.0 / cfg.half_life)

    def _grow(self, n: int) -> None:
        if n > len(self.sums):
            extra = n - len(self.sums)
            self.sums = np.r_[self.sums, np.zeros((extra, self.sums.shape[1]))]
            self.weights = np.r_[self.weights, np.zeros(extra)]
            self.recent = np.r_[self.recent, np.full((extra, self.recent.shape[1]), -1, np.int64)]

    def _fit_history(self, history: Interactions) -> None:
        s = history.sorted()
        n = len(self.sums)
        indptr = np.searchsorted(s.user, np.arange(n + 1))
        owner = s.user
        after = indptr[owner + 1] - 1 - np.arange(len(owner))  # later events of the same user
        w = np.power(self.decay, after)
        m = sp.csr_matrix((w, (owner, s.item)), shape=(n, len(self.item_vectors)))
        self.sums += m @ self.item_vectors.astype(np.float64)
        self.weights += np.bincount(owner, weights=w, minlength=n)
        r = self.recent.shape[1]
        keep = after < r
        self.recent[owner[keep], r - 1 - after[keep]] = s.item[keep]

    def add_items(self, items: np.ndarray, dataset: Dataset) -> None:
        """Embed new (or changed) items: their cosines are real from the next request."""
        if self.fitted:
            from lmrec.recall.item2item import item_vectors_for

            self.item_vectors = item_vectors_for(dataset, self.config.encoder, items, self.item_vectors)

    def _update_one(self, event: Event) -> None:
        if event.item >= len(self.item_vectors):
            return  # not in the catalog this feature knows: add_items first
        self._grow(event.user + 1)
        u = event.user
        self.sums[u] = self.sums[u] * self.decay + self.item_vectors[event.item]
        self.weights[u] = self.weights[u] * self.decay + 1.0
        self.recent[u, :-1] = self.recent[u, 1:]
        self.recent[u, -1] = event.item

    @property
    def columns(self) -> list[str]:
        cols = ["lm:profile_cos", "lm:recent_max_cos", "lm:last_cos"]
        return cols + ["lm:query_cos"] if self.config.query else cols

    def _profiles(self, batch: PairBatch) -> tuple[np.ndarray, np.ndarray]:
        """(normalised profile per query, whether the user has one)."""
        users = np.array([-1 if q.user is None else q.user for q in batch.queries], np.int64)
        ok = (users >= 0) & (users < len(self.sums))
        ok[ok] = self.weights[users[ok]] > 0
        prof = np.zeros((len(users), self.item_vectors.shape[1]), np.float32)
        if ok.any():
            prof[ok] = normalize(self.sums[users[ok]].astype(np.float32))
        for g, q in enumerate(batch.queries):  # a session: the decayed sum `update` would build
            items = self._session_items(q)
            if items is not None and len(items):
                w = np.power(self.decay, np.arange(len(items) - 1, -1, -1, dtype=np.float64))
                prof[g] = normalize((w @ self.item_vectors[items].astype(np.float64)).astype(np.float32)[None])[0]
                ok[g] = True
        return prof, ok

    def _session_items(self, query: Query) -> np.ndarray | None:
        """A session's items this feature knows (what `update` would fold in), oldest first."""
        items = session_items(query)
        return None if items is None else items[items < len(self.item_vectors)]

    def compute(self, batch: PairBatch) -> np.ndarray:
        self._check_fitted()
        n = len(batch)
        out = np.full((n, len(self.columns)), np.nan, np.float32)
        if not n:
            return out
        prof, ok = self._profiles(batch)
        group, off = batch.group, batch.offsets
        vec = self.item_vectors[batch.items]
        has = ok[group]
        out[has, 0] = np.einsum("nd,nd->n", vec[has], prof[group[has]])
        for g, q in enumerate(batch.queries):
            a, b = off[g], off[g + 1]
            if a == b:
                continue
            rec = self._session_items(q)
            if rec is not None:
                rec = rec[-self.recent.shape[1]:]
            elif q.user is not None and 0 <= q.user < len(self.recent):
                rec = self.recent[q.user]
                rec = rec[rec >= 0]
            if rec is not None and len(rec):
                sims = vec[a:b] @ self.item_vectors[rec].T
                out[a:b, 1], out[a:b, 2] = sims.max(axis=1), sims[:, -1]
            if self.config.query and q.text:
                qv = normalize(resolve_encoder(self.config.encoder).encode_queries([q.text]))[0]
                out[a:b, 3] = vec[a:b] @ qv
        return out

    def embeddings(self, batch: PairBatch) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """"item": (catalog item vectors, each pair's item); "user": (one normalised profile
        per query, zero without history; each pair's query)."""
        self._check_fitted()
        prof, _ = self._profiles(batch)
        return {"item": (self.item_vectors, batch.items), "user": (prof, batch.group)}


class KeyCounts:
    """Counts of int64 keys with vectorised lookup: a sorted array from the fit plus a dict
    of later increments (read through sorted arrays rebuilt only after a change), folded into
    the main arrays once it grows."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, np.int64)
        self.counts = np.zeros(0, np.float64)
        self.extra: dict[int, float] = {}
        self._extra_arrays: tuple[np.ndarray, np.ndarray] | None = None

    def fit(self, keys: np.ndarray) -> None:
        self.keys, c = np.unique(np.asarray(keys, np.int64), return_counts=True)
        self.counts = c.astype(np.float64)
        self.extra = {}
        self._extra_arrays = None

    def add(self, key: int, n: float = 1.0) -> None:
        self.extra[key] = self.extra.get(key, 0.0) + n
        self._extra_arrays = None
        if len(self.extra) > 4096:
            k = np.fromiter(self.extra, np.int64, len(self.extra))
            v = np.fromiter(self.extra.values(), np.float64, len(self.extra))
            allk = np.r_[self.keys, k]
            self.keys, inv = np.unique(allk, return_inverse=True)
            self.counts = np.bincount(inv, weights=np.r_[self.counts, v])
            self.extra = {}

    @staticmethod
    def _lookup(keys: np.ndarray, counts: np.ndarray, query: np.ndarray) -> np.ndarray:
        if not len(keys):
            return np.zeros(len(query))
        pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        return np.where(keys[pos] == query, counts[pos], 0.0)

    def get(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, np.int64)
        out = self._lookup(self.keys, self.counts, keys)
        if self.extra:
            arrays = self._extra_arrays
            if arrays is None:  # once per change, not per lookup
                k = np.fromiter(self.extra, np.int64, len(self.extra))
                v = np.fromiter(self.extra.values(), np.float64, len(self.extra))
                order = np.argsort(k)
                arrays = self._extra_arrays = (k[order], v[order])
            out = out + self._lookup(arrays[0], arrays[1], keys)
        return out


def categorical_attributes(dataset: Dataset) -> list[str]:
    """String item attributes shared by items (distinct values at most half the items with a
    value, at least two), leaving out identifiers, URLs and dates."""
    table = dataset.item_table
    if table is None:
        return []
    out = []
    for name, values in table.attributes.items():
        low = name.lower()
        if low.endswith("id") or "url" in low or "date" in low:
            continue
        present = [v for v in values if isinstance(v, str) and v.strip()]
        if len(present) < 0.5 * len(values) or not present:
            continue
        distinct = len(set(present))
        if 2 <= distinct <= 0.5 * len(present):
            out.append(name)
    return out


class CategoryConfig(ComponentConfig):
    """attributes: categorical item attributes to score like categories ("auto": see
    `categorical_attributes`; [] for none)."""

    attributes: list[str] | str = "auto"


class CategoryAffinity(Feature):
    """Share of the user's events on items of each of the candidate's categories (max and
    mean over its categories), and per categorical attribute (e.g. brand) the share of the
    user's events with the candidate's value. NaN for users without history."""

    name = "category"
    Config = CategoryConfig
    config: CategoryConfig

    def _reset(self, dataset: Dataset) -> None:
        table = dataset.item_table
        attrs = self.config.attributes
        if attrs == "auto":
            self.attrs = categorical_attributes(dataset)
        elif isinstance(attrs, str):
            raise ValueError(f"category.attributes must be a list of names or 'auto', got {attrs!r}")
        else:
            known = list(table.attributes) if table is not None else []
            for a in attrs:
                if a not in known:
                    raise ValueError(f"category.attributes: {a!r} is not an item attribute; known: {known}")
            self.attrs = list(attrs)
        vocab: dict[str, int] = {}
        rows, cols = [], []
        n_items = dataset.n_items
        cats = table.categories if table is not None else [[] for _ in range(n_items)]
        for i, cs in enumerate(cats):
            for c in dict.fromkeys(cs):
                rows.append(i)
                cols.append(vocab.setdefault(f"c\x1f{c}", len(vocab)))
        self.item_cats = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_items, max(len(vocab), 1)))
        # one token per (attribute, value); -1 where the item has no value
        self.item_attr = np.full((n_items, len(self.attrs)), -1, np.int64)
        for j, a in enumerate(self.attrs):
            for i, v in enumerate(table.attributes[a]):
                if isinstance(v, str) and v.strip():
                    self.item_attr[i, j] = vocab.setdefault(f"a\x1f{a}\x1f{v.strip()}", len(vocab))
        self.n_tokens = len(vocab) + 1
        self._vocab = vocab
        self.user_events = np.zeros(dataset.n_users, np.float64)
        self.counts = KeyCounts()

    def add_items(self, items: np.ndarray, dataset: Dataset) -> None:
        """Give new (or changed) items their categories and attribute values among the
        tokens known since the fit (a category no item had then counts from the next fit)."""
        table = dataset.item_table
        if table is None or not self.fitted:
            return
        vocab = self._vocab
        n = dataset.n_items
        old = self.item_cats.tolil()
        if n > old.shape[0]:
            old.resize((n, old.shape[1]))
            self.item_attr = np.r_[self.item_attr, np.full((n - len(self.item_attr), len(self.attrs)), -1, np.int64)]
        for i in np.asarray(items, np.int64).tolist():
            old.rows[i], old.data[i] = [], []
            for c in dict.fromkeys(table.categories[i]):
                tok = vocab.get(f"c\x1f{c}")
                if tok is not None:
                    old[i, tok] = 1.0
            for j, a in enumerate(self.attrs):
                v = table.attributes.get(a, [None] * n)[i]
                self.item_attr[i, j] = vocab.get(f"a\x1f{a}\x1f{v.strip()}", -1) if isinstance(v, str) else -1
        self.item_cats = old.tocsr()

    def _item_tokens(self, item: int) -> np.ndarray:
        cats = self.item_cats.indices[self.item_cats.indptr[item]:self.item_cats.indptr[item + 1]]
        attr = self.item_attr[item]
        return np.r_[cats, attr[attr >= 0]].astype(np.int64)

    def _fit_history(self, history: Interactions) -> None:
        n = len(self.user_events)
        self.user_events += np.bincount(history.user, minlength=n)[:n]
        ic = self.item_cats[history.item]
        keys = [np.repeat(history.user, np.diff(ic.indptr)) * self.n_tokens + ic.indices]
        for j in range(len(self.attrs)):
            tok = self.item_attr[history.item, j]
            ok = tok >= 0
            keys.append(history.user[ok] * self.n_tokens + tok[ok])
        self.counts.fit(np.concatenate(keys))

    def _update_one(self, event: Event) -> None:
        if event.user >= len(self.user_events):
            self.user_events = np.r_[self.user_events, np.zeros(event.user + 1 - len(self.user_events))]
        self.user_events[event.user] += 1
        if event.item >= self.item_cats.shape[0]:
            return  # an item added after fit: no categories known here
        for t in self._item_tokens(event.item):
            self.counts.add(int(event.user) * self.n_tokens + int(t))

    @property
    def columns(self) -> list[str]:
        return ["cat:max_share", "cat:mean_share"] + [f"attr:{a}:share" for a in getattr(self, "attrs", [])]

    def compute(self, batch: PairBatch) -> np.ndarray:
        self._check_fitted()
        n = len(batch)
        out = np.full((n, len(self.columns)), np.nan, np.float32)
        users, items = batch.users, batch.items
        known = (users >= 0) & (users < len(self.user_events)) & (items < self.item_cats.shape[0])
        known[known] = self.user_events[users[known]] > 0
        self._session_shares(batch, out)
        if not known.any():
            return out
        u, it = users[known], items[known]
        total = self.user_events[u]
        ic = self.item_cats[it]
        per = np.diff(ic.indptr)
        share = self.counts.get(np.repeat(u, per) * self.n_tokens + ic.indices) / np.repeat(total, per)
        has = per > 0
        mx, mean = np.full(len(u), np.nan), np.full(len(u), np.nan)
        if has.any():
            starts = ic.indptr[:-1][has]
            mx[has] = np.maximum.reduceat(share, starts)
            mean[has] = np.add.reduceat(share, starts) / per[has]
        out[known, 0], out[known, 1] = mx, mean
        for j in range(len(self.attrs)):
            tok = self.item_attr[it, j]
            val = np.where(tok >= 0, self.counts.get(u * self.n_tokens + np.maximum(tok, 0)) / total, np.nan)
            out[known, 2 + j] = val
        return out

    def _session_shares(self, batch: PairBatch, out: np.ndarray) -> None:
        """The columns of session queries, from the session's events (as `update` counts them)."""
        for g, q in enumerate(batch.queries):
            hist = session_items(q)
            a, b = batch.offsets[g], batch.offsets[g + 1]
            if hist is None or not len(hist) or a == b:
                continue
            total = float(len(hist))
            known = hist[hist < self.item_cats.shape[0]]
            toks = [self._item_tokens(int(i)) for i in known]
            cnt = np.bincount(np.concatenate(toks), minlength=self.n_tokens) if toks else np.zeros(self.n_tokens)
            items = batch.items[a:b]
            ok = items < self.item_cats.shape[0]
            it = items[ok]
            ic = self.item_cats[it]
            per = np.diff(ic.indptr)
            share = cnt[ic.indices] / total
            has = per > 0
            mx, mean = np.full(len(it), np.nan), np.full(len(it), np.nan)
            if has.any():
                starts = ic.indptr[:-1][has]
                mx[has] = np.maximum.reduceat(share, starts)
                mean[has] = np.add.reduceat(share, starts) / per[has]
            rows = np.arange(a, b)[ok]
            out[rows, 0], out[rows, 1] = mx, mean
            for j in range(len(self.attrs)):
                tok = self.item_attr[it, j]
                out[rows, 2 + j] = np.where(tok >= 0, cnt[np.maximum(tok, 0)] / total, np.nan)
