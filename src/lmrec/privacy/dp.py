"""Differential privacy: accountants, per-user DP-SGD and noisy counts.

Three pieces, each stating its privacy unit:

- **Accounting** (`noise_for_epsilon`, `epsilon_spent`): Opacus' RDP or PRV accountant for the
  sampled Gaussian mechanism (Poisson sampling at `sample_rate`, `steps` compositions); the
  first finds the noise multiplier that reaches a target (epsilon, delta), the second what a
  run spent. Opacus is an optional dependency (`pip install 'lmrec[privacy]'`).
- **Per-user DP-SGD** (`DPSGD`): one step samples *users* (Poisson, rate q), computes one
  gradient per sampled user (all of that user's examples in the step go through one loss, so
  the clipped quantity is the user's whole contribution), clips each to L2 norm C, sums, adds
  N(0, (sigma C)^2) per coordinate and divides by the expected number of users q N. The
  privacy unit is the user: neighbouring data sets differ by all events of one user
  (add/remove). Per-user gradients come from `torch.func` (vmap over users of grad).
- **Noisy counts** (`noisy_counts`): per-item counts released with the Laplace or Gaussian
  mechanism. The caller bounds each user's contribution (`bound_contributions`: at most `c`
  distinct items per user, each counted once), so the L1 sensitivity is c and the L2
  sensitivity sqrt(c). The Gaussian noise is calibrated with the analytic Gaussian mechanism
  (Balle and Wang, ICML 2018), valid for any epsilon > 0.

Example:
    >>> import numpy as np
    >>> users, items = np.array([0, 0, 0, 1]), np.array([1, 1, 2, 2])
    >>> bound_contributions(users, items, max_items=1, rng=np.random.default_rng(0)).tolist()
    [0, 1]
    >>> noisy = noisy_counts(np.array([10.0, 0.0]), epsilon=1.0, sensitivity=1.0, mechanism="laplace", seed=0)
    >>> noisy.shape
    (2,)
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["require_opacus", "noise_for_epsilon", "epsilon_spent", "DPReport", "DPSGD", "DPFields", "clip_and_noise",
           "pick_rows", "save_report", "load_report", "bound_contributions", "laplace_scale", "gaussian_sigma",
           "noisy_counts"]

Accountant = Literal["rdp", "prv"]
Mechanism = Literal["laplace", "gaussian"]


def require_opacus() -> Any:
    """The opacus module, or an ImportError naming the extra that installs it."""
    try:
        import opacus
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("differential privacy needs opacus: pip install 'lmrec[privacy]'") from e
    return opacus


def _accountant(kind: Accountant) -> Any:
    require_opacus()
    from opacus.accountants import PRVAccountant, RDPAccountant

    if kind == "rdp":
        return RDPAccountant()
    if kind == "prv":
        return PRVAccountant()
    raise ValueError(f"accountant must be 'rdp' or 'prv', got {kind!r}")


def noise_for_epsilon(epsilon: float, delta: float, sample_rate: float, steps: int,
                      accountant: Accountant = "rdp") -> float:
    """The smallest noise multiplier sigma (to Opacus' tolerance) with which `steps` steps of
    the sampled Gaussian mechanism at `sample_rate` stay within (epsilon, delta)."""
    require_opacus()
    from opacus.accountants.utils import get_noise_multiplier

    if not (epsilon > 0 and 0 < delta < 1 and 0 < sample_rate <= 1 and steps >= 1):
        raise ValueError(f"need epsilon > 0, 0 < delta < 1, 0 < sample_rate <= 1, steps >= 1; got "
                         f"{epsilon}, {delta}, {sample_rate}, {steps}")
    with warnings.catch_warnings():  # "optimal order is the largest alpha": the bound still holds
        warnings.simplefilter("ignore", UserWarning)
        return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                          steps=steps, accountant=accountant, epsilon_tolerance=0.01))


def epsilon_spent(noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                  accountant: Accountant = "rdp") -> float:
    """Epsilon at `delta` of `steps` steps of the sampled Gaussian mechanism."""
    acc = _accountant(accountant)
    acc.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(acc.get_epsilon(delta=delta))


@dataclass
class DPReport:
    """What a DP training run guarantees, saved with the model and written in results rows."""

    epsilon: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    accountant: str
    unit: str = "user"
    target_epsilon: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


class DPFields(BaseModel):
    """The DP-SGD parameters shared by every model that trains with `DPSGD` (mixed into its
    config). dp_epsilon: target epsilon (None = no DP; inf = the same procedure without noise,
    a reference without privacy). dp_delta: the delta of the guarantee (below 1 / n_users).
    dp_max_grad_norm: the L2 bound C of each user's gradient. dp_users_per_step: expected users
    per step (Poisson sampling at q = dp_users_per_step / n_users, capped at 1); the run takes
    round(epochs / q) steps, `epochs` being expected passes over the users. dp_accountant: "rdp"
    or "prv" (Opacus)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dp_epsilon: float | None = Field(None, gt=0.0, allow_inf_nan=True)
    dp_delta: float = Field(1e-5, gt=0.0, lt=1.0)
    dp_max_grad_norm: float = Field(1.0, gt=0.0)
    dp_users_per_step: int = Field(256, ge=1)
    dp_accountant: Accountant = "rdp"


def clip_and_noise(per_user: Mapping[str, Any], max_norm: float, noise_multiplier: float,
                   expected_batch: float, generator: Any = None) -> tuple[dict[str, Any], Any]:
    """The DP-SGD gradient from per-user gradients.

    `per_user` maps parameter names to tensors (U, *shape): row u is user u's gradient. Each
    user's gradient (over all parameters together) is scaled to L2 norm at most `max_norm`;
    the clipped gradients are summed, N(0, (noise_multiplier * max_norm)^2) is added to every
    coordinate and the result divided by `expected_batch` (q N under Poisson sampling; a fixed
    denominator, so the step does not reveal how many users were drawn). Returns the noisy
    gradients and the per-user norms before clipping.
    """
    import torch

    names = list(per_user)
    if not names:
        raise ValueError("no gradients")
    u = next(iter(per_user.values())).shape[0]
    if u:
        norms = torch.sqrt(sum(per_user[k].reshape(u, -1).pow(2).sum(1) for k in names))
        factor = (max_norm / (norms + 1e-12)).clamp(max=1.0)
    else:
        norms = torch.zeros(0)
        factor = torch.zeros(0)
    out = {}
    for k in names:
        g = per_user[k]
        total = torch.einsum("u,u...->...", factor.to(g.dtype), g) if u else torch.zeros(g.shape[1:], dtype=g.dtype)
        noise = torch.normal(0.0, noise_multiplier * max_norm, size=total.shape, generator=generator,
                             dtype=total.dtype) if noise_multiplier > 0 else 0.0
        out[k] = (total + noise) / expected_batch
    return out, norms


class DPSGD:
    """Per-user DP-SGD over a torch module's trainable parameters.

    `loss_of_user(params, *user_inputs, *shared_inputs)` is the loss of one user (its inputs
    carry no batch dimension over users); `step(user_inputs, shared_inputs)` vmaps its
    gradient over the leading (user) dimension of `user_inputs`, clips, noises and writes
    `.grad` of the module's parameters, ready for the optimiser. Poisson sampling of users is
    the caller's (`sample_users`), with the same `sample_rate` given here for the denominator.

    With `target_epsilon`, sigma is calibrated for `steps` steps at `sample_rate` (infinity:
    no noise, clipping only, no privacy: the reference run); `report()` gives the (epsilon,
    delta) of the steps actually taken.
    """

    def __init__(self, module: Any, loss_of_user: Callable[..., Any], *, n_users: int, sample_rate: float,
                 steps: int, max_grad_norm: float, delta: float, target_epsilon: float | None = None,
                 noise_multiplier: float | None = None, accountant: Accountant = "rdp", seed: int = 0,
                 chunk_size: int | None = None) -> None:
        import torch

        if (target_epsilon is None) == (noise_multiplier is None):
            raise ValueError("give exactly one of target_epsilon and noise_multiplier")
        if max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be > 0, got {max_grad_norm}")
        if not (0 < sample_rate <= 1 and 0 < delta < 1 and steps >= 1 and n_users >= 1):
            raise ValueError(f"need 0 < sample_rate <= 1, 0 < delta < 1, steps >= 1, n_users >= 1; got "
                             f"{sample_rate}, {delta}, {steps}, {n_users}")
        self.chunk_size = chunk_size
        self.module, self.loss_of_user = module, loss_of_user
        self.n_users, self.sample_rate, self.steps_planned = n_users, float(sample_rate), int(steps)
        self.max_grad_norm, self.delta, self.accountant = float(max_grad_norm), float(delta), accountant
        self.target_epsilon = target_epsilon
        if target_epsilon is not None and math.isinf(target_epsilon):
            self.noise_multiplier = 0.0  # clipping only: the procedure without privacy, for reference
        elif target_epsilon is not None:
            self.noise_multiplier = noise_for_epsilon(target_epsilon, delta, sample_rate, steps, accountant)
        else:
            self.noise_multiplier = float(noise_multiplier or 0.0)
        self.steps_taken = 0
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.names = [n for n, p in module.named_parameters() if p.requires_grad]

    @classmethod
    def from_config(cls, module: Any, loss_of_user: Callable[..., Any], config: DPFields, *, n_users: int,
                    epochs: float, seed: int = 0, chunk_size: int | None = None) -> DPSGD:
        """The DPSGD of a model config with `DPFields`: q = dp_users_per_step / n_users (at most
        1) and round(epochs / q) steps, sigma calibrated to dp_epsilon at dp_delta."""
        if config.dp_epsilon is None:
            raise ValueError("dp_epsilon is None: differential privacy is off")
        if n_users < 1:
            raise ValueError("DP-SGD needs at least one user")
        q = min(1.0, config.dp_users_per_step / n_users)
        steps = max(1, int(round(epochs / q)))
        return cls(module, loss_of_user, n_users=n_users, sample_rate=q, steps=steps,
                   max_grad_norm=config.dp_max_grad_norm, delta=config.dp_delta, target_epsilon=config.dp_epsilon,
                   accountant=config.dp_accountant, seed=seed, chunk_size=chunk_size)

    def sample_users(self, candidates: np.ndarray | None = None) -> np.ndarray:
        """Poisson sampling: each user (of `candidates`, default all) independently with
        probability `sample_rate`."""
        users = np.arange(self.n_users) if candidates is None else np.asarray(candidates)
        return users[self.rng.random(len(users)) < self.sample_rate]

    def per_user_grads(self, user_inputs: tuple, shared_inputs: tuple = ()) -> dict[str, Any]:
        """Gradients (U, *shape) of `loss_of_user` for each user's inputs."""
        from torch.func import functional_call, grad, vmap

        params = {n: p.detach() for n, p in self.module.named_parameters() if n in self.names}
        frozen = {n: p.detach() for n, p in self.module.named_parameters() if n not in self.names}
        buffers = dict(self.module.named_buffers())

        def one(p: dict, *ins: Any) -> Any:
            return self.loss_of_user(lambda *a, **kw: functional_call(self.module, {**p, **frozen, **buffers}, a, kw),
                                     *ins)

        n_user = len(user_inputs)
        g = vmap(grad(one), in_dims=(None,) + (0,) * n_user + (None,) * len(shared_inputs),
                 randomness="different", chunk_size=self.chunk_size)
        return g(params, *user_inputs, *shared_inputs)

    def step(self, user_inputs: tuple, shared_inputs: tuple = ()) -> dict[str, float]:
        """Write the noisy clipped mean gradient into `.grad`; returns step statistics."""
        n = int(user_inputs[0].shape[0]) if user_inputs else 0
        if n:
            per_user = self.per_user_grads(user_inputs, shared_inputs)
        else:  # nobody drawn: the step is pure noise, as the mechanism requires
            per_user = {k: p.detach()[None].mul(0)[:0] for k, p in self.module.named_parameters() if k in self.names}
        noisy, norms = clip_and_noise(per_user, self.max_grad_norm, self.noise_multiplier,
                                      self.sample_rate * self.n_users, self.generator)
        for name, p in self.module.named_parameters():
            if name in noisy:
                p.grad = noisy[name].to(p.dtype)
        self.steps_taken += 1
        return {"users": n, "clipped": float((norms > self.max_grad_norm).float().mean()) if n else 0.0,
                "median_norm": float(norms.median()) if n else 0.0}

    def report(self) -> DPReport:
        eps = (epsilon_spent(self.noise_multiplier, self.sample_rate, self.steps_taken, self.delta, self.accountant)
               if self.noise_multiplier > 0 and self.steps_taken else math.inf)
        return DPReport(epsilon=eps, delta=self.delta, noise_multiplier=self.noise_multiplier,
                        sample_rate=self.sample_rate, steps=self.steps_taken, max_grad_norm=self.max_grad_norm,
                        accountant=self.accountant, target_epsilon=self.target_epsilon)


def pick_rows(ptr: np.ndarray, users: np.ndarray, m: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Up to `m` of each user's rows, for one DP-SGD step: user u owns rows ptr[u]:ptr[u + 1]
    (rows sorted by user); a user with more than m gets a random m of them. Returns rows
    (U, m) int64 (0 where padded) and mask (U, m) float32 (1 = a real row)."""
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    users = np.asarray(users, np.int64)
    rows = np.zeros((len(users), m), np.int64)
    mask = np.zeros((len(users), m), np.float32)
    for r, u in enumerate(users.tolist()):
        own = np.arange(ptr[u], ptr[u + 1])
        pick = own if len(own) <= m else rng.choice(own, m, replace=False)
        rows[r, :len(pick)], mask[r, :len(pick)] = pick, 1.0
    return rows, mask


REPORT_FILE = "privacy.json"


def save_report(path: str | Path, report: Mapping[str, Any] | DPReport | None) -> None:
    """Write a model's DP guarantee beside its weights (`<path>/privacy.json`); nothing when
    the model was trained without DP."""
    if report is None:
        return
    d = report.to_dict() if isinstance(report, DPReport) else dict(report)
    Path(path, REPORT_FILE).write_text(json.dumps(d, indent=2, sort_keys=True, default=str))


def load_report(path: str | Path) -> dict[str, Any] | None:
    """The DP guarantee saved by `save_report`, or None (a model trained without DP)."""
    f = Path(path, REPORT_FILE)
    return json.loads(f.read_text()) if f.is_file() else None


# --- noisy counts ------------------------------------------------------------------------------
def bound_contributions(users: np.ndarray, items: np.ndarray, max_items: int,
                        rng: np.random.Generator | None = None) -> np.ndarray:
    """Indices of the events kept so that each user counts each item once and at most
    `max_items` distinct items (a random choice of them when the user has more). After this,
    adding or removing one user changes a count vector by at most `max_items` in L1 and
    sqrt(`max_items`) in L2."""
    if max_items < 1:
        raise ValueError(f"max_items must be >= 1, got {max_items}")
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    if not len(users):
        return np.zeros(0, np.int64)
    rng = rng or np.random.default_rng(0)
    pair = np.stack([users, items], 1)
    _, first = np.unique(pair, axis=0, return_index=True)  # one event per (user, item)
    first = np.sort(first)
    order = first[np.lexsort((rng.random(len(first)), users[first]))]  # random order within each user
    u = users[order]
    starts = np.r_[0, np.flatnonzero(np.diff(u)) + 1]
    rank = np.arange(len(u)) - np.repeat(starts, np.diff(np.r_[starts, len(u)]))
    return np.sort(order[rank < max_items])


def laplace_scale(epsilon: float, l1_sensitivity: float) -> float:
    """Scale b of the Laplace mechanism: b = Delta_1 / epsilon (pure epsilon-DP)."""
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    return l1_sensitivity / epsilon


def gaussian_sigma(epsilon: float, delta: float, l2_sensitivity: float) -> float:
    """The smallest sigma for which N(0, sigma^2) noise on a query of L2 sensitivity
    Delta_2 is (epsilon, delta)-DP: the analytic Gaussian mechanism (Balle and Wang 2018,
    Theorem 8), delta(sigma) = Phi(D/(2s) - e s/D) - e^e Phi(-D/(2s) - e s/D), solved by
    bisection. Valid for every epsilon > 0 (the classic sqrt(2 ln(1.25/delta)) bound is not
    for epsilon > 1)."""
    from scipy.stats import norm

    if epsilon <= 0 or not 0 < delta < 1:
        raise ValueError(f"need epsilon > 0 and 0 < delta < 1, got {epsilon}, {delta}")

    def delta_of(s: float) -> float:
        a, b = l2_sensitivity / (2 * s), epsilon * s / l2_sensitivity
        return float(norm.cdf(a - b) - math.exp(epsilon) * norm.cdf(-a - b))

    lo, hi = 1e-6 * l2_sensitivity, l2_sensitivity
    while delta_of(hi) > delta:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if delta_of(mid) > delta else (lo, mid)
    return hi


def noisy_counts(counts: np.ndarray, *, epsilon: float, sensitivity: float, mechanism: Mechanism = "laplace",
                 delta: float = 1e-6, seed: int = 0) -> np.ndarray:
    """`counts` plus Laplace (b = sensitivity / epsilon, `sensitivity` in L1) or Gaussian
    (analytic sigma, `sensitivity` in L2, at `delta`) noise, seeded. Released as is: clipping
    at 0 or ranking them is post-processing and costs no privacy."""
    rng = np.random.default_rng(seed)
    counts = np.asarray(counts, np.float64)
    if mechanism == "laplace":
        return counts + rng.laplace(0.0, laplace_scale(epsilon, sensitivity), size=counts.shape)
    if mechanism == "gaussian":
        return counts + rng.normal(0.0, gaussian_sigma(epsilon, delta, sensitivity), size=counts.shape)
    raise ValueError(f"mechanism must be 'laplace' or 'gaussian', got {mechanism!r}")
