"""`lmrec eval`, `lmrec models` and `lmrec bench-demo`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from lmrec.cli.common import console, fail, load_named_dataset, parse_params
from lmrec.cli.progress import Reporter


def run_models(dataset, split_name: str | None, models: list[tuple[str, dict, dict | list | None]],
               save_recs: Path | None = None, k: int = 10, results: list | None = None) -> list[dict]:
    """Run each (name, params, grid) on one split, reporting progress (`lmrec.cli.progress`:
    tuning points and the final fit, with time left); returns result rows. When `results` is
    a list, each model's test EvalResult is appended to it."""
    from lmrec.eval.experiment import grid_points, make_split, run_experiment

    split = make_split(dataset, split_name)
    rows = []
    for j, (name, params, grid) in enumerate(models):
        points = len(grid_points(grid))
        n_points = points if points > 1 else 0  # run_experiment tunes only with 2+ points
        which = f" ({j + 1}/{len(models)})" if len(models) > 1 else ""
        label = f"eval {dataset.name} / {name}{which}"
        with Reporter(f"{label}: {'tuning' if n_points else 'fit + test'}", total=n_points + 1,
                      unit="fits") as rep:
            def on_point(p, v, rep=rep, label=label):  # noqa: ANN001
                rep.advance()
                if rep.completed >= n_points:
                    rep.update(description=f"{label}: fit + test")

            res = run_experiment(name, split, params=params, grid=grid, on_point=on_point)
            rep.advance()
        rows.append(res.row)
        if results is not None:
            results.append(res.test)
        if save_recs is not None:
            res.test.save_recs(save_recs, dataset, k)
    return rows


def print_rows(rows: list[dict], *, wide: bool = False, fairness: bool = True) -> None:
    """The result tables at the console's width: the compact table (model, NDCG@10 ± se,
    HR@10, Recall@20, coverage, fit s) or, `wide`, every metric split into tables that fit;
    then the popularity-bias and per-group tables."""
    from lmrec.eval.report import compact_tables, fairness_rich_tables, rich_tables

    width = console.width
    tables = rich_tables(rows, width=width) if wide else compact_tables(rows, width=width)
    if fairness:
        tables += fairness_rich_tables(rows, width=width)
    for table in tables:
        console.print(table)


def _models(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise fail("--model: give a model name (lmrec models lists them)")
    return list(dict.fromkeys(names))


def eval_command(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Data set name (lmrec data info lists them)."),
    model: str = typer.Option(..., "--model", "-m", help="Model name (lmrec models lists them), or several "
                              "separated by commas to compare them on the same split."),
    params: Optional[str] = typer.Option(None, "--params", "-p", help="Fixed parameters: JSON or a=1,b=2 "
                                         "(given to every model of --model)."),
    tune: bool = typer.Option(False, "--tune", help="Search the model's default grid on the validation split."),
    split: Optional[str] = typer.Option(None, "--split", help="temporal-loo | given | coldstart | coldstart-random (default per data set)."),
    save_recs: Optional[Path] = typer.Option(None, "--save-recs", help="Write each test user's top-K list (JSON lines)."),
    k: int = typer.Option(10, "--k", help="List length written by --save-recs."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the result rows as JSON to this file."),
    wide: bool = typer.Option(False, "--wide", help="Show every metric (split into tables that fit the "
                              "terminal) instead of the short table."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG: NDCG@10 with its 95% CI per model "
                                        "and NDCG@10 by activity decile."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Overrides LMREC_DATA_DIR."),
) -> None:
    """Evaluate a model (or several, -m a,b) with the full-ranking protocol and print the
    metrics: a short table by default, every metric with --wide, a figure with --plot."""
    from lmrec.component import DEFAULT_GRIDS, create, model_names

    names = _models(model)
    for name in names:
        if name not in model_names():
            raise fail(f"unknown model {name!r}; known: {', '.join(model_names())}")
    if save_recs is not None and len(names) > 1:
        raise fail("--save-recs takes one model; run eval once per model")
    fixed = parse_params(params)
    for name in names:
        try:
            create(name, fixed)  # validate parameters before loading data
        except Exception as e:  # pydantic's message names the bad field
            raise fail(f"bad --params for {name}: {e}") from None
    ds = load_named_dataset(dataset, data_dir)
    runs = []
    for name in names:
        grid = None
        if tune:
            # drop the parameters fixed on the command line from the grid, keeping points unique
            seen: list[dict] = []
            for point in DEFAULT_GRIDS.get(name, []):
                p = {k2: v for k2, v in point.items() if k2 not in fixed}
                if p not in seen:
                    seen.append(p)
            grid = seen or None
        runs.append((name, fixed, grid))
    try:
        rows = run_models(ds, split, runs, save_recs=save_recs, k=k)
    except ValueError as e:
        raise fail(str(e)) from None
    print_rows(rows, wide=wide)
    if not wide:
        console.print("[dim]--wide: every metric; --plot FILE.png: a figure; --out FILE.json: the rows[/]",
                      highlight=False)
    if save_recs:
        console.print(f"top-{k} lists written to {save_recs}")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"rows": rows}, indent=2, default=str))
        console.print(f"results written to {out}")
    if plot:
        from lmrec.eval.report import plot_results

        try:
            plot_results(rows, plot)
        except (ValueError, OSError) as e:
            raise fail(f"--plot {plot}: {e}") from None
        console.print(f"figure written to {plot}")


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
    wide: bool = typer.Option(False, "--wide", help="Show every metric, not the short table."),
) -> None:
    """Evaluate the baselines on a small data set and print the table (works offline)."""
    from lmrec.data.loaders import load_dataset
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
    print_rows(rows, wide=wide, fairness=False)
