"""Training machinery shared by the trainable (torch) recommenders.

What every trained model here gets, in one place so models only write their loss:

- `TrainConfig`: the optimisation fields of a model config (AdamW, linear warm-up, weight
  decay, gradient clipping, early stopping, FGM, seed, threads);
- `seed_everything` and `torch_threads`: runs repeat exactly (python, numpy and torch seeds;
  a fixed number of intra-op threads, by default the cores this process may use);
- `build_optimizer` / `warmup_schedule`: AdamW without weight decay on biases, norms and
  other 1-d parameters, and a learning rate that rises linearly over the first steps;
- `fgm_backward`: the fast gradient method (Miyato et al., "Adversarial training methods for
  semi-supervised text classification", ICLR 2017) on an embedding table;
- `ndcg_at_k`: exact full-ranking NDCG@k of one held-out item per user, with the evaluator's
  conventions (masked items never rank, ties go to the lower item index);
- `fit_loop`: epochs with a rich progress bar showing the loss and the running validation
  metric, early stopping on it, and the best epoch's weights restored at the end.

torch is imported lazily: importing this module costs nothing without it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from lmrec.component import ComponentConfig

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
__all__ = ["TrainConfig", "TrainHistory", "require_torch", "available_cores", "seed_everything",
           "torch_threads", "build_optimizer", "warmup_schedule", "fgm_delta", "fgm_backward", "ndcg_at_k",
           "fit_loop"]


def require_torch() -> Any:
    """The torch module, or an ImportError saying which extra installs it."""
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is installed with the lm extra
        raise ImportError("trained models need torch: pip install torch==2.13.0 'lmrec[lm]'") from e
    return torch


class TrainConfig(ComponentConfig):
    """Optimisation fields shared by trained models.

    epochs: the most passes over the training windows. batch_size, lr: AdamW's. weight_decay:
    decoupled (AdamW) decay of the weight matrices and embeddings. warmup_steps: optimiser
    steps over which the learning rate rises linearly from lr / warmup_steps to lr.
    max_grad_norm: gradient clipping by global norm (0 = none). patience: validations without
    a better NDCG@10 before training stops; eval_every: epochs between validations.
    fgm / fgm_epsilon: adversarial training by the fast gradient method on the item embedding
    table, with a perturbation of L2 norm fgm_epsilon. seed: every random choice (init,
    shuffling, dropout). threads: torch intra-op threads (0 = the cores this process may use).
    """

    epochs: int = Field(200, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    warmup_steps: int = Field(100, ge=0)
    max_grad_norm: float = Field(5.0, ge=0.0)
    patience: int = Field(10, ge=1)
    eval_every: int = Field(1, ge=1)
    fgm: bool = False
    fgm_epsilon: float = Field(1.0, gt=0.0)
    seed: int = 0
    threads: int = Field(0, ge=0)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's global and torch's generators (dropout draws from torch's)."""
    torch = require_torch()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def torch_threads(threads: int = 0) -> Iterator[None]:
    """Run the block with `threads` torch intra-op threads (0: `available_cores()`), then
    restore the previous setting. A fixed count also keeps CPU results bit-identical."""
    torch = require_torch()
    before = torch.get_num_threads()
    torch.set_num_threads(threads or available_cores())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_optimizer(module: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; biases, norm weights and other 1-d parameters get
    no weight decay (shrinking them only fights the normalisation)."""
    torch = require_torch()
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


def warmup_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning rate x (step + 1) / warmup_steps for the first steps, then constant."""
    torch = require_torch()
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0)


def fgm_delta(grad: torch.Tensor, epsilon: float) -> torch.Tensor:
    """FGM's perturbation r = epsilon * g / ||g||_2 (zero when the gradient is zero)."""
    norm = grad.norm()
    return grad * 0.0 if not float(norm) or not math.isfinite(float(norm)) else (epsilon / norm) * grad.detach()


def fgm_backward(embed: Callable[[], torch.Tensor], loss_of: Callable[[torch.Tensor], torch.Tensor],
                 epsilon: float | None = None) -> float:
    """Backward pass of `loss_of(embed())`, plus, when `epsilon` is set, FGM's adversarial term.

    `embed()` builds the embedding table (an ID embedding's weight, or text projections);
    `loss_of(table)` the loss that reads it. With FGM the gradient of the clean loss w.r.t. the
    table gives r = epsilon * g / ||g||, and the loss at table + r is back-propagated too, so
    the parameters get the gradients of clean + adversarial loss. Returns the clean loss.
    """
    table = embed()
    if epsilon:
        table.retain_grad()
    loss = loss_of(table)
    loss.backward()
    if epsilon and table.grad is not None:
        loss_of(embed() + fgm_delta(table.grad, epsilon)).backward()
    return float(loss.detach())


