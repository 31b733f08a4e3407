"""`lmrec ray`: distributed batch jobs on a Ray cluster (the optional extra `lmrec[ray]`).

    lmrec ray embed --dataset ml-1m --encoder minilm --workers 4
    lmrec ray eval  --dataset ml-1m --model ease --params lam=500 --shards 4
    lmrec ray train --dataset ml-100k --params epochs=20 --workers 2 --out runs/sasrec-ddp
    lmrec ray serve --home ./shop --store-url postgresql://... --min-replicas 1 --max-replicas 4

Each starts a local Ray cluster for the job (`--address` joins a running one instead: `auto`
or `ray://host:10001`) and prints one progress line per step. `serve` runs the HTTP service as
Ray Serve replicas with an autoscaling config until interrupted (lmrec.distributed.serve).
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
                  help="Distributed jobs on Ray: embed a catalog, evaluate over user shards, DDP training, "
                       "and the service as autoscaled Ray Serve replicas.")

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


@app.command("serve")
def serve_command(
    home: Optional[Path] = typer.Option(None, "--home", help="Service home shared by the replicas (index/, models/); "
                                        "on several machines a shared folder."),
    store_url: Optional[str] = typer.Option(None, "--store-url", help="The shared store: postgresql://... (or a "
                                            "sqlite:///file.db when every replica runs on this machine)."),
    config: Optional[str] = typer.Option(None, "--config", help="Pipeline config (as for `lmrec serve`)."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="minilm | e5-small | minilm-int8 | fake ..."),
    index: Optional[str] = typer.Option(None, "--index", help="flat | hnsw"),
    host: Optional[str] = typer.Option(None, "--host", help="Address of Serve's HTTP proxy (default 127.0.0.1, "
                                       "or LMREC_HOST)."),
    port: Optional[int] = typer.Option(None, "--port", help="Port of Serve's HTTP proxy (default 8000, or "
                                       "LMREC_PORT)."),
    no_auth: bool = typer.Option(False, "--no-auth", help="Serve without API keys (local demo only)."),
    events: Optional[str] = typer.Option(None, "--events", help="Each replica also consumes this stream (one "
                                         "durable consumer / group: the replicas split it)."),
    min_replicas: int = typer.Option(1, "--min-replicas", min=0, help="Fewest replicas the autoscaler keeps."),
    max_replicas: int = typer.Option(2, "--max-replicas", min=1, help="Most replicas the autoscaler starts."),
    initial_replicas: Optional[int] = typer.Option(None, "--initial-replicas", min=0,
                                                   help="Replicas started first (default: --min-replicas)."),
    target_ongoing: float = typer.Option(2.0, "--target-ongoing-requests", help="Requests in flight per replica "
                                         "the autoscaler aims at (more: add replicas; fewer: remove them)."),
    max_ongoing: int = typer.Option(8, "--max-ongoing-requests", min=1, help="Requests one replica takes at once; "
                                    "the proxy queues the others."),
    upscale_delay: float = typer.Option(30.0, "--upscale-delay", min=0, help="Seconds above the target before "
                                        "adding a replica."),
    downscale_delay: float = typer.Option(600.0, "--downscale-delay", min=0, help="Seconds below the target "
                                          "before removing one."),
    replica_cpus: float = typer.Option(1.0, "--replica-cpus", min=0, help="CPUs each replica reserves."),
    start_attempts: int = typer.Option(3, "--start-attempts", min=1, help="Replica starts that fail in a row "
                                       "(an engine that fails to open) before the deployment is given up."),
    detach: bool = typer.Option(False, "--detach", help="With --address: deploy, wait for a ready replica and "
                                "exit, leaving the replicas running in the cluster (`serve shutdown` stops them)."),
    log_level: str = typer.Option("warning", "--log-level", help="The replicas' log level: debug | info | "
                                  "warning | error"),
    address: Optional[str] = _ADDRESS,
    cpus: Optional[int] = _CPUS,
) -> None:
    """Run the HTTP service as Ray Serve replicas over a shared store, with an autoscaling config.

    Each replica runs the app of `lmrec serve` with its own engine and follows the others'
    writes through the store (as `lmrec serve --workers`); Serve's HTTP proxy on --host:--port
    spreads the requests. Runs until Ctrl-C / SIGTERM, which deletes the replicas (unless
    --detach)."""
    import signal

    from lmrec.cli.service_cmd import build_config, check_port, check_tls, open_store_or_fail

    if detach and address is None:
        raise fail("--detach needs --address (a cluster that outlives this command)")
    try:
        from lmrec.distributed.serve import ReplicaOptions, require_serve

        require_serve()
        opts = ReplicaOptions(min_replicas=min_replicas, max_replicas=max_replicas,
                              initial_replicas=initial_replicas, target_ongoing_requests=target_ongoing,
                              max_ongoing_requests=max_ongoing, upscale_delay_s=upscale_delay,
                              downscale_delay_s=downscale_delay, replica_cpus=replica_cpus,
                              start_attempts=start_attempts)
    except (ImportError, ValueError) as e:
        raise fail(str(e)) from None
    cfg = build_config(home, host=host, port=port, store_url=store_url, encoder=encoder, index=index,
                       no_auth=no_auth, config=config, events_url=events)
    try:
        from lmrec.serving.workers import check_shared_store

        check_shared_store(cfg.store_url())
    except ValueError as e:
        raise fail(str(e).replace("--workers", "Ray Serve replicas")) from None
    if address is None:
        check_port(cfg.host, cfg.port)
    check_tls(cfg)
    open_store_or_fail(cfg.store_url()).close()
    if not cfg.auth_enabled:
        console.print("[bold yellow]warning:[/] authentication is OFF (--no-auth): anyone who can reach "
                      f"{cfg.host}:{cfg.port} can read and write. Use this for local demos only.")
    from lmrec.distributed.serve import deploy, undeploy

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    with _session(address, cpus):
        signal.signal(signal.SIGTERM, _stop)   # after ray.init, whose own handler exits at once
        _line(f"deploying {opts.initial_replicas or max(opts.min_replicas, 1)} replica(s) (autoscaling "
              f"{opts.min_replicas}..{opts.max_replicas}, target {opts.target_ongoing_requests:g} ongoing "
              f"requests per replica) over {cfg.store_url().split('?')[0]}")
        try:
            deploy(cfg, opts, log_level=log_level)
        except (ValueError, RuntimeError) as e:
            raise fail(one_line(e)) from None
        scheme = "https" if cfg.ssl_certfile else "http"
        _line(f"serving through Ray Serve's proxy on {scheme}://{cfg.host}:{cfg.port}")
        if detach:
            _line("detached: the replicas keep running in the cluster (`serve shutdown` or "
                  "`serve.delete('lmrec')` stops them)")
            return
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            _line("stopping the replicas")
        finally:
            undeploy()
