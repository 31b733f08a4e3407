"""The full-ranking evaluation protocol every figure of the project is reported with.

For each evaluated user the scorer ranks the whole catalog (never sampled negatives), items
the user already saw are removed, and the top-K list is compared with the user's held-out
items. Stage "valid" masks train items and scores `split.valid`; stage "test" masks train and
valid items and scores `split.test`. The model must already be fitted on the matching data
(train for "valid", train + valid for "test").

Example:
    >>> from lmrec.data.splits import temporal_leave_one_out
    >>> from lmrec.recall.popular import MostPopular
    >>> from lmrec.testing.toy import toy_dataset
    >>> split = temporal_leave_one_out(toy_dataset())
    >>> model = MostPopular().fit(split.train_valid, split.dataset)
    >>> res = evaluate(model, split, stage="test")
    >>> list(res.metrics)[:4]
    ['HR@10', 'HR@20', 'NDCG@10', 'NDCG@20']
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np
import scipy.sparse as sp

from lmrec.data.dataset import Dataset
from lmrec.data.splits import Split
from lmrec.eval import fairness as F
from lmrec.eval import metrics as M
from lmrec.types import topk_indices

__all__ = ["Scorer", "EvalResult", "evaluate", "evaluate_scores"]

#: Metrics that get a `{metric}_se` column in result rows.
SE_METRICS = ("NDCG", "HR")


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores the whole catalog: `score(users) -> (len(users), n_items)`."""

    def score(self, users: np.ndarray) -> np.ndarray: ...


class _FnScorer:
    def __init__(self, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        self.score = fn


@dataclass
class EvalResult:
    """Metrics of one evaluation run.

    `metrics` holds means over evaluated users (and catalog-level values such as coverage,
    exposure Gini and long-tail share), `per_user` one value per evaluated user for each
    per-user metric, aligned with `users` (user indices). `groups` holds NDCG and HR at the
    headline cut-off per user group: {"activity": [{"group": "d1", "users": 95, "NDCG@10": ...},
    ...], "gender": ..., "age": ...} (see `lmrec.eval.fairness`). `recs` / `scores` are each user's top max(ks) items and their scores
    (item -1 / score -inf pad short lists), kept when `keep_recs=True`.
    """

    metrics: dict[str, float]
    per_user: dict[str, np.ndarray]
    users: np.ndarray
    recs: np.ndarray | None = None
    scores: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    groups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in self.metrics.items() if "@10" in k)
        return f"EvalResult(users={len(self.users)}, {shown})"

    def se(self, name: str) -> float:
        """Standard error of the mean of a per-user metric across users."""
        if name not in self.per_user:
            kind = "catalog-level" if name in self.metrics else "unknown"
            raise KeyError(f"{name!r} is {kind}: standard errors exist for {sorted(self.per_user)}")
        v = self.per_user[name]
        return float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")

    def row(self, **extra: Any) -> dict[str, Any]:
        """One result row in the benchmark format: `extra` (dataset, split, model, params, fit_s,
        ...) plus every metric and `{metric}_se` for NDCG and HR at the headline cut-off."""
        ks = self.info.get("ks", [])
        head = 10 if 10 in ks else (min(ks) if ks else 10)
        front = ("dataset", "split", "model", "params")
        row: dict[str, Any] = {k: extra[k] for k in front if k in extra}
        row.update({k: round(float(v), 6) for k, v in self.metrics.items()})
        for m in SE_METRICS:
            name = f"{m}@{head}"
            if name in self.per_user:
                row[f"{name}_se"] = round(self.se(name), 6)
        row["users"] = len(self.users)
        if self.groups:
            row["groups"] = self.groups
        row.update({k: v for k, v in extra.items() if k not in front})
        return row

    def save_recs(self, path: str | Path, dataset: Dataset, k: int | None = None) -> Path:
        """Write each evaluated user's top-k list as JSON lines with original ids:
        {"user": id, "items": [ids], "scores": [floats]}; for "history -> next item" rows
        {"session": file line, "items": [ids]}."""
        if self.recs is None:
            raise ValueError("no lists kept: evaluate with keep_recs=True to save them")
        k = self.recs.shape[1] if k is None else min(int(k), self.recs.shape[1])
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        sessions = self.info.get("unit") == "session"
        keys = self.info["session_ids"] if sessions else dataset.users.to_ids(self.users)
        with path.open("w", encoding="utf-8") as f:
            for j, (key, items) in enumerate(zip(keys, self.recs[:, :k])):
                keep = items >= 0
                rec: dict[str, Any] = {"session" if sessions else "user": key,
                                       "items": dataset.items.to_ids(items[keep])}
                if self.scores is not None:
                    rec["scores"] = [round(float(s), 6) for s in self.scores[j, :k][keep]]
                f.write(json.dumps(rec) + "\n")
        return path


