"""Differential privacy: accountant round trips, per-user clipping and noise, per-user
gradients against a loop, noisy counts and their sensitivity bound, the DP two-tower."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("opacus", reason="DP-SGD needs opacus: pip install 'lmrec[privacy]'")

from pydantic import ValidationError  # noqa: E402

from lmrec.component import load_model  # noqa: E402
from lmrec.models.two_tower import TwoTowerRecommender  # noqa: E402
from lmrec.privacy.dp import (DPSGD, bound_contributions, clip_and_noise, epsilon_spent, gaussian_sigma,  # noqa: E402
                              noise_for_epsilon, noisy_counts)
from lmrec.recall.popular import MostPopular  # noqa: E402
from lmrec.testing.conformance import RecommenderConformance  # noqa: E402
from lmrec.testing.toy import toy_dataset  # noqa: E402
from lmrec.types import Event  # noqa: E402

DP = dict(encoder="fake", dim=16, hidden=32, epochs=4, lr=1e-2, warmup_steps=0, threads=1, dp_epsilon=8.0,
          dp_delta=1e-3, dp_users_per_step=32, dp_examples_per_user=8, dp_negatives=32)


# --- accounting -------------------------------------------------------------------------------
@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_noise_for_epsilon_round_trips(accountant: str) -> None:
    sigma = noise_for_epsilon(4.0, 1e-5, 0.1, 200, accountant)
    eps = epsilon_spent(sigma, 0.1, 200, 1e-5, accountant)
    assert 3.8 <= eps <= 4.0 + 1e-6
    # more noise, or fewer steps, spends less
    assert epsilon_spent(sigma * 1.5, 0.1, 200, 1e-5, accountant) < eps
    assert epsilon_spent(sigma, 0.1, 50, 1e-5, accountant) < eps


# --- clipping and noise ---------------------------------------------------------------------
def test_clip_and_noise_bounds_each_user() -> None:
    g = {"w": torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]]), "b": torch.tensor([[0.0], [0.0], [10.0]])}
    out, norms = clip_and_noise(g, max_norm=1.0, noise_multiplier=0.0, expected_batch=2.0)
    np.testing.assert_allclose(norms.numpy(), [5.0, 0.5, 10.0], rtol=1e-6)
    # user 0 scaled to norm 1, user 1 untouched, user 2 scaled to norm 1; sum / 2
    np.testing.assert_allclose(out["w"].numpy(), (np.array([0.6, 0.8]) + np.array([0.3, 0.4])) / 2, rtol=1e-6)
    np.testing.assert_allclose(out["b"].numpy(), [0.5], rtol=1e-6)


def test_clip_and_noise_noise_scale() -> None:
    g = {"w": torch.zeros(4, 20000)}
    gen = torch.Generator().manual_seed(0)
    out, _ = clip_and_noise(g, max_norm=2.0, noise_multiplier=1.5, expected_batch=3.0, generator=gen)
    assert float(out["w"].std()) == pytest.approx(1.5 * 2.0 / 3.0, rel=0.03)


def test_per_user_gradients_match_a_loop() -> None:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))

    def loss(call, x, y):  # one user's examples (m, 5), targets (m,)
        return ((call(x)[:, 0] - y) ** 2).mean()

    dp = DPSGD(module, loss, n_users=3, sample_rate=1.0, steps=1, max_grad_norm=1.0, delta=1e-5,
               noise_multiplier=0.0)
    x, y = torch.randn(3, 6, 5), torch.randn(3, 6)
    got = dp.per_user_grads((x, y))
    for u in range(3):
        module.zero_grad()
        loss(module, x[u], y[u]).backward()
        for name, p in module.named_parameters():
            np.testing.assert_allclose(got[name][u].numpy(), p.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_one_user_moves_the_step_by_at_most_the_clip() -> None:
    """Sensitivity: adding a user with an enormous loss changes the summed gradient by <= C."""
    torch.manual_seed(0)
    module = torch.nn.Linear(3, 1)

    def loss(call, x, y):
        return ((call(x)[:, 0] - y) ** 2).mean()

    def step(x, y):
        dp = DPSGD(module, loss, n_users=10, sample_rate=0.5, steps=1, max_grad_norm=0.7, delta=1e-5,
                   noise_multiplier=0.0)
        dp.step((x, y))
        return torch.cat([p.grad.reshape(-1) for p in module.parameters()]) * 5.0  # undo / (q N)

    x, y = torch.randn(4, 5, 3), torch.randn(4, 5)
    without = step(x, y)
    with_outlier = step(torch.cat([x, 100 * torch.ones(1, 5, 3)]), torch.cat([y, -1e4 * torch.ones(1, 5)]))
    assert float((with_outlier - without).norm()) <= 0.7 + 1e-5
    assert float((with_outlier - without).norm()) > 0.69  # the outlier was clipped, not dropped


# --- noisy counts ----------------------------------------------------------------------------
def test_bound_contributions() -> None:
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 20, 2000), rng.integers(0, 30, 2000)
    keep = bound_contributions(users, items, max_items=4, rng=rng)
    pairs = set(zip(users[keep].tolist(), items[keep].tolist()))
    assert len(pairs) == len(keep)  # each (user, item) once
    assert np.bincount(users[keep]).max() <= 4
    assert np.bincount(users[keep], minlength=20).min() == 4  # users with more keep exactly 4
    # removing a user changes the count vector by at most the bound in L1
    full = np.bincount(items[keep], minlength=30)
    for u in range(20):
        assert np.abs(full - np.bincount(items[keep][users[keep] != u], minlength=30)).sum() <= 4


def test_laplace_noise_scale_and_seed() -> None:
    counts = np.zeros(50000)
    a = noisy_counts(counts, epsilon=0.5, sensitivity=3.0, mechanism="laplace", seed=1)
    assert np.std(a) == pytest.approx(math.sqrt(2) * 3.0 / 0.5, rel=0.03)
    np.testing.assert_array_equal(a, noisy_counts(counts, epsilon=0.5, sensitivity=3.0, seed=1))
    assert not np.array_equal(a, noisy_counts(counts, epsilon=0.5, sensitivity=3.0, seed=2))


def test_analytic_gaussian_sigma_is_tight() -> None:
    from scipy.stats import norm

    def delta_of(s, eps, d=1.0):
        a, b = d / (2 * s), eps * s / d
        return norm.cdf(a - b) - math.exp(eps) * norm.cdf(-a - b)

    for eps in (0.1, 1.0, 8.0):
        s = gaussian_sigma(eps, 1e-5, 1.0)
        assert delta_of(s, eps) <= 1e-5 * (1 + 1e-6)
        assert delta_of(0.98 * s, eps) > 1e-5  # no slack
    # below epsilon 1 it needs less noise than the classic bound sqrt(2 ln(1.25 / delta)) / epsilon
    assert gaussian_sigma(0.5, 1e-5, 1.0) < math.sqrt(2 * math.log(1.25 / 1e-5)) / 0.5


def test_popular_noisy_counts() -> None:
    ds = toy_dataset()
    exact = MostPopular().fit(ds.interactions, ds)
    a = MostPopular(dp_epsilon=1.0, dp_max_items=5, seed=3).fit(ds.interactions, ds)
    b = MostPopular(dp_epsilon=1.0, dp_max_items=5, seed=3).fit(ds.interactions, ds)
    np.testing.assert_array_equal(a.popularity, b.popularity)  # seeded
    assert not np.allclose(a.popularity, exact.popularity)
    before = a.popularity.copy()
    a.update([Event(0, 7, 10**9)] * 50)  # online updates would spend budget: not applied
    np.testing.assert_array_equal(a.popularity, before)
    g = MostPopular(dp_epsilon=1.0, dp_mechanism="gaussian", dp_max_items=5).fit(ds.interactions, ds)
    assert np.isfinite(g.popularity).all()
    with pytest.raises(ValidationError, match="half_life_days"):
        MostPopular(dp_epsilon=1.0, half_life_days=7.0)


def test_popular_noise_shrinks_with_epsilon() -> None:
    ds = toy_dataset()
    def pop(eps: float, seed: int) -> np.ndarray:
        return MostPopular(dp_epsilon=eps, dp_max_items=5, seed=seed).fit(ds.interactions, ds).popularity

    # |Laplace(b)| has mean b = 5 / epsilon; epsilon = 1e9 leaves the bounded counts
    err = {e: np.mean([np.abs(pop(e, s) - pop(1e9, s)).mean() for s in range(5)]) for e in (0.5, 8.0)}
    assert err[0.5] == pytest.approx(10.0, rel=0.2)
    assert err[8.0] == pytest.approx(0.625, rel=0.2)


# --- the DP two-tower ------------------------------------------------------------------------
class TestDPTwoTowerConformance(RecommenderConformance):
    """The contract holds with DP on; learning tests run without noise (epsilon = inf, the
    same procedure with clipping only), since toy data has too few users for a useful budget."""

    model_factory = staticmethod(lambda: TwoTowerRecommender(**{**DP, "dp_epsilon": float("inf")}))


def test_dp_two_tower_reports_its_budget(tmp_path) -> None:
    ds = toy_dataset()
    model = TwoTowerRecommender(**DP).fit(ds.interactions, ds)
    dp = model.train_info["dp"]
    assert dp["unit"] == "user" and dp["delta"] == 1e-3
    assert 7.0 <= dp["epsilon"] <= 8.0 + 1e-6 and dp["noise_multiplier"] > 0
    assert dp["steps"] == round(4 / (32 / ds.n_users))
    model.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["train"]["dp"]["epsilon"] == dp["epsilon"]
    again = load_model(tmp_path / "m")
    assert again.train_info["dp"] == dp
    np.testing.assert_allclose(again.score(np.arange(5)), model.score(np.arange(5)), rtol=1e-5, atol=1e-6)


def test_dp_two_tower_noise_changes_the_weights() -> None:
    ds = toy_dataset()
    a = TwoTowerRecommender(**DP).fit(ds.interactions, ds)
    b = TwoTowerRecommender(**{**DP, "dp_epsilon": float("inf")}).fit(ds.interactions, ds)
    assert b.train_info["dp"]["noise_multiplier"] == 0.0
    assert not np.allclose(a.item_embeddings, b.item_embeddings, atol=1e-3)


def test_dp_two_tower_refuses_parts_it_cannot_clip_per_user() -> None:
    with pytest.raises(ValidationError, match="pooling"):
        TwoTowerRecommender(**{**DP, "pooling": "attention"})
    with pytest.raises(ValidationError, match="user_id"):
        TwoTowerRecommender(**{**DP, "user_id": True})
