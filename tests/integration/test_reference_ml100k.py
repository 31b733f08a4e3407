"""Cross-check the whole protocol (loader, temporal split, EASE, masking, metrics) against an
independent implementation written here with plain pandas/numpy, on the real ML-100k."""

import numpy as np
import pandas as pd
import pytest

from lmrec.data.loaders import load_dataset
from lmrec.eval.experiment import make_split, run_experiment


def _independent_ease_ndcg(path, lam: float) -> tuple[float, float]:
    df = pd.read_csv(path / "u.data", sep="\t", names=["u", "i", "r", "t"]).sort_values(["u", "t", "i"])
    df["from_end"] = df.groupby("u").cumcount(ascending=False)
    test, fit = df[df.from_end == 0], df[df.from_end >= 1]
    x = np.zeros((df.u.max() + 1, df.i.max() + 1))
    x[fit.u, fit.i] = 1.0
    p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    s = x @ b
    s[x > 0] = -np.inf
    s[:, 0] = -np.inf  # ids start at 1
    cols = np.arange(s.shape[1])
    ranks = np.array([(s[u] > s[u, i]).sum() + ((s[u] == s[u, i]) & (cols < i)).sum()
                      for u, i in zip(test.u, test.i)])
    hit = ranks < 10
    return float(np.where(hit, 1 / np.log2(ranks + 2), 0).mean()), float(hit.mean())


@pytest.mark.shared_data("ml-100k")
def test_ease_matches_independent_implementation(shared_data_dir):
    ndcg, hr = _independent_ease_ndcg(shared_data_dir / "movielens-100k", 500.0)
    split = make_split(load_dataset("ml-100k", shared_data_dir), "temporal-loo")
    row = run_experiment("ease", split, params={"lam": 500.0}).row
    assert row["NDCG@10"] == pytest.approx(ndcg, abs=1e-5)
    assert row["HR@10"] == pytest.approx(hr, abs=1e-6)
    assert row["users"] == 943