def ndcg_at_k(scores: torch.Tensor, targets: torch.Tensor, k: int = 10) -> torch.Tensor:
    """Per-row NDCG@k of one relevant item per row under full ranking.

    `scores` (b, n_items) with masked items at -inf, `targets` (b,) item indices. The rank of
    the target counts the items scoring higher plus those tied with it at a lower index (the
    evaluator's tie-break), so this equals `lmrec.eval` on the same lists. A masked target
    scores 0.
    """
    torch = require_torch()
    t = scores.gather(1, targets[:, None])
    cols = torch.arange(scores.shape[1], device=scores.device)[None, :]
    rank = (scores > t).sum(1) + ((scores == t) & (cols < targets[:, None])).sum(1)
    gain = 1.0 / torch.log2(rank.to(torch.float64) + 2.0)
    return torch.where((rank < k) & torch.isfinite(t[:, 0]), gain, torch.zeros_like(gain))


@dataclass
class TrainHistory:
    """What `fit_loop` did: per-epoch loss and validation NDCG@10, the best epoch, times."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_valid: float | None = None
    stopped_early: bool = False
    train_s: float = 0.0
    valid_users: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _EarlyStopping:
    """Keeps the best state seen so far and counts validations without improvement."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best: float = -math.inf
        self.best_epoch = 0
        self.bad = 0
        self.state: dict[str, Any] | None = None

    def update(self, value: float, epoch: int, module: torch.nn.Module) -> bool:
        """Record a validation; True when training should stop."""
        if value > self.best:
            self.best, self.best_epoch, self.bad = value, epoch, 0
            self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            self.bad += 1
        return self.bad >= self.patience


def _progress(enabled: bool, description: str, total: int) -> tuple[Any, Any]:
    if not enabled:
        return contextlib.nullcontext(), None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]}  valid NDCG@10 {task.fields[valid]}  "
                               "best {task.fields[best]}"), TimeElapsedColumn(), transient=True)
    task = prog.add_task(description, total=total, loss="-", valid="-", best="-")
    return prog, task


def fit_loop(module: torch.nn.Module, config: TrainConfig, *,
             batches: Callable[[np.random.Generator], Iterable[Any]],
             step: Callable[[Any], float],
             validate: Callable[[], float] | None = None,
             progress: bool = False, description: str = "training") -> TrainHistory:
    """Train `module` for up to `config.epochs` epochs and return what happened.

    `batches(rng)` yields one epoch's batches (shuffled with `rng`); `step(batch)` runs the
    forward and backward passes and returns the loss (the loop zeroes gradients, clips them,
    steps AdamW and the warm-up schedule). `validate()` returns the validation NDCG@10 (it
    runs under `torch.no_grad()` in eval mode) every `eval_every` epochs: training stops after
    `patience` validations without improvement and the best epoch's weights are restored.
    Each epoch is also logged (logger `lmrec.models.training`, level INFO) for runs without a
    terminal.
    """
    torch = require_torch()
    opt = build_optimizer(module, config.lr, config.weight_decay)
    sched = warmup_schedule(opt, config.warmup_steps)
    rng = np.random.default_rng(config.seed)
    stopper = _EarlyStopping(config.patience)
    history = TrainHistory()
    params = [p for p in module.parameters() if p.requires_grad]
    t_start = time.perf_counter()
    prog, task = _progress(progress, description, config.epochs)
    with prog:
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            module.train()
            total, n = 0.0, 0
            for batch in batches(rng):
                opt.zero_grad(set_to_none=True)
                loss = step(batch)
                if not math.isfinite(loss):
                    raise FloatingPointError(f"{description}: the loss became {loss} at epoch {epoch}; "
                                             "lower lr or raise warmup_steps")
                if config.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                opt.step()
                sched.step()
                total, n = total + loss, n + 1
            record = {"epoch": epoch, "loss": total / max(n, 1)}
            stop = False
            if validate is not None and (epoch % config.eval_every == 0 or epoch == config.epochs):
                module.eval()
                with torch.no_grad():
                    record["valid_NDCG@10"] = value = float(validate())
                stop = stopper.update(value, epoch, module)
            record["seconds"] = time.perf_counter() - t0
            history.epochs.append(record)
            log.info("%s: epoch %d loss %.4f valid NDCG@10 %s (%.1f s)", description, epoch, record["loss"],
                     f"{record['valid_NDCG@10']:.4f}" if "valid_NDCG@10" in record else "-", record["seconds"])
            if task is not None:
                best = "-" if stopper.best == -math.inf else f"{stopper.best:.4f} (epoch {stopper.best_epoch})"
                prog.update(task, advance=1, loss=f"{record['loss']:.4f}",
                            valid=f"{record.get('valid_NDCG@10', float('nan')):.4f}", best=best)
            if stop:
                history.stopped_early = True
                break
    if stopper.state is not None:
        module.load_state_dict(stopper.state)
        history.best_epoch, history.best_valid = stopper.best_epoch, stopper.best
    else:
        history.best_epoch = len(history.epochs)
    module.eval()
    history.train_s = time.perf_counter() - t_start
    return history
