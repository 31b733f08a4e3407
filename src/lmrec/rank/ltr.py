"""Learning-to-rank with LightGBM's LambdaRank objective, and the pass-through ranker that keeps
the recall stage's order (the "merged recall" baseline and the choice when no ranker is wanted).

Example:
    >>> import numpy as np
    >>> from lmrec.rank.base import RankData
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 2)).astype(np.float32)
    >>> y = (X[:, 0] > 1.0).astype(np.float32)  # relevance follows column 0
    >>> data = RankData(X, ["good", "noise"], np.full(20, 20), {"click": y})
    >>> r = LambdaRankRanker(n_estimators=30, min_child_samples=5, valid_fraction=0.0).fit(data)
    >>> s = r.score(data)
    >>> bool(s[y == 1].mean() > s[y == 0].mean())
    True
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from lmrec.component import ComponentConfig

from lmrec.rank.base import RankData, Ranker

__all__ = ["PassthroughRanker", "LambdaRankRanker", "LambdaRankConfig", "feature_names"]


class PassthroughConfig(ComponentConfig):
    """column: the feature column whose value is the score (default "merge:score", the
    recall stage's merged score)."""

    column: str = "merge:score"


class PassthroughRanker(Ranker):
    """Scores each candidate by one feature column (by default the merge score): keeps the
    recall order. Needs no training labels."""

    name = "none"
    Config = PassthroughConfig
    config: PassthroughConfig

    def fit(self, data: RankData) -> PassthroughRanker:
        if self.config.column not in data.columns:
            raise ValueError(f"none: column {self.config.column!r} is not a feature column")
        self.columns = list(data.columns)
        return self

    def _fit(self, data: RankData) -> None:  # pragma: no cover - fit is overridden
        pass

    def _score(self, data: RankData) -> np.ndarray:
        s = data.X[:, data.columns.index(self.config.column)]
        return np.nan_to_num(s, nan=-np.inf)


def feature_names(columns: list[str]) -> list[str]:
    """Column names LightGBM accepts (no JSON punctuation), kept unique."""
    out: list[str] = []
    for c in columns:
        name = re.sub(r"[^0-9A-Za-z_]", "_", c)
        while name in out:
            name += "_"
        out.append(name)
    return out


class LambdaRankConfig(ComponentConfig):
    """LightGBM parameters (names as in LightGBM); `objective`: "lambdarank" (pairwise,
    weighted by the NDCG change, truncated at `truncation_level`) or "rank_xendcg" (listwise
    cross-entropy between the softmax of a group's scores and its labels: every positive counts,
    not only those near the top, which served Recall@20 better on ML-1M validation); `label`:
    the RankData label column to learn (integer grades: 0/1 clicks, or graded relevance);
    `valid_fraction`: share of the query groups held out for early stopping (0: train on all
    for `n_estimators` rounds)."""

    objective: Literal["lambdarank", "rank_xendcg"] = "lambdarank"
    n_estimators: int = Field(300, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(31, ge=2)
    min_child_samples: int = Field(50, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    lambda_l2: float = Field(1.0, ge=0)
    truncation_level: int = Field(20, ge=1)
    eval_at: int = Field(10, ge=1)
    label: str = "click"
    valid_fraction: float = Field(0.1, ge=0, lt=1)
    early_stopping: int = Field(30, ge=1)
    threads: int = Field(1, ge=1)
    seed: int = 0


class LambdaRankRanker(Ranker):
    """LightGBM with the lambdarank objective over (query, candidate) groups. Groups without a
    positive carry no gradient and are dropped; NaN features are LightGBM's missing values."""

    name = "lambdarank"
    Config = LambdaRankConfig
    config: LambdaRankConfig

    def _params(self) -> dict:
        c = self.config
        return {"objective": c.objective, "metric": "ndcg", "ndcg_eval_at": [c.eval_at],
                "learning_rate": c.learning_rate, "num_leaves": c.num_leaves,
                "min_data_in_leaf": c.min_child_samples, "feature_fraction": c.feature_fraction,
                "bagging_fraction": c.bagging_fraction, "bagging_freq": 1 if c.bagging_fraction < 1 else 0,
                "lambda_l2": c.lambda_l2, "lambdarank_truncation_level": c.truncation_level,
                "num_threads": c.threads, "seed": c.seed, "deterministic": True, "force_row_wise": True,
                "verbose": -1}

    def _fit(self, data: RankData) -> None:
        import lightgbm as lgb

        c = self.config
        if c.label not in data.labels:
            raise ValueError(f"lambdarank: label {c.label!r} is not in the data ({sorted(data.labels)})")
        y = data.labels[c.label]
        pos = data.group_sums(y > 0)
        keep = np.flatnonzero((pos > 0) & (data.groups >= 2))
        if not len(keep):
            raise ValueError("lambdarank: no query group has both a positive and another candidate")
        rng = np.random.default_rng(c.seed)
        n_valid = int(round(c.valid_fraction * len(keep)))
        perm = rng.permutation(keep)
        valid, train = np.sort(perm[:n_valid]), np.sort(perm[n_valid:])
        names = feature_names(data.columns)

        def dataset(groups: np.ndarray, ref: lgb.Dataset | None = None) -> lgb.Dataset:
            part = data.select_groups(groups)
            return lgb.Dataset(part.X, np.rint(part.labels[c.label]).astype(np.int32), group=part.groups,
                               feature_name=names, reference=ref, free_raw_data=True)

        train_set = dataset(train)
        kwargs: dict = {}
        if len(valid):
            kwargs = {"valid_sets": [dataset(valid, train_set)],
                      "callbacks": [lgb.early_stopping(c.early_stopping, verbose=False)]}
        self.booster = lgb.train(self._params(), train_set, num_boost_round=c.n_estimators, **kwargs)
        self.info = {"train_groups": int(len(train)), "valid_groups": int(len(valid)),
                     "best_iteration": int(self.booster.best_iteration or c.n_estimators)}

    def _score(self, data: RankData) -> np.ndarray:
        it = self.booster.best_iteration or None
        return self.booster.predict(data.X, num_iteration=it, num_threads=self.config.threads)

    def importance(self) -> dict[str, float]:
        """Total gain of each feature column, largest first."""
        gain = self.booster.feature_importance("gain")
        return dict(sorted(zip(self.columns or [], map(float, gain)), key=lambda kv: -kv[1]))

    def _save(self, path: Path) -> None:
        self.booster.save_model(str(path / "model.txt"), num_iteration=self.booster.best_iteration or None)

    def _load(self, path: Path) -> None:
        import lightgbm as lgb

        self.booster = lgb.Booster(model_file=str(path / "model.txt"))
