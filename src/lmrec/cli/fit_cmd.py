"""`lmrec fit`: train one model on a data set's split, evaluate it and save it.

Like `lmrec eval` with fixed parameters (fit on train + validation, full-ranking test
metrics), and the fitted model is saved as a folder that `lmrec.component.load_model` reads
back. Trained models (e.g. "sasrec") show a progress bar with the running validation NDCG@10
and early-stop on it: their validation event is each user's last train + validation event,
i.e. the split's validation item.

    lmrec fit --dataset ml-100k --model sasrec --params '{"max_len": 50}' --out runs/sasrec-ml100k
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional

import typer

from lmrec.cli.common import console, fail, load_named_dataset, parse_params
from lmrec.cli.progress import Reporter, log_lines


def default_out(dataset: str, model: str) -> Path:
    """Where a model is saved without --out: models/<dataset>/<model>."""
    return Path("models") / dataset / model


def fit_command(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Data set name (lmrec data info lists them)."),
    model: str = typer.Option(..., "--model", "-m", help="Model name (lmrec models lists them)."),
    params: Optional[str] = typer.Option(None, "--params", "-p", help="Parameters: JSON or a=1,b=2."),
    split: Optional[str] = typer.Option(None, "--split", help="temporal-loo | given | coldstart | coldstart-random "
                                        "(default per data set)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder to save the model in "
                                       "(default: models/<dataset>/<model>)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show training / evaluation progress "
                                  "(a bar in a terminal, log lines with counts and time left elsewhere)."),
    wide: bool = typer.Option(False, "--wide", help="Show every metric and the per-group tables, not the short table."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Overrides LMREC_DATA_DIR."),
) -> None:
    """Train a model on train + validation, evaluate it on test and save it."""
    from lmrec.component import create, model_names
    from lmrec.eval.experiment import make_split, run_experiment
    from lmrec.cli.eval_cmd import print_rows

    if model not in model_names():
        raise fail(f"unknown model {model!r}; known: {', '.join(model_names())}")
    fixed = parse_params(params)
    try:
        create(model, fixed)  # validate parameters before loading data
    except Exception as e:  # pydantic's message names the bad field
        raise fail(f"bad --params for {model}: {e}") from None
    ds = load_named_dataset(dataset, data_dir)
    try:
        sp = make_split(ds, split)
    except ValueError as e:
        raise fail(str(e)) from None

    def factory(name: str, p: dict[str, Any]) -> Any:
        m = create(name, p)
        if hasattr(m, "show_progress"):
            m.show_progress = progress
        return m

    console.print(f"[bold]{ds.name}[/] ({sp.name} split): fitting {model} on train + validation")
    try:
        # a heartbeat with the elapsed time (encoders inside report their own counts), and
        # outside a terminal the trained models' per-epoch lines
        with log_lines("lmrec.models.training") if progress else nullcontext(), \
                Reporter(f"fit + test {model} on {ds.name}", total=1, unit="fits",
                         mode=None if progress else "off") as rep:
            res = run_experiment(model, sp, params=fixed, factory=factory, progress=progress)
            rep.advance()
    except ValueError as e:
        raise fail(str(e)) from None
    row = res.row
    summary = getattr(res.model, "training_summary", None)
    if callable(summary) and summary():
        row["training"] = summary()
        t = row["training"]
        console.print(f"best epoch {t['best_epoch']} of {t['epochs_run']} (validation NDCG@10 "
                      f"{t['valid_NDCG@10'] if t['valid_NDCG@10'] is not None else '-'}), {t['train_s']} s")
    print_rows([row], wide=wide, fairness=wide)
    folder = out or default_out(dataset, model)
    try:
        saved = res.model.save(folder)
    except (NotImplementedError, TypeError, OSError) as e:
        raise fail(f"could not save {model} to {folder}: {e}") from None
    (Path(saved) / "metrics.json").write_text(json.dumps(row, indent=2, default=str))
    console.print(f"model saved to {saved} (load it with lmrec.component.load_model)")
