"""Shared training machinery: exact validation NDCG, FGM, warm-up, early stopping, seeds."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lmrec.eval import metrics as M  # noqa: E402
from lmrec.models.training import (TrainConfig, build_optimizer, fgm_backward, fgm_delta, fit_loop,  # noqa: E402
                                   ndcg_at_k, seed_everything, torch_threads, warmup_schedule)
from lmrec.types import topk_indices  # noqa: E402


def test_ndcg_at_k_equals_the_evaluator_with_ties_and_masks() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, size=(200, 30)).astype(np.float32)  # many ties
    scores[rng.random(scores.shape) < 0.2] = -np.inf  # masked (seen) items
    targets = np.array([rng.choice(np.flatnonzero(np.isfinite(row))) for row in scores])
    got = ndcg_at_k(torch.from_numpy(scores), torch.from_numpy(targets), k=10).numpy()
    recs = topk_indices(scores, 10)  # the evaluator's ranking: ties to the lower index
    expected = M.ndcg(recs, [np.array([t]) for t in targets], k=10)
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert 0 < got.mean() < 1


def test_ndcg_of_a_masked_target_is_zero() -> None:
    scores = torch.tensor([[1.0, -torch.inf, 0.5]])
    assert float(ndcg_at_k(scores, torch.tensor([1]), k=10)[0]) == 0.0


def test_fgm_delta_has_norm_epsilon_along_the_gradient() -> None:
    g = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    d = fgm_delta(g, 0.5)
    assert float(d.norm()) == pytest.approx(0.5)
    assert torch.allclose(d / d.norm(), g / g.norm())
    assert float(fgm_delta(torch.zeros(2, 2), 1.0).abs().sum()) == 0.0


def test_fgm_backward_adds_the_adversarial_gradient() -> None:
    w = torch.nn.Parameter(torch.tensor([[1.0, 2.0]]))

    def loss_of(table: torch.Tensor) -> torch.Tensor:
        return (table ** 2).sum()

    clean = fgm_backward(lambda: w * 1.0, loss_of, None)
    g_clean = w.grad.clone()
    w.grad = None
    assert fgm_backward(lambda: w * 1.0, loss_of, 0.1) == pytest.approx(clean)
    # d/dw of |w|^2 + |w + r|^2, r = 0.1 * w / |w| (the clean gradient's direction)
    r = 0.1 * w.detach() / w.detach().norm()
    assert torch.allclose(w.grad, g_clean + 2 * (w.detach() + r))


def test_warmup_is_linear_then_constant() -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = warmup_schedule(opt, 4)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_optimizer_skips_weight_decay_on_biases_and_norms() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    opt = build_optimizer(net, 1e-3, 0.1)
    decay = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decay == {id(net[0].weight)}


def test_seed_everything_repeats_torch_and_numpy() -> None:
    seed_everything(7)
    a = (torch.rand(3), np.random.rand(3))
    seed_everything(7)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_torch_threads_sets_and_restores() -> None:
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def _regression(seed: int = 0) -> tuple[torch.nn.Module, list]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 3, generator=gen)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    return torch.nn.Linear(3, 1), [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]


def test_fit_loop_learns_stops_early_and_restores_the_best_epoch() -> None:
    torch.manual_seed(0)
    net, data = _regression()

    def step(batch):
        x, y = batch
        loss = ((net(x)[:, 0] - y) ** 2).mean()
        loss.backward()
        return float(loss.detach())

    marks = iter([0.1, 0.5, 0.3, 0.2, 0.4, 0.45, 0.9, 0.9])
    snapshots = []

    def validate() -> float:
        snapshots.append(net.weight.detach().clone())
        return next(marks)

    cfg = TrainConfig(epochs=8, lr=0.05, warmup_steps=0, patience=3)
    hist = fit_loop(net, cfg, batches=lambda rng: [data[i] for i in rng.permutation(len(data))],
                    step=step, validate=validate)
    assert hist.stopped_early and len(hist.epochs) == 5  # best at epoch 2, then 3 worse validations
    assert hist.best_epoch == 2 and hist.best_valid == 0.5
    assert torch.equal(net.weight.detach(), snapshots[1])  # epoch 2's weights are back
    assert hist.epochs[-1]["loss"] < hist.epochs[0]["loss"]


def test_fit_loop_rejects_a_diverging_loss() -> None:
    net, data = _regression()
    with pytest.raises(FloatingPointError, match="loss"):
        fit_loop(net, TrainConfig(epochs=1), batches=lambda rng: data, step=lambda b: float("nan"))
