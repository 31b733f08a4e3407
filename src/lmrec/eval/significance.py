"""Is a difference between two runs real? Paired bootstrap over users, and confidence
intervals for one run.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a = rng.random(500); b = a - 0.1
    >>> r = paired_bootstrap(a, b)
    >>> r.significant, round(r.mean_diff, 3)
    (True, 0.1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

if TYPE_CHECKING:
    from lmrec.eval.evaluator import EvalResult

__all__ = ["BootstrapResult", "MeanCI", "paired_bootstrap", "compare", "mean_ci"]

# resample this many replicates at a time, so n_boot x n_users indices never sit in memory at once
_CHUNK_CELLS = 4_000_000


@dataclass(frozen=True)
class BootstrapResult:
    """Mean of a - b over users, its (1 - alpha) percentile interval and a two-sided p-value
    for "no difference"."""

    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int = 0
    n_boot: int = 0
    alpha: float = 0.05

    @property
    def significant(self) -> bool:
        """Whether the interval excludes 0."""
        return self.ci_low > 0 or self.ci_high < 0


@dataclass(frozen=True)
class MeanCI:
    """Mean of one run with a (1 - alpha) confidence interval and the standard error."""

    mean: float
    ci_low: float
    ci_high: float
    se: float


def _values(x: np.ndarray, name: str) -> np.ndarray:
    v = np.asarray(x, dtype=np.float64).ravel()
    if not len(v):
        raise ValueError(f"{name} is empty")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return v


def _boot_means(d: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Means of `n_boot` resamples (with replacement) of `d`."""
    rng = np.random.default_rng(seed)
    n = len(d)
    step = max(1, _CHUNK_CELLS // n)
    out = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, step):
        m = min(step, n_boot - start)
        out[start:start + m] = d[rng.integers(0, n, size=(m, n))].mean(axis=1)
    return out


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0,
                     alpha: float = 0.05) -> BootstrapResult:
    """Paired bootstrap of mean(a - b) for per-user values of two runs over the same users
    (position i of `a` and `b` must be the same user).

    The p-value is two-sided: the share of resampled mean differences, shifted to be centred
    on 0, that are at least as far from 0 as the observed one (with the +1 correction so it
    is never exactly 0).
    """
    a, b = _values(a, "a"), _values(b, "b")
    if len(a) != len(b):
        raise ValueError(f"paired_bootstrap needs per-user values of the same users: a has {len(a)} "
                         f"values, b has {len(b)} (use compare() to align two EvalResults by user)")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    d = a - b
    obs = float(d.mean())
    boots = _boot_means(d, n_boot, seed)
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    extreme = np.abs(boots - obs) >= abs(obs) - 1e-12
    p = (int(extreme.sum()) + 1) / (n_boot + 1)
    return BootstrapResult(obs, float(lo), float(hi), float(min(p, 1.0)), len(d), n_boot, alpha)


def compare(result_a: EvalResult, result_b: EvalResult, metric: str, **kwargs: float | int) -> BootstrapResult:
    """Paired bootstrap of `metric` between two evaluation results (a - b), on the users
    both evaluated (aligned by user index). Keyword arguments go to `paired_bootstrap`."""
    for name, r in (("result_a", result_a), ("result_b", result_b)):
        if metric not in r.per_user:
            raise KeyError(f"{name} has no per-user values for {metric!r}; it has {sorted(r.per_user)}")
    common, ia, ib = np.intersect1d(result_a.users, result_b.users, assume_unique=True, return_indices=True)
    if not len(common):
        raise ValueError("the two results have no evaluated user in common")
    return paired_bootstrap(result_a.per_user[metric][ia], result_b.per_user[metric][ib], **kwargs)


def mean_ci(values: np.ndarray, alpha: float = 0.05, *, method: str = "normal", n_boot: int = 2000,
            seed: int = 0) -> MeanCI:
    """Mean of per-user values with a (1 - alpha) interval: normal approximation
    (mean +- z * se) or a percentile bootstrap (`method="bootstrap"`)."""
    v = _values(values, "values")
    mean = float(v.mean())
    se = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
    if method == "normal":
        z = float(stats.norm.ppf(1 - alpha / 2))
        return MeanCI(mean, mean - z * se, mean + z * se, se)
    if method == "bootstrap":
        lo, hi = np.quantile(_boot_means(v, n_boot, seed), [alpha / 2, 1 - alpha / 2])
        return MeanCI(mean, float(lo), float(hi), se)
    raise ValueError(f"method must be 'normal' or 'bootstrap', got {method!r}")
