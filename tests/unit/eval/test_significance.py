"""Paired bootstrap, user alignment and one-run confidence intervals."""

import numpy as np
import pytest

from lmrec.eval.evaluator import EvalResult
from lmrec.eval.significance import compare, mean_ci, paired_bootstrap


def test_same_distribution_interval_covers_zero():
    rng = np.random.default_rng(1)
    a = (rng.random(800) < 0.3).astype(float)  # HR-like 0/1 values of two equally good runs
    b = (rng.random(800) < 0.3).astype(float)
    r = paired_bootstrap(a, b, n_boot=1000, seed=0)
    assert r.ci_low < 0 < r.ci_high and not r.significant
    assert r.p_value > 0.05
    assert r.mean_diff == pytest.approx(a.mean() - b.mean())
    assert r.n == 800 and r.n_boot == 1000


def test_clear_difference_excludes_zero():
    rng = np.random.default_rng(2)
    b = rng.random(500)
    a = b + 0.05 + 0.02 * rng.standard_normal(500)
    r = paired_bootstrap(a, b, n_boot=1000)
    assert r.ci_low > 0 and r.significant
    assert r.p_value < 0.01
    # the +1 correction: never exactly 0
    assert r.p_value == pytest.approx(1 / 1001)
    assert paired_bootstrap(b, a, n_boot=1000).ci_high < 0


def test_identical_runs_and_determinism():
    x = np.random.default_rng(3).random(200)
    r = paired_bootstrap(x, x)
    assert (r.mean_diff, r.ci_low, r.ci_high, r.p_value) == (0.0, 0.0, 0.0, 1.0)
    y = x[::-1].copy()
    assert paired_bootstrap(x, y, seed=5) == paired_bootstrap(x, y, seed=5)


def test_bad_inputs():
    with pytest.raises(ValueError, match="same users: a has 3 values, b has 2"):
        paired_bootstrap(np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="NaN"):
        paired_bootstrap(np.array([1.0, np.nan]), np.ones(2))
    with pytest.raises(ValueError, match="alpha"):
        paired_bootstrap(np.ones(3), np.ones(3), alpha=1.5)


def _result(users, values):
    return EvalResult(metrics={"HR@10": float(np.mean(values))}, per_user={"HR@10": np.asarray(values, float)},
                      users=np.asarray(users))


def test_compare_aligns_by_user():
    a = _result([0, 1, 2, 3], [1, 0, 1, 1])
    b = _result([1, 2, 3, 4], [1, 0, 0, 1])
    # common users 1, 2, 3: a = [0, 1, 1], b = [1, 0, 0] -> mean diff (-1 + 1 + 1) / 3
    r = compare(a, b, "HR@10", n_boot=200)
    assert r.mean_diff == pytest.approx(1 / 3) and r.n == 3
    with pytest.raises(KeyError, match="NDCG@10"):
        compare(a, b, "NDCG@10")
    with pytest.raises(ValueError, match="no evaluated user in common"):
        compare(a, _result([7, 8], [1, 1]), "HR@10")


def test_mean_ci():
    # [1, 2, 3, 4]: mean 2.5, sd = sqrt(5/3) = 1.29099, se = sd / 2 = 0.645497,
    # 95% normal interval 2.5 -+ 1.959964 * 0.645497 = [1.23485, 3.76515]
    ci = mean_ci(np.array([1.0, 2.0, 3.0, 4.0]))
    assert ci.mean == 2.5 and ci.se == pytest.approx(0.645497, abs=1e-6)
    assert (ci.ci_low, ci.ci_high) == pytest.approx((1.23485, 3.76515), abs=1e-5)
    boot = mean_ci(np.random.default_rng(0).random(300), method="bootstrap", n_boot=500)
    assert boot.ci_low < boot.mean < boot.ci_high
    with pytest.raises(ValueError, match="method"):
        mean_ci(np.ones(3), method="exact")
