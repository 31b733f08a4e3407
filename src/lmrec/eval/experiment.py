"""One reproducible experiment: tune a model on validation, refit on train + validation,
score the test split with the full-ranking evaluator, and return a result row in the
benchmark format (`model` is the name `lmrec eval --model NAME` accepts)."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from lmrec.data.dataset import Dataset
from lmrec.data.splits import (
    Split, cold_start_items, cold_start_random_items, given_split, session_split, temporal_leave_one_out,
    time_ratio_split,
)

SPLITS = ("temporal-loo", "given", "time-ratio", "sessions", "coldstart", "coldstart-random")

#: The split each data set is reported on by default.
DEFAULT_SPLIT = {
    "ml-100k": "temporal-loo",
    "ml-latest-small": "temporal-loo",
    "ml-1m": "given",
    "amazon-scientific": "given",
}


def make_split(dataset: Dataset, split: str | None = None) -> Split:
    """Build a named split of `dataset` (see SPLITS). The default: the data set's own (a
    spec's `[split] method`), else the registered data set's, else temporal-loo when events
    have times or a known order, else the given split."""
    ordered = dataset.has_timestamps or dataset.info.get("order") == "position"
    name = split or dataset.info.get("default_split") or DEFAULT_SPLIT.get(
        dataset.name, "temporal-loo" if ordered else "given")
    if name == "temporal-loo":
        if not ordered and dataset.given_split is None:
            raise ValueError(f"{dataset.name}: no timestamps; a temporal split would follow file order "
                             "(if the file order is the time order, say so: order = \"position\" in its spec)")
        return temporal_leave_one_out(dataset)
    if name == "time-ratio":
        p = dataset.info.get("split_params", {})
        return time_ratio_split(dataset, **{k: p[k] for k in ("test_fraction", "valid_fraction") if k in p})
    if name == "sessions":
        return session_split(dataset)
    if name == "given":
        return given_split(dataset)
    if name == "coldstart":
        return cold_start_items(dataset)
    if name == "coldstart-random":
        return cold_start_random_items(dataset)
    raise ValueError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")


def grid_points(grid: dict[str, list[Any]] | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Expand {'a': [1, 2], 'b': [3]} into [{'a': 1, 'b': 3}, {'a': 2, 'b': 3}]; lists pass through."""
    if not grid:
        return [{}]
    if isinstance(grid, list):
        return [dict(p) for p in grid]
    keys = list(grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]


@dataclass
class ExperimentResult:
    row: dict[str, Any]
    test: Any  # EvalResult of the test stage
    tuning: list[dict[str, Any]] = field(default_factory=list)
    model: Any = None


def item_categories(dataset: Dataset) -> list[list[str]] | None:
    t = dataset.item_table
    if t is None or not any(t.categories):
        return None
    return t.categories


def run_experiment(
    model_name: str,
    split: Split,
    *,
    params: dict[str, Any] | None = None,
    grid: dict[str, list[Any]] | list[dict[str, Any]] | None = None,
    ks: tuple[int, ...] = (10, 20),
    tune_metric: str = "NDCG@10",
    factory: Callable[[str, dict[str, Any]], Any] | None = None,
    progress: bool = False,
    on_point: Callable[[dict[str, Any], float], None] | None = None,
) -> ExperimentResult:
    """Tune `model_name` over `grid` on the validation stage (fit on train), refit the best
    configuration on train + validation and evaluate it on the test stage.

    `params` are fixed parameters merged under every grid point. `factory(name, params)`
    builds a model (default: `lmrec.component.create`).
    """
    from lmrec.component import create
    from lmrec.eval.evaluator import evaluate
    from lmrec.eval.sessions import evaluate_session_stage

    if "sessions" in split.info:  # history -> next item rows: each answered from its history alone
        if len(grid_points(grid)) > 1 and "valid" not in split.info["sessions"]:
            raise ValueError(f"{split.dataset.name}: tuning needs validation rows (a spec's [split] valid = ...)")

        def evaluate(model, split, *, stage, ks, keep_recs=True, item_categories=None, progress=False):  # noqa: F811
            return evaluate_session_stage(model, split, stage=stage, ks=ks, item_categories=item_categories)

    make = factory or create
    ds = split.dataset
    cats = item_categories(ds)
    base = dict(params or {})
    points = grid_points(grid)
    tuning: list[dict[str, Any]] = []
    best_params, best_value = {**base, **points[0]}, -np.inf
    if len(points) > 1:
        for point in points:
            p = {**base, **point}
            model = make(model_name, p)
            t0 = time.perf_counter()
            model.fit(split.train, ds)
            fit_s = time.perf_counter() - t0
            res = evaluate(model, split, stage="valid", ks=ks, keep_recs=False)
            value = float(res.metrics[tune_metric])
            tuning.append({"params": p, tune_metric: value, "fit_s": round(fit_s, 3)})
            if on_point:
                on_point(p, value)
            if value > best_value:
                best_params, best_value = p, value
    model = make(model_name, best_params)
    t0 = time.perf_counter()
    model.fit(split.train_valid, ds)
    fit_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    res = evaluate(model, split, stage="test", ks=ks, item_categories=cats, progress=progress)
    eval_s = time.perf_counter() - t1
    dataset_name = ds.name + (f"-{split.name}" if split.name.startswith("coldstart") else "")
    row = res.row(dataset=dataset_name, split=split.name, model=model_name, params=best_params,
                  fit_s=round(fit_s, 3), eval_s=round(eval_s, 3), seeds=1)
    if tuning:
        row["tuned_on"] = "valid"
        row[f"valid_{tune_metric}"] = round(best_value, 5)
    return ExperimentResult(row=row, test=res, tuning=tuning, model=model)
