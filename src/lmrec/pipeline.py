"""`RecPipeline`: recall channels -> merge -> rank -> rerank, configured from a TOML file.

Stages, each built by name so any one can be swapped alone:

- recall: `[[channels]]` entries name a `lmrec.component` model (ease, lm-recency, popular,
  ...) with a quota; `[fallback]` names channels tried in order for users left with too few
  candidates (a new user -> popular). `lmrec.rank.recall_stage` merges the lists, keeping
  each candidate's channels and every channel's score, catalog z-score and rank.
- rank: features from `lmrec.rank.features.FEATURES` and a ranker from
  `lmrec.rank.base.RANKERS` ("lambdarank", "ctr", "none"). A learning ranker is trained on a
  held-out window of the training events (`[rank.window]`): channels and features are fitted
  on the events before it, the window's users get candidates as of their last earlier event,
  and candidates they interacted with in the window are the positives. Then channels and
  features are refitted on all the training events.
- rerank: `[[rerank.stages]]` from `lmrec.rerank.RERANKERS` (filters, MMR, category runs,
  exploration), then explanations on request.

The pipeline is a `Recommender`: `score(users)` gives each user's final list a descending
score and every other item -inf, so `lmrec eval --model pipeline --params
'{"config": "configs/default.toml"}'` evaluates it with the full-ranking protocol. Serving
calls `recommend(user, k, explain=True)` per request and `update(event)` per event.

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

import copy
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Self, overload

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lmrec.data.dataset import Dataset, Interactions
from lmrec.rank.base import RANKERS, Event, Query, RankData, Ranker
from lmrec.rank.features import FEATURES, FeatureSet, PairBatch
from lmrec.rank.history import UserHistory
from lmrec.rank.recall_stage import Channel, RecallStage
from lmrec.rank.training import WindowSpec, candidate_labels, window_folds
from lmrec.recall.base import ModelConfig, Recommender
from lmrec.rerank.base import RERANKERS, Reranker, StageContext
from lmrec.rerank.explain import Explainer
from lmrec.types import Candidates

__all__ = ["PipelineSpec", "PipelineConfig", "RecPipeline", "load_spec", "resolve_config_path"]

RANKER_KEY = "ranker"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChannelSpec(_Strict):
    """name: the channel's name in stage scores and explanations; model / params: a
    `lmrec.component` model; quota: items it lists per user; min_history: events a user needs
    for it to run (0 for popularity); weight: in the merge score; fallback_only: run only
    through the fallback chain."""

    name: str
    model: str
    params: dict[str, Any] = {}
    quota: int = Field(100, ge=1)
    min_history: int = Field(1, ge=0)
    weight: float = Field(1.0, ge=0)
    fallback_only: bool = False


class FallbackSpec(_Strict):
    chain: list[str] = []
    min_candidates: int = Field(10, ge=0)


class MergeSpec(_Strict):
    method: Literal["zscore", "rrf"] = "zscore"
    k_rrf: float = Field(60.0, gt=0)


class StageSpec(_Strict):
    """A stage by registry name and its parameters."""

    name: str
    params: dict[str, Any] = {}


DEFAULT_FEATURES = ["channels", "lm", "popularity", "recency", "user", "category", "numeric", "sequence"]


class RankSpec(_Strict):
    """ranker: a `RANKERS` name ("lambdarank", "ctr", "none"); params: parameters per ranker
    name (`[rank.params.lambdarank]`, `[rank.params.ctr]`), so switching the ranker is a
    one-word change; features: `FEATURES` names; keep: candidates passed on to re-ranking;
    window: the ranker's training window; high_value: events with at least this value count
    as "high" (ratings) for multi-task labels; batch_users: users per feature / ranker batch."""

    ranker: str = "lambdarank"
    params: dict[str, dict[str, Any]] = {}
    features: list[StageSpec] = Field(default_factory=lambda: [StageSpec(name=n) for n in DEFAULT_FEATURES])
    keep: int = Field(100, ge=1)
    window: WindowSpec = WindowSpec()
    high_value: float = 4.0
    batch_users: int = Field(256, ge=1)


class RerankSpec(_Strict):
    """stages: re-rankers in order; n: length of the final list."""

    stages: list[StageSpec] = Field(default_factory=lambda: [StageSpec(name="seen")])
    n: int = Field(50, ge=1)


class ExplainSpec(_Strict):
    history: int = Field(50, ge=1)
    max_shared: int = Field(3, ge=0)


class PipelineSpec(_Strict):
    """The whole pipeline (the TOML file's content). `encoder` is the text encoder of the LM
    features, the diversity stages and explanations unless a stage names its own."""

    encoder: str = "minilm"
    channels: list[ChannelSpec] = Field(min_length=1)
    fallback: FallbackSpec = FallbackSpec()
    merge: MergeSpec = MergeSpec()
    rank: RankSpec = RankSpec()
    rerank: RerankSpec = RerankSpec()
    explain: ExplainSpec = ExplainSpec()

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, v: str) -> str:
        from lmrec.text.registry import check_encoder_name

        return check_encoder_name(v)

    @model_validator(mode="after")
    def _check_names(self) -> PipelineSpec:
        names = [c.name for c in self.channels]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"channels: name {dup[0]!r} is used twice")
        for name in self.fallback.chain:
            if name not in names:
                raise ValueError(f"fallback.chain: {name!r} is not a channel (channels: {names})")
        from lmrec.component import get_model

        import lmrec.recall.blend  # noqa: F401  (registers the LM and blend models)
        import lmrec.recall.lm_user  # noqa: F401

        # build each stage's parameter model now: a bad key fails at load, naming its stage
        for j, c in enumerate(self.channels):
            cls = get_model(c.model)
            if isinstance(cls, type) and hasattr(cls, "Config"):
                _check_params(f"channels.{j} ({c.name})", cls.Config, c.params)
        for j, f in enumerate(self.rank.features):
            _check_params(f"rank.features.{j}", FEATURES.get(f.name).Config, f.params)
        _check_params("rank.ranker", RANKERS.get(self.rank.ranker).Config, {})
        for name, params in self.rank.params.items():
            _check_params(f"rank.params.{name}", RANKERS.get(name).Config, params)
        for j, st in enumerate(self.rerank.stages):
            _check_params(f"rerank.stages.{j}", RERANKERS.get(st.name).Config, st.params)
        return self


def _check_params(where: str, config: type[BaseModel], params: dict[str, Any]) -> None:
    try:
        config(**params)
    except ValidationError as e:
        raise ValueError(f"{where}: {e}") from None


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def resolve_config_path(path: str | Path) -> Path:
    """`path` as given when it exists (relative to the working directory), else relative to
    the source checkout (so `configs/default.toml` works from any folder of it)."""
    p = Path(path)
    if p.is_file():
        return p
    checkout = Path(__file__).resolve().parents[2] / p
    if not p.is_absolute() and checkout.is_file():
        return checkout
    raise FileNotFoundError(f"pipeline config {str(p)!r} not found in {Path.cwd()} or {checkout.parent}")


def _read_toml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A TOML config's tables; `extends = "other.toml"` (relative to the file) deep-merges
    this file over the other one."""
    if path.resolve() in seen:
        raise ValueError(f"{path}: 'extends' loops back to itself")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML: {e}") from None
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ValueError(f"{path}: 'extends' must be a file name")
    parent = path.parent / base
    if not parent.is_file():
        raise FileNotFoundError(f"{path}: extends {base!r}, which is not a file ({parent})")
    return _deep_merge(_read_toml(parent, (*seen, path.resolve())), data)


def load_spec(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
              spec: dict[str, Any] | None = None) -> PipelineSpec:
    """A validated PipelineSpec from a TOML file (or an inline `spec` dict, which wins over
    the file), with `overrides` deep-merged in (tables merge, other values replace). Errors
    name the file and the field."""
    if path is None and spec is None:
        raise ValueError("give a pipeline config file or an inline spec")
    if spec is None:
        p = resolve_config_path(path)
        data, where = _read_toml(p), str(p)
    else:
        data, where = dict(spec), "spec"
    data = _deep_merge(data, overrides or {})
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as e:
        raise ValueError(f"{where}: {e}") from None


class PipelineConfig(ModelConfig):
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
    def _new_channels(self) -> list[Channel]:
        from lmrec.component import create

        import lmrec.recall.blend  # noqa: F401  (registers the LM and blend models)
        import lmrec.recall.lm_user  # noqa: F401

        return [Channel(c.name, create(c.model, c.params), c.quota, c.min_history, c.weight, c.fallback_only)
                for c in self.spec.channels]

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
            ch.model.fit(inter, dataset)
        self.recall = RecallStage(channels, chain=self.spec.fallback.chain,
                                  min_candidates=self.spec.fallback.min_candidates,
                                  method=self.spec.merge.method, k_rrf=self.spec.merge.k_rrf)
        self.features = self._new_features().fit(inter, dataset)
        for r in self.rerankers:
            r.bind(self.ctx)
        self.explainer = Explainer(self.ctx, history=self.spec.explain.history,
                                   max_shared=self.spec.explain.max_shared)

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
                   allowed: np.ndarray | None = None) -> list[Candidates]:
        """The merged recall pools of user queries, in merge-score order."""
        self._check_ready()
        if any(q.user is None or q.user < 0 for q in queries):
            raise ValueError("RecPipeline: every query needs a user index >= 0 (query search goes through "
                             "lmrec.rank.search.SearchRanker)")
        users = np.array([q.user for q in queries], np.int64)
        excluded = []
        for q in queries:  # the filters' exclusions, pushed down so no quota is spent on them
            drop = [r.excluded(q) for r in self.rerankers if exclude_seen or r.name != "seen"]
            drop = [d for d in drop if d is not None and len(d)]
            excluded.append(np.concatenate(drop).astype(np.int64) if drop else np.zeros(0, np.int64))
        lengths = np.array([self.history.n_events(int(u)) for u in users], np.int64)
        return self.recall(users, lengths, excluded, allowed)

    def _features(self, queries: Sequence[Query], pools: Sequence[Candidates]) -> RankData:
        X, vectors = self.features.compute(PairBatch.build(queries, pools))
        return RankData(X, self.features.columns, np.array([len(p) for p in pools], np.int64), {}, vectors)

    def rank(self, queries: Sequence[Query], pools: Sequence[Candidates], keep: int | None = None) -> list[Candidates]:
        """Order each pool by the ranker and keep the best `keep` (default `rank.keep`)."""
        keep = self.spec.rank.keep if keep is None else keep
        data = self._features(queries, pools)
        scores = self.ranker.score(data)
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
            exclude_seen: bool = True, allowed: np.ndarray | None = None) -> list[Candidates]:
        """The final lists of `queries` (user requests): recall, rank, rerank, explain."""
        queries = [self._resolve(q) for q in queries]
        n = self.spec.rerank.n if n is None else n
        out: list[Candidates] = []
        step = self.spec.rank.batch_users
        for a in range(0, len(queries), step):
            qs = queries[a:a + step]
            pools = self.candidates(qs, exclude_seen=exclude_seen, allowed=allowed)
            ranked = self.rank(qs, pools, keep=max(self.spec.rank.keep, n))
            for q, c in zip(qs, ranked):
                c = self.rerank(q, c, n, exclude_seen=exclude_seen)
                if explain:
                    c.explanations = self.explainer.explain(q, c)
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
                  candidates: np.ndarray | None = None, explain: bool = False) -> Any:
        """Top-k for one user (an int: one Candidates) or several (a list), with explanations
        when `explain`. `candidates` restricts the catalog (item indices)."""
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
                         allowed=allowed)
        return lists[0] if single else lists

    def update(self, event: Event) -> None:
        """Fold one event into the history, features, online channels and re-rankers."""
        self._check_ready()
        self.history.update(event)
        self.features.update(event)
        from lmrec.recall.lm_user import LMUserRecommender

        for ch in self.recall.channels.values():
            if isinstance(ch.model, LMUserRecommender):  # channels with a real-time fold-in
                ch.model.update(event.user, event.item, event.timestamp, value=event.value)
        for r in self.rerankers:
            r.update(event)
        self.n_users = max(self.n_users, event.user + 1)

    def __repr__(self) -> str:
        src = "inline spec" if self.config.spec is not None else self.config.config
        return f"RecPipeline({src}, channels={[c.name for c in self.spec.channels]}, ranker={self.spec.rank.ranker!r})"

    def save(self, path: str | Path) -> Path:
        from lmrec.rank.persist import save_pipeline

        return save_pipeline(self, Path(path))

    @classmethod
    def load(cls, path: str | Path) -> Self:
        from lmrec.rank.persist import load_pipeline

        return load_pipeline(cls, Path(path))


def _pool_recall(data: RankData) -> float:
    """Share of window queries whose pool holds at least one of their window items."""
    hits = data.group_sums(data.labels["click"]) > 0
    return float(hits.mean()) if len(hits) else 0.0
