"""Simulated federated training: pairwise masks cancel in the server's sum and hide each
update; FedAvg of the two-tower meets the recommender contract, keeps user rows local, gives
the same model with and without masking, and reports its client-level budget with noise."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pydantic import ValidationError  # noqa: E402

from lmrec.component import create  # noqa: E402
from lmrec.privacy.federated import FederatedTwoTower, PairwiseMasks  # noqa: E402
from lmrec.testing.conformance import RecommenderConformance  # noqa: E402
from lmrec.testing.toy import toy_dataset  # noqa: E402

FED = dict(encoder="fake", dim=16, hidden=32, epochs=4, batch_size=64, lr=3e-3, clients=5, threads=1,
           valid_users=20, patience=4)


# --- secure aggregation ----------------------------------------------------------------------
def test_masked_sum_equals_plain_sum() -> None:
    rng = np.random.default_rng(0)
    updates = [rng.normal(0, 0.1, 1000) for _ in range(5)]
    masks = PairwiseMasks([3, 8, 11, 20, 21], seed=42)
    masked = [masks.mask(c, u) for c, u in zip(masks.clients, updates)]
    got = masks.unmask_sum(masked)
    # exactly the sum of the fixed-point encodings, within rounding of the plain sum
    want = np.sum([np.round(u * masks.scale) for u in updates], axis=0) / masks.scale
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got, np.sum(updates, axis=0), atol=5 * 2.0 ** -24)


def test_one_masked_update_reveals_nothing_close() -> None:
    rng = np.random.default_rng(1)
    updates = [rng.normal(0, 1.0, 20000) for _ in range(3)]
    masks = PairwiseMasks([0, 1, 2], seed=7)
    masked = masks.mask(0, updates[0])
    decoded = masked.view(np.int64).astype(np.float64) / masks.scale  # read as if unmasked
    assert abs(np.corrcoef(decoded, updates[0])[0, 1]) < 0.03
    assert np.median(np.abs(decoded - updates[0])) > 1e6  # nowhere near the real values
    # uniform over Z_2^64: the top bit is set about half of the time
    assert np.mean(masked >= np.uint64(2 ** 63)) == pytest.approx(0.5, abs=0.02)


def test_masks_do_not_cancel_without_every_client() -> None:
    updates = [np.ones(100), np.ones(100), np.ones(100)]
    masks = PairwiseMasks([0, 1, 2], seed=3)
    masked = [masks.mask(c, u) for c, u in enumerate(updates)]
    with pytest.raises(ValueError, match="would not cancel"):
        masks.unmask_sum(masked[:2])
    partial = PairwiseMasks([0, 1, 2], seed=3)
    partial.clients = [0, 1]  # a server pretending two clients were the whole round
    assert np.median(np.abs(partial.unmask_sum(masked[:2]) - 2.0)) > 1e6


# --- FedAvg ------------------------------------------------------------------------------------
class TestFederatedTwoTowerConformance(RecommenderConformance):
    model_factory = staticmethod(lambda: FederatedTwoTower(**{**FED, "epochs": 8, "patience": 8}))


def test_registered_and_masking_is_transparent() -> None:
    ds = toy_dataset()
    a = create("fed-two-tower", FED).fit(ds.interactions, ds)
    b = create("fed-two-tower", {**FED, "secure_aggregation": False}).fit(ds.interactions, ds)
    assert isinstance(a, FederatedTwoTower)
    fed = a.train_info["federated"]
    assert fed["clients"] == 5 and fed["secure_aggregation"] and fed["rounds_run"] >= 1
    # the masked sum decodes to the plain sum (up to the 2^-24 fixed point)
    np.testing.assert_allclose(a.item_embeddings, b.item_embeddings, atol=1e-4)


def test_user_rows_stay_with_their_client() -> None:
    """With user-id residuals, a user's row is trained only on its own client: the rows of
    users without events keep their initial (zero) value and are not averaged."""
    ds = toy_dataset()
    train = ds.interactions.select(ds.interactions.user != 0)  # user 0 has no events
    model = FederatedTwoTower(**{**FED, "user_id": True}).fit(train, ds)
    rows = model.net.user.users.weight.detach().numpy()
    assert np.abs(rows[0]).max() == 0.0
    assert np.abs(rows[1:]).max() > 0.0
    shared = {n for n, _ in model._shared()}
    assert "user.users.weight" not in shared and any(n.startswith("item.") for n in shared)


def test_clipped_noisy_updates_report_epsilon() -> None:
    pytest.importorskip("opacus", reason="the accountant needs opacus: pip install 'lmrec[privacy]'")
    ds = toy_dataset()
    model = FederatedTwoTower(**{**FED, "clip": 0.5, "noise_multiplier": 1.0, "dp_delta": 1e-3}).fit(ds.interactions, ds)
    fed = model.train_info["federated"]
    assert fed["noise_multiplier"] == 1.0 and 0 < fed["epsilon"] < float("inf")
    quiet = FederatedTwoTower(**{**FED, "clip": 0.5}).fit(ds.interactions, ds)
    assert "epsilon" not in quiet.train_info["federated"]
    assert not np.allclose(model.item_embeddings, quiet.item_embeddings, atol=1e-3)
    with pytest.raises(ValidationError, match="clip"):
        FederatedTwoTower(**{**FED, "noise_multiplier": 1.0})
