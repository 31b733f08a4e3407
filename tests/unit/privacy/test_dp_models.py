"""Per-user DP-SGD in the CTR head and the sequential models (SASRec, sasrec-text): the
accountant's (epsilon, delta) in the model and its saved folder, noise that changes the
weights, the privacy unit, and clear errors for bad DP parameters."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("opacus", reason="DP-SGD needs opacus: pip install 'lmrec[privacy]'")

from pydantic import ValidationError  # noqa: E402

from lmrec.models.sasrec import SASRec  # noqa: E402
from lmrec.models.text_seq import SASRecText  # noqa: E402
from lmrec.privacy.dp import DPSGD, DPFields, load_report, pick_rows  # noqa: E402
from lmrec.rank.base import RankData, Ranker  # noqa: E402
from lmrec.rank.ctr import CTRRanker  # noqa: E402
from lmrec.testing.toy import toy_dataset  # noqa: E402

SEQ = dict(hidden=16, n_blocks=1, max_len=10, epochs=2, lr=1e-2, warmup_steps=0, threads=1, dp_epsilon=8.0,
           dp_delta=1e-3, dp_users_per_step=16)


@pytest.fixture(scope="module")
def ds():
    return toy_dataset()


def _weights(model) -> np.ndarray:
    return np.concatenate([p.detach().numpy().ravel() for p in model.network.parameters()])


# --- shared helpers ------------------------------------------------------------------------
def test_from_config_sampling_and_steps() -> None:
    cfg = DPFields(dp_epsilon=4.0, dp_users_per_step=25)
    dp = DPSGD.from_config(torch.nn.Linear(2, 1), lambda call, x: call(x).sum(), cfg, n_users=100, epochs=3)
    assert dp.sample_rate == pytest.approx(0.25) and dp.steps_planned == 12 and dp.noise_multiplier > 0
    full = DPSGD.from_config(torch.nn.Linear(2, 1), lambda call, x: call(x).sum(),
                             DPFields(dp_epsilon=4.0, dp_users_per_step=500), n_users=100, epochs=3)
    assert full.sample_rate == 1.0 and full.steps_planned == 3
    with pytest.raises(ValueError, match="dp_epsilon is None"):
        DPSGD.from_config(torch.nn.Linear(2, 1), lambda call, x: call(x).sum(), DPFields(), n_users=10, epochs=1)


def test_pick_rows_takes_at_most_m_of_each_users_own_rows() -> None:
    ptr = np.array([0, 3, 3, 10])  # user 0: rows 0-2, user 1: none, user 2: rows 3-9
    rows, mask = pick_rows(ptr, np.array([2, 0, 1]), 4, np.random.default_rng(0))
    assert mask.sum(1).tolist() == [4, 3, 0]
    assert set(rows[0][mask[0] > 0]) <= set(range(3, 10)) and len(set(rows[0])) == 4
    assert sorted(rows[1][mask[1] > 0]) == [0, 1, 2]


@pytest.mark.parametrize("bad", [dict(dp_epsilon=0.0), dict(dp_epsilon=-1.0), dict(dp_epsilon=float("nan")),
                                 dict(dp_delta=1.0), dict(dp_delta=0.0), dict(dp_max_grad_norm=0.0),
                                 dict(dp_users_per_step=0), dict(dp_accountant="gdp")])
def test_bad_dp_parameters_are_refused_by_name(bad: dict) -> None:
    for make in (lambda: SASRec(**{**SEQ, **bad}), lambda: CTRRanker(**{"dp_epsilon": 1.0, **bad})):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            make()


def test_sasrec_dp_refuses_fgm() -> None:
    with pytest.raises(ValidationError, match="fgm"):
        SASRec(**SEQ, fgm=True)


# --- sequential models ---------------------------------------------------------------------
def test_sasrec_dp_reports_its_budget(ds) -> None:
    m = SASRec(**SEQ).fit(ds.interactions, ds)
    rep = m.dp_report
    assert rep["unit"] == "user" and rep["delta"] == 1e-3 and rep["target_epsilon"] == 8.0
    assert math.isfinite(rep["epsilon"]) and 7.0 < rep["epsilon"] <= 8.0 + 1e-6
    q = 16 / ds.n_users
    assert rep["sample_rate"] == pytest.approx(q, abs=1e-6) and rep["steps"] == round(2 / q)
    assert m.training_summary()["dp"] == rep
    # no private statistic outside the noised gradients: item counts are a constant
    assert np.unique(m.item_counts).tolist() == [1]
    assert [len(r) for r in m.recommend([0, 1], k=5)] == [5, 5]


def test_sasrec_dp_noise_changes_the_weights(ds) -> None:
    noisy = SASRec(**SEQ).fit(ds.interactions, ds)
    clean = SASRec(**{**SEQ, "dp_epsilon": float("inf")}).fit(ds.interactions, ds)
    assert clean.dp_report["noise_multiplier"] == 0 and math.isinf(clean.dp_report["epsilon"])
    assert noisy.dp_report["noise_multiplier"] > 0
    assert not np.allclose(_weights(noisy), _weights(clean), atol=1e-4)
    # and the smaller the epsilon, the larger the noise
    tight = SASRec(**{**SEQ, "dp_epsilon": 1.0}).fit(ds.interactions, ds)
    assert tight.dp_report["noise_multiplier"] > noisy.dp_report["noise_multiplier"]


def test_sasrec_text_dp_round_trips_its_report(ds, tmp_path) -> None:
    m = SASRecText(encoder="fake", id_fusion="gate", **SEQ).fit(ds.interactions, ds)
    path = m.save(tmp_path / "m")
    saved = json.loads((path / "privacy.json").read_text())
    assert saved == m.dp_report and load_report(path) == m.dp_report
    back = SASRecText.load(path)
    assert back.dp_report == m.dp_report
    np.testing.assert_allclose(back._score(np.array([0, 3])), m._score(np.array([0, 3])), rtol=1e-5, atol=1e-5)


def test_non_dp_sequential_model_has_no_report(ds, tmp_path) -> None:
    m = SASRec(hidden=16, n_blocks=1, max_len=10, epochs=1, threads=1).fit(ds.interactions, ds)
    assert m.dp_report is None and "dp" not in m.training_summary()
    path = m.save(tmp_path / "m")
    assert not (path / "privacy.json").exists() and SASRec.load(path).dp_report is None


# --- CTR head ------------------------------------------------------------------------------
def _rank_data(n_groups: int = 120, per: int = 20, seed: int = 0) -> tuple[RankData, np.ndarray]:
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(50, 8)).astype(np.float32)
    idx = rng.integers(0, 50, n_groups * per)
    y = (items[idx, 0] > 0.5).astype(np.float32)
    X = np.c_[rng.normal(size=len(idx)) * 100, rng.exponential(1000, size=len(idx))]
    return RankData(X, ["a", "b"], np.full(n_groups, per), {"click": y}, {"item": (items, idx)}), y


CTR = dict(epochs=6, use_user=False, lr=1e-2, dp_epsilon=8.0, dp_users_per_step=60, threads=1)


def test_ctr_dp_learns_and_reports_its_budget() -> None:
    data, y = _rank_data()
    r = CTRRanker(**CTR).fit(data)
    rep = r.dp_report
    assert rep["unit"] == "user" and math.isfinite(rep["epsilon"]) and rep["epsilon"] <= 8.0 + 1e-6
    assert rep["sample_rate"] == pytest.approx(60 / 120) and rep["steps"] == 12
    assert r.info["dp"] == rep
    s = r.score(data)
    assert s[y == 1].mean() > s[y == 0].mean() + 0.05  # still learns the signal at epsilon 8
    # no statistic of the private rows kept: the feature scaler is the fixed one
    assert r.log_features and not r.mean.any() and (r.std == 1).all()


def test_ctr_dp_units_are_the_privacy_unit() -> None:
    data, _ = _rank_data()
    per_group = CTRRanker(**CTR).fit(data).dp_report
    per_user = CTRRanker(**CTR).fit(data, units=np.arange(120) // 3).dp_report  # 40 users, 3 groups each
    assert per_group["sample_rate"] == pytest.approx(0.5) and per_user["sample_rate"] == 1.0
    with pytest.raises(ValueError, match="units has 7 entries"):
        CTRRanker(**CTR).fit(data, units=np.arange(7))


def test_ctr_dp_noise_changes_the_weights_and_round_trips(tmp_path) -> None:
    data, _ = _rank_data()
    noisy = CTRRanker(**CTR).fit(data)
    clean = CTRRanker(**{**CTR, "dp_epsilon": float("inf")}).fit(data)
    plain = CTRRanker(**{k: v for k, v in CTR.items() if not k.startswith("dp_")}).fit(data)
    assert plain.dp_report is None and not plain.log_features
    assert not np.allclose(noisy.score(data), clean.score(data), atol=1e-3)
    path = noisy.save(tmp_path / "ctr")
    back = Ranker.load(path)
    assert back.dp_report == noisy.dp_report == load_report(path)
    np.testing.assert_allclose(back.score(data), noisy.score(data), rtol=1e-6)
    plain.save(tmp_path / "plain")
    assert Ranker.load(tmp_path / "plain").dp_report is None


def test_warm_start_copies_catalog_independent_weights(ds, tmp_path) -> None:
    """init_from: public pre-training starts the model (the per-item tensors are not copied)."""
    small = dict(encoder="fake", id_fusion="gate", hidden=16, n_blocks=1, max_len=10, threads=1, lr=1e-2)
    public = SASRecText(**small, epochs=2, seed=1).fit(ds.interactions, ds)
    path = public.save(tmp_path / "public")
    start = SASRecText(**small, epochs=1, seed=2, init_from=str(path))
    start.n_items, start.item_counts = ds.n_items, np.ones(ds.n_items, np.int64)
    net = start._build_network(ds, None)
    src = public.network.state_dict()
    assert torch.equal(net.state_dict()["positions"], src["positions"])
    assert torch.equal(net.state_dict()["item_encoder.project.weight"], src["item_encoder.project.weight"])
    assert "item_encoder.ids" not in start.warm_started and "positions" in start.warm_started
    cold = SASRecText(**small, epochs=1, seed=2)
    cold.n_items, cold.item_counts = ds.n_items, np.ones(ds.n_items, np.int64)
    cold = cold._build_network(ds, None)
    assert not torch.equal(cold.state_dict()["positions"], src["positions"])
    # DP fine-tuning from the public start is still accounted as usual
    m = SASRecText(**small, epochs=1, seed=2, init_from=str(path), dp_epsilon=4.0, dp_users_per_step=16,
                   warmup_steps=0).fit(ds.interactions, ds)
    assert m.dp_report["epsilon"] <= 4.0 + 1e-6
    with pytest.raises(FileNotFoundError, match="init_from"):
        SASRecText(**small, epochs=1, init_from=str(tmp_path / "nowhere")).fit(ds.interactions, ds)
    with pytest.raises(ValueError, match="no weight fits"):
        SASRecText(**{**small, "hidden": 8}, epochs=1, init_from=str(path)).fit(ds.interactions, ds)


def test_sasrec_dp_several_windows_per_user_are_one_clipped_gradient(ds) -> None:
    """dp_windows_per_user: a drawn user's windows share one loss, so one clipped gradient
    (the accountant's steps and sample rate do not change; the per-user norm does)."""
    one = SASRec(**{**SEQ, "max_len": 4}).fit(ds.interactions, ds)
    three = SASRec(**{**SEQ, "max_len": 4, "dp_windows_per_user": 3}).fit(ds.interactions, ds)
    assert three.dp_report == one.dp_report
    # averaging a user's windows gives a smaller, steadier per-user gradient than one window
    norm = lambda m: np.median([e["median_norm"] for e in m.train_history.epochs])  # noqa: E731
    assert norm(three) < norm(one)
    assert not np.allclose(_weights(one), _weights(three), atol=1e-4)


def test_dp_freeze_keeps_the_public_weights(ds, tmp_path) -> None:
    small = dict(encoder="fake", id_fusion="none", hidden=16, n_blocks=1, max_len=10, threads=1, lr=1e-2)
    public = SASRecText(**small, epochs=1, seed=1).fit(ds.interactions, ds)
    path = public.save(tmp_path / "public")
    m = SASRecText(**small, epochs=1, init_from=str(path), dp_epsilon=8.0, dp_users_per_step=16, warmup_steps=0,
                   dp_freeze=("item_encoder",)).fit(ds.interactions, ds)
    before, after = public.network.state_dict(), m.network.state_dict()
    assert torch.equal(before["item_encoder.project.weight"], after["item_encoder.project.weight"])
    assert not torch.equal(before["positions"], after["positions"])
    with pytest.raises(ValueError, match="freezes nothing"):
        SASRecText(**small, epochs=1, dp_epsilon=8.0, dp_freeze=("nope",)).fit(ds.interactions, ds)


def test_dp_ema_averages_the_iterates_at_no_privacy_cost(ds) -> None:
    last = SASRec(**SEQ).fit(ds.interactions, ds)
    avg = SASRec(**SEQ, dp_ema=0.8).fit(ds.interactions, ds)
    assert avg.dp_report == last.dp_report  # post-processing: the same guarantee
    assert not np.allclose(_weights(avg), _weights(last), atol=1e-4)
    # the average moves less far from the start than the last iterate
    from lmrec.models.training import seed_everything

    start = SASRec(**SEQ)
    start.n_items = ds.n_items
    seed_everything(0)  # as the fit does before building the network
    init = np.concatenate([p.detach().numpy().ravel() for p in start._build_network(ds, None).parameters()])
    assert np.linalg.norm(_weights(avg) - init) < np.linalg.norm(_weights(last) - init)
