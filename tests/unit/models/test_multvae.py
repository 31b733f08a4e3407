"""Mult-VAE: it overfits a tiny planted data set, the early-stopping hold-out is a per-row
random share, save/load reproduces scores, the registry knows it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

from lmrec.component import DEFAULT_GRIDS, create, load_model  # noqa: E402
from lmrec.data.dataset import build_dataset  # noqa: E402
from lmrec.models.multvae import MultVAE, holdout_rows  # noqa: E402

FAST = {"hidden": 32, "latent": 8, "batch_size": 8, "lr": 1e-2, "dropout": 0.0, "beta": 0.0,
        "valid_fraction": 0.0, "threads": 1}


def two_blocks():  # noqa: ANN201
    """Users 0..19 watch items 0..9 except one (their item u % 10), users 20..39 items 10..19
    except item 10 + u % 10: the missing item is the one block item a model must rank first."""
    users, items = [], []
    for u in range(40):
        block = 0 if u < 20 else 10
        for i in range(block, block + 10):
            if i != block + u % 10:
                users.append(f"u{u}")
                items.append(i)
    for i in range(20, 30):  # a popular-elsewhere item set nobody in the blocks touches
        users.append("other")
        items.append(i)
    return build_dataset("blocks", users, items, np.arange(len(users)))


def test_overfits_planted_blocks() -> None:
    ds = two_blocks()
    m = MultVAE(epochs=150, **FAST).fit(ds.interactions, ds)
    users = np.array([ds.users.index(f"u{u}") for u in range(40)])
    top = [int(c.items[0]) for c in m.recommend(users, k=1)]
    want = [ds.items.index(str(b + u % 10)) for u, b in zip(range(40), [0] * 20 + [10] * 20)]
    assert np.mean(np.array(top) == np.array(want)) >= 0.9


def test_holdout_rows() -> None:
    m = sp.csr_matrix(np.array([[1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                                [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]], np.float32))
    keep, held = holdout_rows(m, 0.2, seed=1)
    assert np.diff(held.indptr).tolist() == [2, 0, 1]  # 20% of 10; a single event stays
    assert (keep + held != m).nnz == 0 and keep.multiply(held).nnz == 0


def test_early_stopping_records_validation(tmp_path: Path) -> None:
    ds = two_blocks()
    m = create("multvae", {**FAST, "epochs": 6, "valid_fraction": 0.2, "patience": 2})
    m.fit(ds.interactions, ds)
    h = m.train_history
    assert h.valid_users > 0 and all("valid_NDCG@10" in e for e in h.epochs)
    assert h.best_valid == max(e["valid_NDCG@10"] for e in h.epochs)
    loaded = load_model(m.save(tmp_path / "vae"))
    np.testing.assert_allclose(loaded.score([0, 5]), m.score([0, 5]), rtol=1e-5, atol=1e-5)
    assert "multvae" in DEFAULT_GRIDS
