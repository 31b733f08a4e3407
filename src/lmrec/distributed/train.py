"""Data-parallel training of SASRec: torch DDP with the gloo backend in N CPU workers.

Each worker holds a full copy of the network (same seed, and rank 0's initial weights are
broadcast, as `DistributedDataParallel` does) and walks the same shuffled sequence of global
batches as single-process training (`lmrec.models.sasrec.SASRec`, `fit_loop`). Worker r takes
windows r, r + N, r + 2N, ... of every global batch, computes the *sum* of its positions'
cross-entropy divided by the global batch's number of positions, and after the backward pass
the gradients are summed over workers with one all-reduce. Every worker then holds the
gradient of the global batch's mean loss, so clipping, AdamW, the warm-up schedule and early
stopping (`fit_loop`, unchanged) take the same step in every worker, and the same step as one
process training on the whole batch: the parameters agree with single-process training up to
float rounding (tests/integration/test_ray.py checks it).

Launchers: Ray Train's `TorchTrainer` (`launcher="ray"`, which creates the gloo process group
in its workers; needs `lmrec[ray]`) or plain `torch.multiprocessing` processes on this machine
(`launcher="processes"`). Rank 0 saves the fitted model as a folder (`TorchRecommender.save`),
which becomes an ordinary `SASRec` (`SASRec.load`), whatever trained it.

Not supported in data-parallel training: FGM (`fgm=True`: its perturbation needs the global
gradient of the embedding table before the second backward pass). With dropout > 0 the
workers draw their own masks, so results match single-process training only in distribution.
"""

from __future__ import annotations

import io
import socket
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from lmrec.data.dataset import Dataset, Interactions

__all__ = ["train_sasrec_ddp", "DataParallelSASRec"]


def _model_class() -> type:
    """`DataParallelSASRec`, defined on first use so importing this module needs no torch."""
    global DataParallelSASRec
    if isinstance(DataParallelSASRec, type):
        return DataParallelSASRec
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    from lmrec.models.sasrec import SASRec
    from lmrec.models.sequences import IGNORE, Histories
    from lmrec.models.training import fit_loop, seed_everything, torch_threads

    class _DataParallelSASRec(SASRec):
        """SASRec whose `fit` is one worker's part of data-parallel training (torch.distributed
        must be initialised). Saved folders are plain "sasrec" folders."""

        def _fit(self, matrix: sp.csr_matrix, train: Interactions, dataset: Dataset) -> None:
            cfg = self.config
            if cfg.fgm:
                raise ValueError("data-parallel SASRec does not support fgm=True")
            if not dist.is_initialized():
                raise RuntimeError("torch.distributed is not initialised: use train_sasrec_ddp")
            rank, world = dist.get_rank(), dist.get_world_size()
            self.histories = Histories.from_interactions(train, self.n_users)
            self.item_counts = np.bincount(train.item, minlength=self.n_items).astype(np.int64)
            fit_hist, val_users, val_targets = self.histories.holdout_last()
            spans = fit_hist.windows(cfg.max_len, cfg.windows)
            if not len(spans):
                raise ValueError(f"{self.name}: no user has 3 or more training events; nothing to learn "
                                 "the next item from")
            with torch_threads(cfg.threads):
                seed_everything(cfg.seed)
                self.network = net = self._build_network(dataset, None)
                for tensor in net.state_dict().values():  # every worker starts from rank 0's weights
                    dist.broadcast(tensor, src=0)
                params = [p for p in net.parameters() if p.requires_grad]

                def batches(rng: np.random.Generator):
                    order = rng.permutation(len(spans))  # the same order in every worker
                    for s in range(0, len(order), cfg.batch_size):
                        window = spans[order[s:s + cfg.batch_size]]
                        positions = int((window[:, 1] - window[:, 0] - 1).sum())
                        inputs, targets = fit_hist.training_batch(window[rank::world])
                        yield torch.from_numpy(inputs), torch.from_numpy(targets), positions

                def step(batch: tuple[torch.Tensor, torch.Tensor, int]) -> float:
                    inputs, targets, positions = batch
                    table = net.table()
                    keep = targets != IGNORE
                    if bool(keep.any()):
                        h = net.hidden_states(inputs, table)
                        loss = F.cross_entropy(h[keep] @ table[1:].T, targets[keep], reduction="sum") / positions
                    else:  # this worker's share of a short last batch is empty
                        loss = table.sum() * 0.0
                    loss.backward()
                    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
                    flat = torch.cat([g.reshape(-1) for g in grads] + [loss.detach().reshape(1)])
                    dist.all_reduce(flat, op=dist.ReduceOp.SUM)  # gradient of the global mean loss
                    offset = 0
                    for p in params:
                        n = p.numel()
                        p.grad = flat[offset:offset + n].view_as(p).clone()
                        offset += n
                    return float(flat[-1])

                def validate() -> float:
                    return self._valid_ndcg(fit_hist, val_users, val_targets)

                self.train_history = fit_loop(net, cfg, batches=batches, step=step,
                                              validate=validate if len(val_users) else None,
                                              progress=self.show_progress and rank == 0,
                                              description=f"{self.name} epochs (DDP, {world} workers)")
                self.train_history.valid_users = int(len(val_users))

    _DataParallelSASRec.__name__ = _DataParallelSASRec.__qualname__ = "DataParallelSASRec"
    DataParallelSASRec = _DataParallelSASRec
    return _DataParallelSASRec


