"""`lmrec eval`, `lmrec models` and `lmrec demo`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from lmrec.cli.common import console, fail, load_named_dataset, parse_params


def _progress() -> Progress:
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), console=console,
                    transient=True)


def run_models(dataset, split_name: str | None, models: list[tuple[str, dict, dict | list | None]],
               save_recs: Path | None = None, k: int = 10, results: list | None = None) -> list[dict]:
    """Run each (name, params, grid) on one split with a progress bar; returns result rows.
    When `results` is a list, each model's test EvalResult is appended to it."""
    from lmrec.eval.experiment import grid_points, make_split, run_experiment

    split = make_split(dataset, split_name)
    rows = []
    with _progress() as prog:
        for name, params, grid in models:
            points = len(grid_points(grid))
            n_points = points if points > 1 else 0  # run_experiment tunes only with 2+ points
            task = prog.add_task(f"{dataset.name} / {name}", total=n_points + 1)
            res = run_experiment(name, split, params=params, grid=grid,
                                 on_point=lambda p, v, t=task: prog.advance(t))
            prog.advance(task)
            rows.append(res.row)
            if results is not None:
                results.append(res.test)
            if save_recs is not None:
                res.test.save_recs(save_recs, dataset, k)
    return rows


def eval_command(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Data set name (lmrec data info lists them)."),
    model: str = typer.Option(..., "--model", "-m", help="Model name (lmrec models lists them)."),
    params: Optional[str] = typer.Option(None, "--params", "-p", help="Fixed parameters: JSON or a=1,b=2."),
    tune: bool = typer.Option(False, "--tune", help="Search the model's default grid on the validation split."),
    split: Optional[str] = typer.Option(None, "--split", help="temporal-loo | given | coldstart | coldstart-random (default per data set)."),
    save_recs: Optional[Path] = typer.Option(None, "--save-recs", help="Write each test user's top-K list (JSON lines)."),
    k: int = typer.Option(10, "--k", help="List length written by --save-recs."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the result rows as JSON to this file."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Overrides LMREC_DATA_DIR."),
) -> None:
    """Evaluate one model with the full-ranking protocol and print the metrics."""
    from lmrec.component import DEFAULT_GRIDS, create, model_names
    from lmrec.eval.report import fairness_rich_tables, rich_tables

    if model not in model_names():
        raise fail(f"unknown model {model!r}; known: {', '.join(model_names())}")
    fixed = parse_params(params)
    try:
        create(model, fixed)  # validate parameters before loading data
    except Exception as e:  # pydantic's message names the bad field
        raise fail(f"bad --params for {model}: {e}") from None
    ds = load_named_dataset(dataset, data_dir)
    grid = None
    if tune:
        # drop the parameters fixed on the command line from the grid, keeping points unique
        seen: list[dict] = []
        for point in DEFAULT_GRIDS.get(model, []):
            p = {k2: v for k2, v in point.items() if k2 not in fixed}
            if p not in seen:
                seen.append(p)
        grid = seen or None
    try:
        rows = run_models(ds, split, [(model, fixed, grid)], save_recs=save_recs, k=k)
    except ValueError as e:
        raise fail(str(e)) from None
    for table in rich_tables(rows, width=console.width):  # split so each fits the terminal
        console.print(table)
    for table in fairness_rich_tables(rows):  # popularity bias and NDCG per user group
        console.print(table)
    if save_recs:
        console.print(f"top-{k} lists written to {save_recs}")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"rows": rows}, indent=2, default=str))
        console.print(f"results written to {out}")


def models_command() -> None:
    """List the models `lmrec eval --model` accepts, with their default parameters."""
    from rich.table import Table

    from lmrec.component import model_names, create

    t = Table(title="models")
    t.add_column("name")
    t.add_column("default parameters")
    for name in model_names():
        t.add_row(name, json.dumps(create(name, {}).params))
    console.print(t)


def demo_command(
    dataset: str = typer.Option("auto", "--dataset", "-d",
                                help="ml-100k, another data set name, or 'auto' (ml-100k when present, "
                                     "else a generated data set)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Overrides LMREC_DATA_DIR."),
) -> None:
    """Evaluate the baselines on a small data set and print the table (works offline)."""
    from lmrec.data.loaders import load_dataset
    from lmrec.eval.report import rich_table
    from lmrec.testing.toy import demo_dataset

    ds = None
    if dataset in ("auto", "ml-100k"):
        try:
            ds = load_dataset("ml-100k", data_dir)
        except FileNotFoundError as e:
            if dataset == "ml-100k":
                raise fail(str(e)) from None
            console.print("[yellow]ml-100k not found in the data directory; using a generated data set "
                          "(run `lmrec data download ml-100k` for MovieLens)[/]")
    if ds is None:
        ds = demo_dataset() if dataset == "auto" else load_named_dataset(dataset, data_dir)
    console.print(f"[bold]{ds.name}[/]: {ds.n_users} users, {ds.n_items} items, {len(ds.interactions)} events; "
                  "temporal leave-one-out, full ranking")
    models = [("popular", {}, None), ("itemknn", {"k": 100}, None), ("ease", {"lam": 500.0}, None),
              ("als", {"factors": 64}, None), ("bpr", {"factors": 64}, None)]
    rows = run_models(ds, "temporal-loo", models)
    console.print(rich_table(rows))
