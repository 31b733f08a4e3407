"""Full-ranking evaluation over user shards in Ray tasks.

`evaluate_sharded("ease", {"l2": 200}, split, num_shards=4)` fits the model once in a Ray task
(on train + valid for stage "test", on train for "valid", as `lmrec eval` does), hands the
fitted model to `num_shards` tasks by object reference, and each task runs the single-process
`lmrec.eval.evaluator.evaluate` on its contiguous range of evaluated users (the split with the
other users' truth removed). The shards' top-K lists are then merged and the catalog-level
metrics (coverage, exposure Gini, long-tail share, user-group tables) computed by the same
`evaluate` over all users at once, replaying each user's list: the result is the one a single
process gets, and no metric is re-implemented here.

`fit="each"` fits a copy of the model inside every shard task instead (nothing is shipped;
worth it for models that fit in a blink and are large to serialise).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from lmrec.data.splits import Split
from lmrec.eval.evaluator import EvalResult, evaluate

__all__ = ["evaluate_sharded", "shard_split", "merge_shards"]


def _stage_attr(stage: str) -> str:
    if stage not in ("valid", "test"):
        raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")
    return stage


def shard_split(split: Split, users: np.ndarray, stage: str = "test") -> Split:
    """`split` with the `stage` truth of only `users` (user indices): evaluating it evaluates
    those users, with everything else (seen items, candidates, tie-break) unchanged."""
    attr = _stage_attr(stage)
    truth = getattr(split, attr)
    keep = np.isin(truth.user, np.asarray(users, dtype=np.int64))
    part = dataclasses.replace(split, **{attr: truth.select(keep)})
    if stage == "test" and "train_valid" in split.__dict__:
        part.__dict__["train_valid"] = split.__dict__["train_valid"]  # unchanged: reuse it
    return part


def _fit(model_name: str, params: Mapping[str, Any], split: Split, stage: str) -> Any:
    from lmrec.component import create

    model = create(model_name, dict(params))
    model.fit(split.train_valid if stage == "test" else split.train, split.dataset)
    return model


def _categories(split: Split) -> Any:
    from lmrec.eval.experiment import item_categories

    return item_categories(split.dataset)


def _eval_shard(model: Any, model_name: str, params: Mapping[str, Any], split: Split, users: np.ndarray,
                stage: str, ks: Sequence[int], batch_size: int) -> tuple[EvalResult, float]:
    """(evaluate's result on these users, fit seconds when this task fitted the model)."""
    fit_s = 0.0
    if model is None:
        t0 = time.perf_counter()
        model = _fit(model_name, params, split, stage)
        fit_s = time.perf_counter() - t0
    res = evaluate(model, shard_split(split, users, stage), stage=stage, ks=ks, batch_size=batch_size,
                   item_categories=_categories(split), keep_recs=True)
    return res, fit_s


class _ReplayScorer:
    """Scores that rank exactly the kept top-K lists: each list's items get their scores, every
    other item -inf (so `evaluate` re-derives the same lists, ties broken the same way)."""

    def __init__(self, users: np.ndarray, recs: np.ndarray, scores: np.ndarray, n_items: int) -> None:
        self.row = {int(u): r for r, u in enumerate(users.tolist())}
        self.recs, self.scores, self.n_items = recs, scores, n_items

    def score(self, users: np.ndarray) -> np.ndarray:
        out = np.full((len(users), self.n_items), -np.inf, dtype=np.float32)
        for r, u in enumerate(np.asarray(users).tolist()):
            i = self.row[int(u)]
            ok = self.recs[i] >= 0
            out[r, self.recs[i][ok]] = self.scores[i][ok]
        return out


def merge_shards(parts: Sequence[EvalResult], split: Split, *, stage: str = "test",
                 ks: Sequence[int] = (10, 20), batch_size: int = 256) -> EvalResult:
    """One `EvalResult` for all users of `parts` (shard results kept with `keep_recs=True`),
    computed by `evaluate` from the shards' lists. Shards must not share a user."""
    parts = [p for p in parts if len(p.users)]
    if not parts:
        return evaluate(_ReplayScorer(np.zeros(0, np.int64), np.zeros((0, 1), np.int64),
                                      np.zeros((0, 1), np.float32), split.dataset.n_items),
                        shard_split(split, np.zeros(0, np.int64), stage), stage=stage, ks=ks)
    if any(p.recs is None or p.scores is None for p in parts):
        raise ValueError("merge_shards needs each shard's lists: evaluate them with keep_recs=True")
    users = np.concatenate([p.users for p in parts])
    if len(np.unique(users)) != len(users):
        raise ValueError("merge_shards: a user is evaluated in more than one shard")
    recs = np.concatenate([p.recs for p in parts])
    scores = np.concatenate([p.scores for p in parts])
    return evaluate(_ReplayScorer(users, recs, scores, split.dataset.n_items), split, stage=stage, ks=ks,
                    batch_size=batch_size, item_categories=_categories(split), keep_recs=True)


def evaluate_sharded(model_name: str, params: Mapping[str, Any] | None, split: Split, num_shards: int = 2, *,
                     stage: str = "test", ks: Sequence[int] = (10, 20), fit: Literal["once", "each"] = "once",
                     batch_size: int = 256, cpus_per_task: float = 1,
                     report: Callable[[str], None] | None = None) -> EvalResult:
    """Evaluate registered model `model_name` with `params` on `split` in `num_shards` Ray tasks
    (see the module docstring); equal to fitting it in one process and calling
    `evaluate(model, split, stage=stage, ks=ks, item_categories=...)` (the protocol of
    `lmrec eval`). `info` gains `shards`, `shard_users`, `fit_s` and the wall time `eval_s`.
    Needs a Ray cluster: inside `ray_session()` or after `ray.init`."""
    from lmrec.component import create
    from lmrec.distributed.runtime import require_ray

    ray = require_ray()
    _stage_attr(stage)
    if num_shards < 1:
        raise ValueError(f"num_shards must be at least 1, got {num_shards}")
    if fit not in ("once", "each"):
        raise ValueError(f"fit must be 'once' or 'each', got {fit!r}")
    params = dict(params or {})
    create(model_name, params)  # unknown names and bad parameters fail here, not in a task
    say = report or (lambda line: None)
    t0 = time.perf_counter()
    truth_users = np.unique(getattr(split, stage).user).astype(np.int64)
    shards = [s for s in np.array_split(truth_users, num_shards) if len(s)] or [truth_users]
    split_ref = ray.put(split)
    remote_eval = ray.remote(num_cpus=cpus_per_task)(_eval_shard)
    model_ref = None
    fit_s = 0.0
    if fit == "once":
        say(f"fitting {model_name} in a Ray task")
        t_fit = time.perf_counter()
        model_ref = ray.remote(num_cpus=cpus_per_task)(_fit).remote(model_name, params, split_ref, stage)
        ray.wait([model_ref], num_returns=1)
        fit_s = time.perf_counter() - t_fit
        say(f"fitted in {fit_s:.1f} s; scoring {len(truth_users)} users in {len(shards)} shards")
    pending = {remote_eval.remote(model_ref, model_name, params, split_ref, users, stage, tuple(ks), batch_size): i
               for i, users in enumerate(shards)}
    results: list[EvalResult | None] = [None] * len(shards)
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        i = pending.pop(done[0])
        res, shard_fit = ray.get(done[0])
        results[i] = res
        fit_s = max(fit_s, shard_fit)
        say(f"shard {i + 1}/{len(shards)}: {len(res.users)} users, NDCG@{min(ks)} "
            f"{res.metrics.get(f'NDCG@{min(ks)}', float('nan')):.4f} ({len(shards) - len(pending)}/{len(shards)} done)")
    merged = merge_shards([r for r in results if r is not None], split, stage=stage, ks=ks, batch_size=batch_size)
    merged.info.update(shards=len(shards), shard_users=[int(len(r.users)) for r in results if r is not None],
                       fit_s=round(fit_s, 3), eval_s=round(time.perf_counter() - t0, 3))
    say(f"merged {len(merged.users)} users in {merged.info['eval_s']:.1f} s")
    return merged