def _stage_data(split: Split, stage: str) -> tuple[Any, Any, np.ndarray | None]:
    """(seen interactions, truth interactions, candidate items) of a stage."""
    if stage == "valid":
        return split.train, split.valid, split.info.get("valid_candidates")
    if stage == "test":
        return split.train_valid, split.test, split.candidates
    raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")


def _check_fitted_data(model: Any, seen: sp.csr_matrix, truth: sp.csr_matrix, stage: str) -> None:
    """Catch a model fitted on the wrong data, when it exposes its training matrix."""
    m = getattr(model, "matrix", None)
    if not sp.issparse(m) or m.shape != seen.shape:
        return
    m = sp.csr_matrix(m)
    if truth.nnz and m.multiply(truth).nnz:
        raise ValueError(f"the model was fitted on data that contains the {stage} interactions "
                         f"(fit on train for stage 'valid', on train + valid for stage 'test')")
    if (m != 0).sum() != seen.nnz:
        warnings.warn(f"the model's training matrix has {(m != 0).sum()} entries, the {stage} stage "
                      f"expects {seen.nnz}: was it fitted on the right part of the split?", stacklevel=3)


def evaluate(
    model: Scorer | Callable[[np.ndarray], np.ndarray],
    split: Split,
    *,
    stage: str = "test",
    ks: Sequence[int] = (10, 20),
    batch_size: int = 256,
    item_vectors: np.ndarray | None = None,
    item_categories: Sequence[Sequence[str]] | sp.spmatrix | None = None,
    progress: bool = False,
    keep_recs: bool = True,
    tie_break: str | None = None,
    seed: int = 0,
) -> EvalResult:
    """Evaluate a fitted scorer on one stage of `split` with full ranking.

    `model` is a Recommender or anything with `score(users)` (or a plain function of users)
    returning (len(users), n_items) scores. Items seen in train (and valid, at test time) are
    masked; candidate restrictions of the split apply. Truth is the stage's de-duplicated
    items per user, minus masked and non-candidate items; users left without truth are not
    evaluated. Metrics: HR, NDCG, MRR, Recall, Precision, coverage, novelty, exposure Gini
    (`gini@k`) and long-tail share (`longtail@k`) at each k, and ILD when `item_vectors` or
    `item_categories` is given; NDCG and HR per user group (activity deciles, and gender / age
    when the data set has those user attributes) in `EvalResult.groups`. The popular head is
    fixed by the stage's seen data (see `lmrec.eval.fairness`).

    `tie_break`: "index" (equal scores go to the lower item index) or "random" (a seeded
    random order of items, so a model that cannot tell items apart, such as popularity on
    never-seen items, gets chance-level results instead of whatever the id order gives).
    Default: the split's `info["tie_break"]`, else "index".
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] <= 0:
        raise ValueError(f"ks must hold positive cut-offs, got {ks}")
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    scorer = model if hasattr(model, "score") else _FnScorer(model)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    ds = split.dataset
    n_users, n_items = ds.n_users, ds.n_items
    seen_inter, truth_inter, candidates = _stage_data(split, stage)
    seen = seen_inter.to_csr(n_users, n_items)
    truth = truth_inter.to_csr(n_users, n_items)  # binary: de-duplicates repeated events
    n_truth_raw = truth.nnz
    n_stage_users = int((np.diff(truth.indptr) > 0).sum())

    if candidates is not None:
        cand = np.unique(np.asarray(candidates, dtype=np.int64))
        allowed = np.zeros(n_items, dtype=bool)
        allowed[cand] = True
        truth = truth.multiply(allowed[None, :].astype(np.float32)).tocsr()
        truth.eliminate_zeros()
    else:
        cand = None
    n_outside = n_truth_raw - truth.nnz
    # an item the user already saw is masked, so it can never be recommended: drop it from truth
    # rather than count a guaranteed miss, and report how often that happened
    in_seen = truth.multiply(seen)
    n_seen_dropped = int(in_seen.nnz)
    truth = (truth - in_seen).tocsr()
    truth.eliminate_zeros()
    truth.sort_indices()
    _check_fitted_data(scorer, seen, truth, stage)

    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    kmax = ks[-1]
    tie_break = tie_break or split.info.get("tie_break", "index")
    if tie_break == "random":
        # rank the columns in a seeded random order: ties then fall to a random item
        cols = np.random.default_rng(seed).permutation(cand if cand is not None else np.arange(n_items))
    elif tie_break == "index":
        cols = cand
    else:
        raise ValueError(f"tie_break must be 'index' or 'random', got {tie_break!r}")
    n_rankable = n_items if cand is None else len(cand)
    self_info = M.self_information(seen)
    cats = None
    if item_vectors is None and item_categories is not None:
        cats = item_categories if sp.issparse(item_categories) else M.category_matrix(item_categories)
    recs = np.full((len(users), kmax), -1, dtype=np.int64)
    rec_scores = np.full((len(users), kmax), -np.inf, dtype=np.float32)
    order = ["HR", "NDCG", "MRR", "Recall", "Precision", "novelty"]
    if item_vectors is not None or cats is not None:
        order.insert(5, "ILD")
    names = [f"{m}@{k}" for m in order for k in ks]
    per_user: dict[str, list[np.ndarray]] = {n: [np.zeros(0)] for n in names}

    batches = [users[i:i + batch_size] for i in range(0, len(users), batch_size)]
    bar = _progress_bar(len(batches), f"evaluate ({stage})") if progress else None
    try:
        offset = 0
        for batch in batches:
            r, s = _rank_batch(scorer, batch, seen, cols, n_items, kmax)
            recs[offset:offset + len(batch)] = r
            rec_scores[offset:offset + len(batch)] = s
            values = M.ranking_metrics(r, truth[batch], ks)
            for k in ks:
                values[f"novelty@{k}"] = M.novelty(r, self_info, k)
                if item_vectors is not None or cats is not None:
                    values[f"ILD@{k}"] = M.intra_list_diversity(r, k, item_vectors=item_vectors,
                                                                item_categories=cats)
            for name, v in values.items():
                per_user[name].append(v)
            offset += len(batch)
            if bar is not None:
                bar[0].advance(bar[1])
    finally:
        if bar is not None:
            bar[0].stop()

    pu = {n: np.concatenate(per_user[n]) for n in names}
    means = {n: float(v.mean()) if len(v) else float("nan") for n, v in pu.items()}
    popularity = F.item_popularity(seen, n_items)
    head = F.head_items(popularity)
    for k in ks:
        means[f"coverage@{k}"] = M.coverage(recs, n_rankable, k) if len(users) and n_rankable else 0.0
        means[f"gini@{k}"] = F.exposure_gini(recs, cand if cand is not None else n_items, k) \
            if len(users) and n_rankable else float("nan")
        means[f"longtail@{k}"] = F.long_tail_share(recs, head, k) if len(users) else float("nan")
    head_k = 10 if 10 in ks else ks[0]
    groups = {}
    if len(users):
        activity = np.diff(seen.indptr)[users]
        by = F.user_groups(users, activity, ds.user_attributes)
        groups = F.group_metrics(pu, by, [f"NDCG@{head_k}", f"HR@{head_k}"])
    info = {
        "stage": stage, "ks": ks, "users_evaluated": int(len(users)),
        "users_with_stage_events": n_stage_users,
        "truth_items": int(truth.nnz), "truth_dropped_seen": n_seen_dropped,
        "truth_dropped_not_candidate": int(n_outside), "rankable_items": int(n_rankable),
        "head_items": int(head.sum()),
        "eval_s": round(time.perf_counter() - t0, 3),
    }
    if not len(users):
        warnings.warn(f"no user has {stage} items left to evaluate", stacklevel=2)
    return EvalResult(metrics=means, per_user=pu, users=users, recs=recs if keep_recs else None,
                      scores=rec_scores if keep_recs else None, info=info, groups=groups)


def evaluate_scores(score_fn: Callable[[np.ndarray], np.ndarray], split: Split, **kwargs: Any) -> EvalResult:
    """`evaluate` for a plain scoring function `score_fn(users) -> (len(users), n_items)`."""
    return evaluate(_FnScorer(score_fn), split, **kwargs)


def _rank_batch(scorer: Any, batch: np.ndarray, seen: sp.csr_matrix, cand: np.ndarray | None,
                n_items: int, kmax: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-kmax items (padded with -1) and their scores for a batch of users, seen items masked."""
    raw = scorer.score(batch)
    if np.shape(raw) != (len(batch), n_items):
        raise ValueError(f"{type(scorer).__name__}.score returned shape {np.shape(raw)}, "
                         f"expected {(len(batch), n_items)}")
    # a copy: masking must never write into an array the scorer may keep (a cached row, a view)
    scores = np.array(raw, dtype=np.float32)
    scores[np.isnan(scores)] = -np.inf  # NaN compares false and would break the ordering
    sub = seen[batch]
    rows = np.repeat(np.arange(len(batch)), np.diff(sub.indptr))
    scores[rows, sub.indices] = -np.inf
    if cand is not None:
        # rank only these columns, in their order: sorted candidates keep ties on the lower item
        # index, a permutation breaks them at random
        scores = scores[:, cand]
    top = topk_indices(scores, kmax)
    top_scores = np.take_along_axis(scores, top, axis=1)
    items = cand[top] if cand is not None else top
    items = np.where(top_scores > -np.inf, items, -1)  # -inf = masked or not rankable
    top_scores = np.where(items >= 0, top_scores, -np.inf).astype(np.float32)
    if items.shape[1] < kmax:  # fewer rankable items than kmax
        pad = kmax - items.shape[1]
        items = np.pad(items, ((0, 0), (0, pad)), constant_values=-1)
        top_scores = np.pad(top_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return items, top_scores


def _progress_bar(total: int, label: str) -> tuple[Any, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), transient=True)
    prog.start()
    return prog, prog.add_task(label, total=total)
