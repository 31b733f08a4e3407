"""`lmrec ray`: distributed batch jobs on a Ray cluster (the optional extra `lmrec[ray]`).

    lmrec ray embed --dataset ml-1m --encoder minilm --workers 4
    lmrec ray eval  --dataset ml-1m --model ease --params lam=500 --shards 4
    lmrec ray train --dataset ml-100k --params epochs=20 --workers 2 --out runs/sasrec-ddp

Each starts a local Ray cluster for the job (`--address` joins a running one instead: `auto`
or `ray://host:10001`) and prints one progress line per step.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Optional

import typer

from lmrec.cli.common import console, fail, load_named_dataset, one_line, parse_params

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Distributed batch jobs on Ray: embed a catalog, evaluate over user shards, DDP training.")

_ADDRESS = typer.Option(None, "--address", help="Ray cluster to join ('auto', 'ray://host:10001'); "
                                                "default: start a local one for this command.")
_CPUS = typer.Option(None, "--cpus", help="CPUs of the local cluster (default: all of this machine).")


def _session(address: Optional[str], cpus: Optional[int]):
    try:
        from lmrec.distributed.runtime import ray_session
        return ray_session(address, num_cpus=cpus)
    except ImportError as e:
        raise fail(str(e)) from None


def _line(text: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {text}", highlight=False, soft_wrap=True)


def _ray_or_fail() -> None:
    try:
        from lmrec.distributed.runtime import require_ray
        require_ray()
    except ImportError as e:
        raise fail(str(e)) from None


@app.command("embed")
def embed_command(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Data set name (lmrec data info lists them)."),
    encoder: str = typer.Option("minilm", "--encoder", "-e", help="Registered encoder (minilm, minilm-int8, e5-small, fake, st:PATH)."),
    workers: int = typer.Option(2, "--workers", "-w", min=1, help="Ray Data actors encoding in parallel."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Texts per batch sent to an actor."),
    threads: int = typer.Option(1, "--threads", min=1, help="Intra-op threads of each actor."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Embedding cache folder (default: the settings' cache_dir/embeddings)."),
    address: Optional[str] = _ADDRESS,
    cpus: Optional[int] = _CPUS,
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Overrides LMREC_DATA_DIR."),
) -> None:
    """Embed a data set's item texts with Ray Data into the embedding cache (texts already there are skipped)."""
    from lmrec.text.registry import check_encoder_name

    _ray_or_fail()
    try:
        check_encoder_name(encoder)
    except ValueError as e:
        raise fail(str(e)) from None
    ds = load_named_dataset(dataset, data_dir)
    _line(f"{ds.name}: {ds.n_items} items")
    from lmrec.distributed.embed import embed_catalog

    with _session(address, cpus) as ray:
        import logging

        logging.getLogger("ray.data").setLevel(logging.ERROR)  # our progress lines say enough
        ray.data.DataContext.get_current().enable_progress_bars = False
        try:
            res = embed_catalog(ds, encoder, workers, cache=cache if cache is not None else True,
                                batch_size=batch_size, threads=threads, report=_line)
        except (ValueError, RuntimeError) as e:
            raise fail(one_line(e)) from None
    _line(f"{res.encoded} texts encoded, {res.reused} reused from the cache; vectors {res.vectors.shape}")


@app.command("eval")
def eval_command(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Data set name (lmrec data info lists them)."),
    model: str = typer.Option(..., "--model", "-m", help="Model name (lmrec models lists them)."),
    params: Optional[str] = typer.Option(None, "--params", "-p", help="Fixed parameters: JSON or a=1,b=2."),
    shards: int = typer.Option(2, "--shards", "-s", min=1, help="User shards, one Ray task each."),
    split: Optional[str] = typer.Option(None, "--split", help="temporal-loo | given | coldstart | coldstart-random (default per data set)."),
    fit_each: bool = typer.Option(False, "--fit-each", help="Fit the model in every shard task instead of once."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the result row as JSON to this file."),
    address: Optional[str] = _ADDRESS,
    cpus: Optional[int] = _CPUS,
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Overrides LMREC_DATA_DIR."),
) -> None:
    """Full-ranking evaluation of one model over user shards in Ray tasks (same metrics as `lmrec eval`)."""
    from lmrec.component import create, model_names
    from lmrec.eval.report import rich_tables

    _ray_or_fail()
    if model not in model_names():
        raise fail(f"unknown model {model!r}; known: {', '.join(model_names())}")
    fixed = parse_params(params)
    try:
        create(model, fixed)
    except Exception as e:  # pydantic's message names the bad field
        raise fail(f"bad --params for {model}: {one_line(e)}") from None
    ds = load_named_dataset(dataset, data_dir)
    from lmrec.distributed.evaluate import evaluate_sharded
    from lmrec.eval.experiment import make_split

    try:
        sp = make_split(ds, split)
    except ValueError as e:
        raise fail(str(e)) from None
    _line(f"{ds.name} / {sp.name}: {ds.n_users} users, {ds.n_items} items")
    with _session(address, cpus):
        try:
            res = evaluate_sharded(model, fixed, sp, shards, fit="each" if fit_each else "once", report=_line)
        except ValueError as e:
            raise fail(one_line(e)) from None
    name = ds.name + (f"-{sp.name}" if sp.name.startswith("coldstart") else "")
    row = res.row(dataset=name, split=sp.name, model=model, params=fixed, fit_s=res.info["fit_s"],
                  eval_s=res.info["eval_s"], shards=res.info["shards"])
    for table in rich_tables([row], width=console.width):
        console.print(table)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"rows": [row]}, indent=2, default=str))
        _line(f"results written to {out}")


@app.command("train")
def train_command(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Data set name (lmrec data info lists them)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to save the trained SASRec model in."),
    params: Optional[str] = typer.Option(None, "--params", "-p", help="SASRec parameters: JSON or a=1,b=2."),
    workers: int = typer.Option(2, "--workers", "-w", min=1, help="DDP workers (one CPU each)."),
    launcher: str = typer.Option("ray", "--launcher", help="ray (Ray Train TorchTrainer) or processes (torch.multiprocessing)."),
    split: Optional[str] = typer.Option(None, "--split", help="Train on this split's train + valid (default: all events)."),
    address: Optional[str] = _ADDRESS,
    cpus: Optional[int] = _CPUS,
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Overrides LMREC_DATA_DIR."),
) -> None:
    """Data-parallel training of SASRec (torch DDP, gloo) in N workers; saves the model folder."""
    from lmrec.models.sasrec import SASRec

    if launcher not in ("ray", "processes"):
        raise fail(f"--launcher must be 'ray' or 'processes', got {launcher!r}")
    if launcher == "ray":
        _ray_or_fail()
    fixed = parse_params(params)
    try:
        cfg = SASRec.Config(**fixed)
    except Exception as e:
        raise fail(f"bad --params for sasrec: {one_line(e)}") from None
    if cfg.fgm:
        raise fail("data-parallel SASRec does not support fgm=true")
    ds = load_named_dataset(dataset, data_dir)
    train = ds.interactions
    if split:
        from lmrec.eval.experiment import make_split

        try:
            train = make_split(ds, split).train_valid
        except ValueError as e:
            raise fail(str(e)) from None
    from lmrec.distributed.train import train_sasrec_ddp

    with _session(address, cpus) if launcher == "ray" else contextlib.nullcontext():
        try:
            model = train_sasrec_ddp(train, ds, fixed, num_workers=workers, launcher=launcher, out=out,
                                     report=_line)
        except ValueError as e:
            raise fail(one_line(e)) from None
    _line(f"saved to {out} ({json.dumps(model.training_summary())})")
