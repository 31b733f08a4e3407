"""Session evaluation: "history -> next item" test rows scored without stand-in users.

Each test row is a history (item indices in time order, optionally with times) and its target
item(s). A `RecPipeline` answers each row with `recommend_for_history` (every stage, nothing
stored changes); any other fitted history-based `Recommender` (EASE, transitions, LM profile,
SASRec, ...) answers through its `user_scores` on a row of user -1. The metrics are those of
the full-ranking evaluator (`lmrec.eval.metrics`), averaged over rows, with standard errors.

Example:
    >>> from lmrec.testing.toy import toy_dataset
    >>> from lmrec.component import create
    >>> ds = toy_dataset()
    >>> model = create("transitions").fit(ds.interactions, ds)
    >>> res = evaluate_sessions(model, [[1, 2], [3]], [4, 5], k=5)
    >>> res["n_sessions"], sorted(k for k in res if k.startswith("HR"))
    (2, ['HR@5', 'HR@5_se'])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lmrec.eval.metrics import ranking_metrics
from lmrec.types import HistoryBatch

__all__ = ["evaluate_sessions", "evaluate_session_stage"]

METRICS = ("HR", "NDCG", "MRR", "Recall")


def evaluate_sessions(model: Any, sessions: Sequence[Sequence[int] | np.ndarray],
                      targets: Sequence[int | Sequence[int] | np.ndarray], *, k: int = 10,
                      ks: Sequence[int] | None = None, times: Sequence[Sequence[int]] | None = None,
                      exclude_seen: bool = False, batch: int = 256) -> dict[str, float]:
    """HR, NDCG, MRR and Recall at `ks` (default `[k]`) of `model`'s lists for each session,
    with the session's `targets` (an item index or several) as the relevant items; keys like
    `NDCG@10`, `NDCG@10_se` and `n_sessions`. `exclude_seen` drops the session's own items from
    its list (off by default: a session's next item is often one it has seen; a pipeline's
    `seen` filter applies only when this is on). ValueError names a bad argument."""
    ks = sorted({int(x) for x in (ks or [k])})
    recs, truth = _session_recs(model, sessions, targets, ks, times, exclude_seen, batch)
    out: dict[str, float] = {"n_sessions": len(sessions)}
    if not len(sessions):
        return out
    for name, values in ranking_metrics(recs, truth, ks).items():
        if name.split("@")[0] in METRICS:
            out[name] = float(values.mean())
            out[f"{name}_se"] = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
    return out


def _session_recs(model: Any, sessions: Sequence[Any], targets: Sequence[Any], ks: Sequence[int],
                  times: Sequence[Sequence[int]] | None, exclude_seen: bool,
                  batch: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each session's top max(ks) items (-1 pads) and its de-duplicated target items."""
    if not ks or ks[0] < 1:
        raise ValueError(f"ks: cut-offs must be positive, got {ks}")
    if len(targets) != len(sessions):
        raise ValueError(f"targets: {len(targets)} entries for {len(sessions)} sessions")
    if times is not None and len(times) != len(sessions):
        raise ValueError(f"times: {len(times)} entries for {len(sessions)} sessions")
    n_items = int(model.n_items)
    truth = []
    for j, t in enumerate(targets):
        arr = np.atleast_1d(np.asarray(t, np.int64))
        if not len(arr):
            raise ValueError(f"targets[{j}] is empty")
        if arr.min() < 0 or arr.max() >= n_items:
            raise ValueError(f"targets[{j}]: item index out of range 0..{n_items - 1}")
        truth.append(np.unique(arr))
    depth = max(ks)
    recs = np.full((len(sessions), depth), -1, np.int64)
    for a in range(0, len(sessions), batch):
        rows = range(a, min(a + batch, len(sessions)))
        lists = _lists(model, [sessions[j] for j in rows], None if times is None else [times[j] for j in rows],
                       depth, exclude_seen)
        for j, items in zip(rows, lists):
            recs[j, :len(items)] = items[:depth]
    return recs, truth


