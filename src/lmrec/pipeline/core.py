"""`RecPipeline`: recall channels -> merge -> rank -> rerank, configured from a TOML file.

Stages, each built by name so any one can be swapped alone:

- recall: `[[channels]]` entries name a `lmrec.component` model (ease, lm-recency, popular,
  ...) with a quota; `[fallback]` names channels tried in order for users left with too few
  candidates (a new user -> popular). `lmrec.pipeline.recall` asks each channel for its top
  `quota` given the user's current history and merges the lists, keeping each candidate's
  channels and every channel's score, catalog z-score and rank.
- rank: features from `lmrec.component.FEATURES` and a ranker from `RANKERS` ("lambdarank",
  "ctr", "none"). A learning ranker is trained on a
  held-out window of the training events (`[rank.window]`): channels and features are fitted
  on the events before it, the window's users get candidates as of their last earlier event,
  and candidates they interacted with in the window are the positives. Then channels and
  features are refitted on all the training events.
- rerank: `[[rerank.stages]]` from `lmrec.component.RERANKERS` (filters, MMR, category
  runs, exploration), then explanations on request.

The pipeline is a `Recommender`: `score(users)` gives each user's final list a descending
score and every other item -inf, so `lmrec eval --model pipeline --params
'{"config": "configs/default.toml"}'` evaluates it with the full-ranking protocol. The
service (`lmrec.serving.engine`) serves the same object: `recommend(user, k, explain=True)`
per request, `update(events)` for every ingested event (history, channels' global state,
features and re-rankers follow at once) and `upsert_items(...)` for catalog changes (text-
aware channels embed a new item at once).

Example:
    >>> from lmrec.testing.toy import toy_dataset
    >>> spec = {"encoder": "fake", "channels": [{"name": "pop", "model": "popular", "quota": 20, "min_history": 0}],
    ...         "rank": {"ranker": "none", "features": [{"name": "channels"}]}}
    >>> ds = toy_dataset()
    >>> pipe = RecPipeline(spec=spec).fit(ds.interactions, ds)
    >>> rec = pipe.recommend(0, k=3, explain=True)
    >>> len(rec), rec.explanations[0]["channels"]
    (3, ['pop'])
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, overload

import numpy as np
import scipy.sparse as sp
from pydantic import model_validator

from lmrec.component import FEATURES, RANKERS, RERANKERS, ComponentConfig
from lmrec.data.dataset import Dataset, Interactions
from lmrec.pipeline.recall import Channel, RecallStage
from lmrec.pipeline.spec import load_spec
from lmrec.rank.base import RankData, Ranker
from lmrec.rank.features import FeatureSet, PairBatch
from lmrec.rank.history import UserHistory
from lmrec.rank.training import candidate_labels, window_folds
from lmrec.recall.base import Recommender
from lmrec.rerank.base import Reranker, StageContext
from lmrec.rerank.explain import Explainer
from lmrec.types import SESSION_KEY, Candidates, Event, EventKind, HistoryBatch, Query, session_events

__all__ = ["PipelineConfig", "RecPipeline"]

RANKER_KEY = "ranker"


class PipelineConfig(ComponentConfig):
    """config: path of a TOML pipeline config (see `resolve_config_path`); overrides:
    deep-merged into it (what a benchmark row changes); spec: an inline config used instead
    of the file."""

    config: str | None = "configs/default.toml"
    overrides: dict[str, Any] = {}
    spec: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _valid(self) -> PipelineConfig:
        load_spec(self.config, self.overrides, self.spec)  # fail at construction, naming the field
        return self


class RecPipeline(Recommender):
    """recall -> merge -> rank -> rerank (see the module docstring)."""

    name = "pipeline"
    Config = PipelineConfig
    config: PipelineConfig

    def __init__(self, config: PipelineConfig | str | Path | None = None, **params: Any) -> None:
        if isinstance(config, (str, Path)):  # RecPipeline("configs/x.toml") / create("pipeline", {"config": ...})
            params["config"], config = str(config), None
        if config is None:  # the base class takes the file path for a config object
            config = PipelineConfig(**params)
        elif params:
            raise TypeError("give either a config object or keyword parameters, not both")
        super().__init__(config)
        self.spec = load_spec(self.config.config, self.config.overrides, self.config.spec)
        self.fit_info: dict[str, Any] = {}
        self.progress: Callable[[str], None] | None = None  # told the stage being fitted (CLI status)
        self.keep_train_data = False  # keep the ranker's training RankData in `train_data` (benchmarks)
        self.train_data: RankData | None = None

    # --- building -------------------------------------------------------------------------
    def _new_channels(self, models: dict[str, Recommender] | None = None) -> list[Channel]:
        """Channels of the spec over new models (or the given fitted ones, by name)."""
        from lmrec.component import MODELS

        out = []
        for c in self.spec.channels:
            if models is not None:
                model = models[c.name]
            else:
                params = dict(c.params)
                cfg = MODELS.config_class(c.model)
                if cfg is not None and "encoder" in cfg.model_fields:  # text channels use the spec's encoder
                    params.setdefault("encoder", self.spec.encoder)
                model = MODELS.create(c.model, params)
            out.append(Channel(c.name, model, c.quota, c.min_history, c.weight, c.fallback_only, c.index,
                               dict(c.index_params)))
        return out

    def _new_features(self) -> FeatureSet:
        feats = []
        for f in self.spec.rank.features:
            params = dict(f.params)
            if f.name == "channels":
                params.setdefault("channels", [c.name for c in self.spec.channels])
            if f.name == "lm":
                params.setdefault("encoder", self.spec.encoder)
            feats.append(FEATURES.create(f.name, params))
        return FeatureSet(feats)

    def _new_rerankers(self) -> list[Reranker]:
        return [RERANKERS.create(s.name, s.params) for s in self.spec.rerank.stages]

    @property
    def learns(self) -> bool:
        """Whether the ranker needs labels (anything but "none")."""
        return self.spec.rank.ranker != "none"

    # --- fitting --------------------------------------------------------------------------
    def _fit(self, matrix: sp.csr_matrix, train: Interactions, dataset: Dataset) -> None:
        self.dataset = dataset
        self.ranker: Ranker = RANKERS.create(self.spec.rank.ranker, self.spec.rank.params.get(self.spec.rank.ranker))
        self.rerankers = self._new_rerankers()
        self.fit_info = {}
        if self.learns:
            t0 = time.perf_counter()
            # no automatic switch on data without timestamps: Amazon's sequences have no clock but a
            # real order ("user-last" is right there), ML-1M's rows have neither (its config says "random")
            spec = self.spec.rank.window
            self.fit_info["window_strategy"] = spec.strategy
            folds = window_folds(train, spec)
            if not folds:
                raise ValueError("rank.window: no user has enough events for a ranker training window "
                                 f"(min_history={self.spec.rank.window.min_history}); lower it or use ranker 'none'")
            parts = []
            for j, (hist, window) in enumerate(folds):  # channels and features as of each window's start
                self._say(f"ranker window {j + 1}/{len(folds)}: channels and features on {len(hist)} events")
                self._fit_stages(hist, dataset)
                self._say(f"ranker window {j + 1}/{len(folds)}: candidates for {len(np.unique(window.user))} users")
                parts.append(self.rank_data(np.unique(window.user), window))
            data = RankData.concat(parts)
            self._say(f"{self.spec.rank.ranker} ranker on {len(data)} candidate rows")
            self.ranker.fit(data)
            self.train_data = data if self.keep_train_data else None
            self.fit_info.update({"window_events": int(sum(len(w) for _, w in folds)), "folds": len(folds),
                                  "train_groups_all": int(len(data.groups)), "train_rows": len(data),
                                  "train_positives": int(data.labels["click"].sum()),
                                  "window_recall": round(_pool_recall(data), 4),
                                  "ranker_fit_s": round(time.perf_counter() - t0, 2),
                                  **getattr(self.ranker, "info", {})})
        self._say(f"channels and features on all {len(train)} events")
        self._fit_stages(train, dataset)
        if not self.learns:
            self.ranker.fit(RankData(np.zeros((0, len(self.features.columns))), self.features.columns,
                                     np.zeros(0, np.int64)))

    def _say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)

    def _fit_stages(self, inter: Interactions, dataset: Dataset) -> None:
        """Fit channels, features and history on `inter`; bind the re-rankers."""
        self.history = UserHistory().fit(inter, dataset.n_users)
        self.ctx = StageContext(dataset, self.history, encoder=self.spec.encoder)
        channels = self._new_channels()
        for ch in channels:
            self._say(f"channel {ch.name}: fitting {ch.model.name} on {len(inter)} events")
            ch.model.fit(inter, dataset)
            ch.prepare()
        self.recall = RecallStage(channels, chain=self.spec.fallback.chain,
                                  min_candidates=self.spec.fallback.min_candidates,
                                  method=self.spec.merge.method, k_rrf=self.spec.merge.k_rrf)
        self.features = self._new_features().fit(inter, dataset)
        for r in self.rerankers:
            r.bind(self.ctx)
        self.explainer = Explainer(self.ctx, history=self.spec.explain.history,
                                   max_shared=self.spec.explain.max_shared, graph=self.knowledge_graph())

    def knowledge_graph(self) -> Any:
        """The knowledge graph of a KG channel or feature (`lmrec.kg`), for explanation
        paths; None when the pipeline has none."""
        from lmrec.kg.graph import KnowledgeGraph

        holders = [ch.model for ch in self.recall.channels.values()] + list(self.features.features)
        return next((h.graph for h in holders if isinstance(getattr(h, "graph", None), KnowledgeGraph)), None)

    # --- the stages -----------------------------------------------------------------------
    def _check_ready(self) -> None:
        if not hasattr(self, "recall"):
            raise RuntimeError("RecPipeline is not fitted; call fit() first")

    def _resolve(self, q: Query) -> Query:
        """Fill the request time with the user's last event (what offline replays use)."""
        if q.time is not None:
            return q
        t = self.history.last_time(q.user) if q.user is not None else None
        if t is None:
            t = int(self.history.last_times().max()) if self.history.n_users else None
        return Query(q.user, q.text, t, q.context)

    def candidates(self, queries: Sequence[Query], *, exclude_seen: bool = True,
                   allowed: np.ndarray | None = None, timings: dict[str, float] | None = None) -> list[Candidates]:
        """The merged recall pools of user queries, in merge-score order."""
        self._check_ready()
        if any((q.user is None or q.user < 0) and session_events(q) is None for q in queries):
            raise ValueError("RecPipeline: every query needs a user index >= 0 or a session history "
                             "(query search goes through lmrec.rank.search.SearchRanker)")
        users = np.array([-1 if session_events(q) is not None else q.user for q in queries], np.int64)
        excluded = []
        for q in queries:  # the filters' exclusions, pushed down so no quota is spent on them
            drop = [r.excluded(q) for r in self.rerankers if exclude_seen or r.name != "seen"]
            drop = [d for d in drop if d is not None and len(d)]
            excluded.append(np.concatenate(drop).astype(np.int64) if drop else np.zeros(0, np.int64))
        batch = HistoryBatch.of(users, self.history)  # a session's row (user -1) is its own history
        for r, q in enumerate(queries):
            if (ev := session_events(q)) is not None:
                batch.items[r], batch.times[r], batch.values[r] = ev
        return self.recall(batch, excluded, allowed, unavailable=self.ctx.unavailable(), timings=timings)

    def _features(self, queries: Sequence[Query], pools: Sequence[Candidates]) -> RankData:
        X, vectors = self.features.compute(PairBatch.build(queries, pools))
        return RankData(X, self.features.columns, np.array([len(p) for p in pools], np.int64), {}, vectors)

    def rank(self, queries: Sequence[Query], pools: Sequence[Candidates], keep: int | None = None,
             timings: dict[str, float] | None = None) -> list[Candidates]:
        """Order each pool by the ranker and keep the best `keep` (default `rank.keep`)."""
        keep = self.spec.rank.keep if keep is None else keep
        t0 = time.perf_counter()
        data = self._features(queries, pools)
        t1 = _lap(timings, "features", t0)
        scores = self.ranker.score(data)
        _lap(timings, "ranker", t1)
        out, off = [], data.offsets
        for j, pool in enumerate(pools):
            s = scores[off[j]:off[j + 1]]
            order = np.lexsort((np.arange(len(s)), -s))[:keep]
            c = pool.take(order, scores=s[order])
            c.stage_scores[RANKER_KEY] = c.scores.copy()
            out.append(c)
        return out

    def rerank(self, query: Query, candidates: Candidates, n: int, *, exclude_seen: bool = True) -> Candidates:
        for stage in self.rerankers:
            if stage.name == "seen" and not exclude_seen:
                continue
            candidates = stage(query, candidates, n)
        return candidates.top(n)

    def run(self, queries: Sequence[Query], n: int | None = None, *, explain: bool = False,
            exclude_seen: bool = True, allowed: np.ndarray | None = None,
            timings: dict[str, float] | None = None) -> list[Candidates]:
        """The final lists of `queries` (user requests): recall, rank, rerank, explain.
        `timings`, when a dict, receives each stage's wall time in milliseconds."""
        queries = [self._resolve(q) for q in queries]
        n = self.spec.rerank.n if n is None else n
        out: list[Candidates] = []
        step = self.spec.rank.batch_users
        for a in range(0, len(queries), step):
            qs = queries[a:a + step]
            pools = self.candidates(qs, exclude_seen=exclude_seen, allowed=allowed, timings=timings)
            ranked = self.rank(qs, pools, keep=max(self.spec.rank.keep, n), timings=timings)
            for q, c in zip(qs, ranked):
                t0 = time.perf_counter()
                c = self.rerank(q, c, n, exclude_seen=exclude_seen)
                t1 = _lap(timings, "rerank", t0)
                if explain:
                    c.explanations = self.explainer.explain(q, c)
                    _lap(timings, "explain", t1)
                out.append(c)
        return out

    def rank_data(self, users: np.ndarray, truth: Interactions) -> RankData:
        """Features and labels ("click", "high", "purchase") of every user's candidate pool, with
        `truth` as the positives: the ranker's training set (on the window) or test set."""
        users = np.unique(np.asarray(users, np.int64))
        parts = []
        step = self.spec.rank.batch_users
        for a in range(0, len(users), step):
            us = users[a:a + step]
            qs = [self._resolve(Query(user=int(u))) for u in us]
            pools = self.candidates(qs)
            data = self._features(qs, pools)
            data.labels = candidate_labels(us, pools, truth, high_value=self.spec.rank.high_value)
            parts.append(data)
        return RankData.concat(parts)

    # --- the Recommender interface ------------------------------------------------------
    def _score(self, users: np.ndarray) -> np.ndarray:
        lists = self.run([Query(user=int(u)) for u in users])
        out = np.full((len(users), self.n_items), -np.inf, np.float32)
        for r, c in enumerate(lists):
            out[r, c.items] = np.arange(len(c), 0, -1, dtype=np.float32)  # list order as descending scores
        return out

    @overload
    def recommend(self, users: int, k: int = 10, *, exclude_seen: bool = True,
                  candidates: np.ndarray | None = None, explain: bool = False) -> Candidates: ...

    @overload
    def recommend(self, users: Sequence[int] | np.ndarray, k: int = 10, *, exclude_seen: bool = True,
                  candidates: np.ndarray | None = None, explain: bool = False) -> list[Candidates]: ...

    def recommend(self, users: Any, k: int = 10, *, exclude_seen: bool = True,
                  candidates: np.ndarray | None = None, explain: bool = False,
                  timings: dict[str, float] | None = None) -> Any:
        """Top-k for one user (an int: one Candidates) or several (a list), with explanations
        when `explain`. `candidates` restricts the catalog (item indices). A user index beyond
        the known users is a user without history (the fallback channels serve them)."""
        self._check_ready()
        single = np.ndim(users) == 0
        us = np.atleast_1d(np.asarray(users, np.int64))
        if len(us) and (us.min() < 0):
            raise IndexError("user index must be >= 0")
        allowed = None
        if candidates is not None:
            allowed = np.zeros(self.dataset.n_items, bool)
            allowed[np.asarray(candidates, np.int64)] = True
        lists = self.run([Query(user=int(u)) for u in us], n=k, explain=explain, exclude_seen=exclude_seen,
                         allowed=allowed, timings=timings)
        return lists[0] if single else lists

    def session_query(self, items: Sequence[int] | np.ndarray, *, times: Sequence[int] | np.ndarray | None = None,
                      kinds: Sequence[str | int | EventKind] | None = None,
                      values: Sequence[float] | np.ndarray | None = None,
                      keep_kinds: Collection[str | int | EventKind] | None = None,
                      context: Mapping[str, Any] | None = None) -> Query:
        """The query of an anonymous session: its events (item indices, optionally their times,
        kinds and values) as the history the stages read instead of a stored user's. Events are
        put in (time, item) order; without `times` they are one time unit apart in the given
        order, ending at the pipeline's clock (its latest event). With `keep_kinds`, events of
        other kinds are left out (the service passes the kinds it learns from, so a session's
        history is what a stored user's would be). The request time is the session's last event,
        as for a stored user. ValueError names the bad argument and position."""
        self._check_ready()
        it = np.asarray(items).reshape(-1)
        if len(it) and it.dtype.kind not in "iu":
            raise ValueError("items must be item indices (integers)")
        it = it.astype(np.int64)
        n = len(it)
        bad = np.flatnonzero((it < 0) | (it >= self.n_items))
        if len(bad):
            raise ValueError(f"items[{int(bad[0])}]: {int(it[bad[0]])} is not an item index (0..{self.n_items - 1})")
        for name, col in (("times", times), ("kinds", kinds), ("values", values)):
            if col is not None and len(col) != n:
                raise ValueError(f"{name}: {len(col)} entries for {n} items")
        if times is None:
            clock = int(self.history.last_times().max()) if self.history.n_users else 0
            ts = clock - (n - 1) + np.arange(n, dtype=np.int64)
        else:
            ts = np.asarray(times, dtype=np.int64).reshape(-1)
        vals = np.ones(n, np.float32) if values is None else np.asarray(values, np.float32).reshape(-1)
        if not np.all(np.isfinite(vals)):
            raise ValueError(f"values[{int(np.flatnonzero(~np.isfinite(vals))[0])}] must be a finite number")
        keep = np.ones(n, bool)
        if kinds is not None:
            parsed = []
            for j, kd in enumerate(kinds):
                try:
                    parsed.append(EventKind.parse(kd))
                except ValueError as exc:
                    raise ValueError(f"kinds[{j}]: {exc}") from None
            if keep_kinds is not None:
                wanted = {EventKind.parse(kd) for kd in keep_kinds}
                keep = np.array([kd in wanted for kd in parsed], bool)
        it, ts, vals = it[keep], ts[keep], vals[keep]
        order = np.lexsort((it, ts))
        it, ts, vals = it[order], ts[order], vals[order]
        t = int(ts[-1]) if len(ts) else (int(self.history.last_times().max()) if self.history.n_users else None)
        return Query(None, None, t, {**(context or {}), SESSION_KEY: (it, ts, vals)})

    def recommend_for_history(self, items: Sequence[int] | np.ndarray, k: int = 10, *,
                              kinds: Sequence[str | int | EventKind] | None = None,
                              times: Sequence[int] | np.ndarray | None = None,
                              values: Sequence[float] | np.ndarray | None = None, explain: bool = False,
                              exclude_seen: bool = True, candidates: np.ndarray | None = None,
                              keep_kinds: Collection[str | int | EventKind] | None = None,
                              timings: dict[str, float] | None = None) -> Candidates:
        """Top-k for an anonymous history (a session) through the same stages as `recommend`:
        the channels read the history as a row of user -1, the seen filter, re-rankers and
        explanations read it from the query, and nothing stored changes (history, channels',
        features' and re-rankers' state). For history-based channels the list equals that of a
        stored user with the same history. Ranker features keyed by a stored user compute
        their values from the session (`user`, `lm`, `category`, `numeric`, `sequence`) or
        give NaN as for a user without history (`kg`, `demographic`; see docs/serving.md).
        See `session_query` for the arguments."""
        q = self.session_query(items, times=times, kinds=kinds, values=values, keep_kinds=keep_kinds)
        allowed = None
        if candidates is not None:
            allowed = np.zeros(self.dataset.n_items, bool)
            allowed[np.asarray(candidates, np.int64)] = True
        return self.run([q], n=k, explain=explain, exclude_seen=exclude_seen, allowed=allowed, timings=timings)[0]

    def update(self, events: Sequence[Event]) -> None:
        """Fold new events (in arrival order) into every stage: the shared user history (what
        channels, filters and explanations read per request), the channels' and features'
        global state (popularity, transitions, ...) and the re-rankers' feedback."""
        self._check_ready()
        events = list(events)
        if not events:
            return
        self.history.update(events)
        for ch in self.recall.channels.values():
            ch.model.update(events)
        self.features.update(events)
        for r in self.rerankers:
            r.update(events)
        self.n_users = max(self.n_users, max(e.user for e in events) + 1)

    def forget_user(self, user: int) -> dict[str, Any]:
        """Erase user index `user` from the served state: their events leave the shared history
        (so every history-based channel, filter and explanation sees an empty user) and the
        pipeline's copy of the training events and user attributes, and every stage is asked to
        take the events back out of its global state (`Component.forget`). Returns the number of
        events erased and which stages un-counted them (`recounted`) or kept them until the next
        fit (`kept`: conservatively every stage that did not un-count them). The user id itself is unmapped by the caller (`IdMap.forget`)."""
        self._check_ready()
        items, ts, vals = self.history.events(user)
        events = [Event(int(user), int(i), int(t), EventKind.VIEW, float(v))
                  for i, t, v in zip(items.tolist(), ts.tolist(), vals.tolist())]
        recounted, kept = [], []
        stages = [(f"channel:{name}", ch.model) for name, ch in self.recall.channels.items()]
        stages += [(f"feature:{f.name}", f) for f in self.features.features]
        stages += [(f"rerank:{r.name}", r) for r in self.rerankers]
        for name, stage in stages:
            (recounted if stage.forget(events) else kept).append(name)
        n = self.history.forget(int(user))
        ds = self.dataset
        inter = ds.interactions
        if len(inter) and bool((inter.user == user).any()):
            ds.interactions = inter.select(inter.user != user)
        for values in ds.user_attributes.values():
            if 0 <= user < len(values):
                values[user] = None
        return {"events": n, "recounted": recounted, "kept": kept}

    def upsert_items(self, ids: Sequence[str], rows: Sequence[dict[str, Any]]) -> np.ndarray:
        """Add items to the catalog (or change them): `rows[j]` holds item `ids[j]`'s fields
        (title, categories, text fields by name, attributes by name, created_at, available).
        Every stage is told (`add_items`), so a new item is recommendable from its text at
        once by the text-aware channels. Returns the items' indices."""
        self._check_ready()
        from lmrec.data.dataset import upsert_item_rows

        items = upsert_item_rows(self.dataset, ids, rows)
        self.n_items = self.dataset.n_items
        self.add_items(items, self.dataset)
        return items

    def remove_items(self, ids: Sequence[str]) -> np.ndarray:
        """Items deleted from the catalog: each known one becomes what a pipeline fitted or
        caught up on the catalog after the deletion holds for an item its events still name
        (`lmrec.serving.versions.store_dataset`, `fold_events`): unavailable and without content
        (no title, categories, text, attributes or creation time). So every stage sees the same
        item whether it learned of the deletion at once or after a restart: a user's profile
        over their history reads the same (blank) vector for it, and it counts in no channel's
        catalog moments (`RecallStage`). Unknown ids and items already in that state are left
        alone. Returns the indices of the items changed."""
        self._check_ready()
        t = self.dataset.item_table
        known = [(item_id, i) for item_id in ids if (i := self.dataset.items.get(item_id)) >= 0]
        if t is not None:
            known = [(item_id, i) for item_id, i in known if i >= len(t.title) or not _is_blank(t, i)]
        if not known:
            return np.zeros(0, np.int64)
        row: dict[str, Any] = {"title": "", "categories": [], "created_at": -1, "available": False,
                               "text": {}, "attributes": {}}
        if t is not None:
            row["text"] = dict.fromkeys(t.text, "")
            row["attributes"] = dict.fromkeys(t.attributes)
        return self.upsert_items([item_id for item_id, _ in known], [row] * len(known))

    def add_items(self, items: np.ndarray, dataset: Dataset) -> None:
        """Items at `items` are new or changed in `dataset` (the pipeline's own): tell every stage."""
        self._check_ready()
        items = np.asarray(items, np.int64)
        self.n_items = dataset.n_items
        self.ctx.add_items(items)
        for ch in self.recall.channels.values():
            ch.model.add_items(items, dataset)
        self.features.add_items(items, dataset)
        for r in self.rerankers:
            r.add_items(items, dataset)

    def __repr__(self) -> str:
        src = "inline spec" if self.config.spec is not None else self.config.config
        return f"RecPipeline({src}, channels={[c.name for c in self.spec.channels]}, ranker={self.spec.rank.ranker!r})"

    def save(self, path: str | Path) -> Path:
        from lmrec.pipeline.persist import save_pipeline

        return save_pipeline(self, Path(path))

    @classmethod
    def load(cls, path: str | Path) -> Self:
        from lmrec.pipeline.persist import load_pipeline

        return load_pipeline(cls, Path(path))


def _lap(timings: dict[str, float] | None, key: str, t0: float) -> float:
    now = time.perf_counter()
    if timings is not None:
        timings[key] = timings.get(key, 0.0) + (now - t0) * 1000.0
    return now


def _pool_recall(data: RankData) -> float:
    """Share of window queries whose pool holds at least one of their window items."""
    hits = data.group_sums(data.labels["click"]) > 0
    return float(hits.mean()) if len(hits) else 0.0


def _is_blank(table: Any, i: int) -> bool:
    """Whether item `i` of an item table is unavailable and without content (a deleted item)."""
    return (not bool(table.available[i]) and not table.title[i] and not list(table.categories[i])
            and int(table.created_at[i]) == -1 and all(not col[i] for col in table.text.values())
            and all(col[i] is None for col in table.attributes.values()))