DataParallelSASRec: Any = None  # the class, once `_model_class()` has run


def _pack(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in sorted(folder.iterdir()):
            tar.add(f, arcname=f.name)
    return buf.getvalue()


def _unpack(data: bytes, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(folder, filter="data")
    return folder


def _train_worker(train: Interactions, dataset: Dataset, params: Mapping[str, Any]) -> bytes | None:
    """One worker of an initialised process group: fit; rank 0 returns the saved folder as a tar."""
    import torch.distributed as dist

    model = _model_class()(**dict(params))
    model.fit(train, dataset)
    if dist.get_rank() != 0:
        return None
    with tempfile.TemporaryDirectory(prefix="lmrec-ddp-") as tmp:
        return _pack(model.save(Path(tmp) / "model"))


# --- launcher: Ray Train ---------------------------------------------------------------------------
def _ray_train_loop(config: dict[str, Any]) -> None:
    import ray
    import ray.train

    train, dataset = ray.get(config["data"])
    packed = _train_worker(train, dataset, config["params"])
    if packed is None:
        ray.train.report({"rank": ray.train.get_context().get_world_rank()})
        return
    with tempfile.TemporaryDirectory(prefix="lmrec-ddp-ckpt-") as tmp:
        _unpack(packed, Path(tmp))
        ray.train.report({"rank": 0}, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _launch_ray(train: Interactions, dataset: Dataset, params: dict[str, Any], num_workers: int,
                folder: Path) -> None:
    from lmrec.distributed.runtime import require_ray

    ray = require_ray()
    from ray.train import RunConfig, ScalingConfig

    cpus = int(ray.cluster_resources().get("CPU", 0))
    if cpus < num_workers:  # Ray Train would wait for the missing CPUs forever
        raise ValueError(f"{num_workers} DDP workers need {num_workers} CPUs; the Ray cluster has {cpus}")
    from ray.train.torch import TorchConfig, TorchTrainer

    with tempfile.TemporaryDirectory(prefix="lmrec-ray-train-") as storage:
        trainer = TorchTrainer(
            _ray_train_loop,
            train_loop_config={"data": ray.put((train, dataset)), "params": params},
            torch_config=TorchConfig(backend="gloo"),
            scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=False, resources_per_worker={"CPU": 1}),
            run_config=RunConfig(name=f"sasrec-ddp-{uuid.uuid4().hex[:8]}", storage_path=storage),
        )
        result = trainer.fit()
        if result.checkpoint is None:
            raise RuntimeError(f"Ray Train finished without a checkpoint: {result.error!r}")
        with result.checkpoint.as_directory() as d:
            _unpack(_pack(Path(d)), folder)


# --- launcher: plain processes ---------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _process_main(rank: int, world: int, port: int, data: tuple[Interactions, Dataset, dict[str, Any]],
                  folder: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        packed = _train_worker(*data)
        if packed is not None:
            _unpack(packed, Path(folder))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _launch_processes(train: Interactions, dataset: Dataset, params: dict[str, Any], num_workers: int,
                      folder: Path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_process_main, args=(num_workers, _free_port(), (train, dataset, params), str(folder)),
             nprocs=num_workers, join=True)


def train_sasrec_ddp(train: Interactions, dataset: Dataset, params: Mapping[str, Any] | None = None, *,
                     num_workers: int = 2, launcher: Literal["ray", "processes"] = "ray",
                     out: str | Path | None = None, report: Callable[[str], None] | None = None) -> Any:
    """SASRec with `params` fitted on `train` (indices over `dataset`) by data-parallel training in
    `num_workers` workers (see the module docstring); returns the fitted `SASRec`, also saved to
    the folder `out` when given. With `launcher="ray"` a Ray cluster must be connected
    (`ray_session()`)."""
    from lmrec.models.sasrec import SASRec

    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}")
    if launcher not in ("ray", "processes"):
        raise ValueError(f"launcher must be 'ray' or 'processes', got {launcher!r}")
    params = dict(params or {})
    cfg = SASRec.Config(**params)  # bad parameters fail here, not in a worker
    if cfg.fgm:
        raise ValueError("data-parallel SASRec does not support fgm=True")
    say = report or (lambda line: None)
    t0 = time.perf_counter()
    say(f"training sasrec on {len(train)} events in {num_workers} DDP workers ({launcher})")
    with tempfile.TemporaryDirectory(prefix="lmrec-ddp-out-") as tmp:
        folder = Path(out) if out is not None else Path(tmp) / "model"
        (_launch_ray if launcher == "ray" else _launch_processes)(train, dataset, params, num_workers, folder)
        model = SASRec.load(folder)
    h = model.train_history
    say(f"trained in {time.perf_counter() - t0:.1f} s: {len(h.epochs) if h else 0} epochs, best epoch "
        f"{h.best_epoch if h else '-'}")
    return model