def evaluate_session_stage(model: Any, split: Any, *, stage: str = "test", ks: Sequence[int] = (10, 20),
                           item_categories: Sequence[Sequence[str]] | None = None,
                           exclude_seen: bool = False, batch: int = 256) -> Any:
    """An `EvalResult` for a "sessions" split (`lmrec.data.splits.session_split`): the rows of
    `stage` ("test" or "valid") answered from their histories, per-row metrics in `per_user`
    (aligned with `users` = row numbers; `info["session_ids"]` holds the rows' file lines),
    plus coverage, novelty, exposure Gini, long-tail share and ILD as the full-ranking
    evaluator reports them, with the fitted events as the popularity reference."""
    import time

    from lmrec.eval import fairness as F
    from lmrec.eval import metrics as M
    from lmrec.eval.evaluator import EvalResult

    t0 = time.perf_counter()
    rows = split.info["sessions"].get(stage)
    if rows is None:
        raise ValueError(f"{split.dataset.name}: no {stage} sessions (a spec's [split] {stage} = ...)")
    ks = sorted({int(x) for x in ks})
    recs, truth = _session_recs(model, rows.histories, rows.targets, ks, None, exclude_seen, batch)
    ds = split.dataset
    seen = split.train.to_csr(ds.n_users, ds.n_items)
    pu = {name: v for name, v in ranking_metrics(recs, truth, ks).items()
          if name.split("@")[0] in (*METRICS, "Precision")}
    self_info = M.self_information(seen)
    cats = M.category_matrix(item_categories) if item_categories is not None else None
    for k in ks:
        pu[f"novelty@{k}"] = M.novelty(recs, self_info, k)
        if cats is not None:
            pu[f"ILD@{k}"] = M.intra_list_diversity(recs, k, item_categories=cats)
    means = {n: float(v.mean()) if len(v) else float("nan") for n, v in pu.items()}
    head = F.head_items(F.item_popularity(seen, ds.n_items))
    for k in ks:
        means[f"coverage@{k}"] = M.coverage(recs, ds.n_items, k) if len(recs) else 0.0
        means[f"gini@{k}"] = F.exposure_gini(recs, ds.n_items, k) if len(recs) else float("nan")
        means[f"longtail@{k}"] = F.long_tail_share(recs, head, k) if len(recs) else float("nan")
    info = {"stage": stage, "ks": ks, "users_evaluated": len(recs), "unit": "session",
            "session_ids": list(rows.ids), "eval_s": round(time.perf_counter() - t0, 3)}
    return EvalResult(metrics=means, per_user=pu, users=np.arange(len(recs)), recs=recs,
                      scores=None, info=info)


def _lists(model: Any, sessions: list[Any], times: list[Any] | None, depth: int,
           exclude_seen: bool) -> list[np.ndarray]:
    """Each session's top `depth` items from a pipeline (all stages) or a history-based model."""
    if hasattr(model, "session_query"):  # a RecPipeline: one batch through every stage
        queries = [model.session_query(s, times=None if times is None else times[j]) for j, s in enumerate(sessions)]
        return [c.items for c in model.run(queries, n=depth, exclude_seen=exclude_seen)]
    items = [np.asarray(s, np.int64).reshape(-1) for s in sessions]
    ts = [np.arange(len(i), dtype=np.int64) if times is None else np.asarray(times[j], np.int64)
          for j, i in enumerate(items)]
    hb = HistoryBatch(np.full(len(items), -1, np.int64), items, ts, [np.ones(len(i), np.float32) for i in items])
    if not model.runs_for(hb).all():
        raise ValueError(f"model {getattr(model, 'name', model)!r} cannot score a session (it knows fit-time "
                         "users only); use a history-based model or a pipeline")
    scores = model.user_scores(hb)
    none = np.zeros(0, np.int64)
    return [scores.top(j, depth, np.unique(items[j]) if exclude_seen else none)[0] for j in range(len(items))]
