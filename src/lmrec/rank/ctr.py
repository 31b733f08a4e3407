"""A click-through-rate model over the recall candidates, in torch: the item's LM embedding
(+ the user's LM profile, + the tabular ranker features) -> Dense(hidden, relu) -> Dropout ->
one sigmoid head per task, trained with binary cross-entropy. With several tasks (e.g. "click"
and "high" rating, or "purchase") the heads share the hidden layer and the ranking score is
the weighted sum of the task probabilities.

Example:
    >>> import numpy as np
    >>> from lmrec.rank.base import RankData
    >>> rng = np.random.default_rng(0)
    >>> items = rng.normal(size=(50, 8)).astype(np.float32)
    >>> idx = rng.integers(0, 50, 2000)
    >>> y = (items[idx, 0] > 0.5).astype(np.float32)
    >>> data = RankData(np.zeros((2000, 0)), [], np.full(100, 20), {"click": y}, {"item": (items, idx)})
    >>> r = CTRRanker(epochs=5, use_user=False, use_features=False, neg_per_pos=0).fit(data)
    >>> s = r.score(data)
    >>> bool(s[y == 1].mean() > s[y == 0].mean())
    True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from lmrec.component import ComponentConfig

from lmrec.rank.base import RankData, Ranker

__all__ = ["CTRConfig", "CTRRanker"]


class CTRConfig(ComponentConfig):
    """hidden / dropout: the one hidden layer; tasks: label column -> weight in the score
    (each needs a RankData label); use_user / use_features: also feed the user profile
    embedding / the standardised tabular features; neg_per_pos: keep at most this many
    negatives per positive when training (0 = all)."""

    hidden: int = Field(128, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    tasks: dict[str, float] = {"click": 1.0}
    use_user: bool = True
    use_features: bool = True
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(1024, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    neg_per_pos: int = Field(20, ge=0)
    threads: int = Field(1, ge=1)
    seed: int = 0

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: dict[str, float]) -> dict[str, float]:
        if not v or "click" not in v:
            raise ValueError("tasks must include 'click'")
        return v


def _torch() -> Any:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch ships with the lm extra
        raise ImportError("the CTR ranker needs torch: pip install 'lmrec[lm]'") from None
    return torch


def _scaler(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std over the finite values (0 / 1 for empty or constant columns)."""
    ok = np.isfinite(X)
    n = ok.sum(axis=0)
    x0 = np.where(ok, X, 0.0).astype(np.float64)
    mean = np.divide(x0.sum(axis=0), n, out=np.zeros(X.shape[1]), where=n > 0)
    var = np.divide((np.where(ok, X - mean, 0.0) ** 2).sum(axis=0), n, out=np.zeros(X.shape[1]), where=n > 0)
    std = np.sqrt(var)
    return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)


class CTRRanker(Ranker):
    """A shared Dense(hidden, relu) + Dropout trunk with one sigmoid head per task."""

    name = "ctr"
    Config = CTRConfig
    config: CTRConfig

    def _inputs(self, data: RankData, rows: np.ndarray | slice) -> np.ndarray:
        """The network input of `rows`: [item vector, user vector, standardised features]."""
        parts = []
        if "item" in data.vectors:
            parts.append(data.vector("item", rows))
        if self.config.use_user and "user" in data.vectors:
            parts.append(data.vector("user", rows))
        if self.config.use_features and data.X.shape[1]:
            # clipped: a feature nearly constant in training must not blow up on new data
            x = np.clip((data.X[rows] - self.mean) / self.std, -5.0, 5.0)
            parts.append(np.nan_to_num(x, nan=0.0))
            parts.append(np.isnan(data.X[rows]).astype(np.float32))
        if not parts:
            raise ValueError("ctr: no input: give item vectors (RankData.vectors['item']) or use_features")
        return np.concatenate(parts, axis=1).astype(np.float32)

    def _build(self, n_in: int) -> Any:
        torch = _torch()
        nn = torch.nn

        class Net(nn.Module):
            def __init__(self, n_in: int, hidden: int, dropout: float, n_tasks: int) -> None:
                super().__init__()
                self.trunk = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout))
                self.heads = nn.Linear(hidden, n_tasks)

            def forward(self, x: Any) -> Any:
                return self.heads(self.trunk(x))  # logits (batch, n_tasks)

        return Net(n_in, self.config.hidden, self.config.dropout, len(self.config.tasks))

    def _fit(self, data: RankData) -> None:
        torch = _torch()
        c = self.config
        for t in c.tasks:
            if t not in data.labels:
                raise ValueError(f"ctr: task {t!r} has no label column (have {sorted(data.labels)})")
        torch.manual_seed(c.seed)
        torch.set_num_threads(c.threads)
        rng = np.random.default_rng(c.seed)
        click = data.labels["click"] > 0
        rows = np.arange(len(data))
        if c.neg_per_pos and click.any():
            neg = rows[~click]
            n_neg = min(len(neg), c.neg_per_pos * int(click.sum()))
            rows = np.sort(np.r_[rows[click], rng.choice(neg, n_neg, replace=False)])
        self.mean, self.std = _scaler(data.X[rows])
        y = np.stack([(data.labels[t][rows] > 0).astype(np.float32) for t in c.tasks], axis=1)
        self.n_in = self._inputs(data, rows[:1]).shape[1]
        self.net = self._build(self.n_in)
        opt = torch.optim.Adam(self.net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        self.net.train()
        self.losses: list[float] = []
        for _ in range(c.epochs):
            perm = rng.permutation(len(rows))
            total = 0.0
            for start in range(0, len(rows), c.batch_size):
                b = perm[start:start + c.batch_size]
                x = torch.from_numpy(self._inputs(data, rows[b]))
                loss = loss_fn(self.net(x), torch.from_numpy(y[b]))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(b)
            self.losses.append(total / max(len(rows), 1))
        self.net.eval()

    def predict_tasks(self, data: RankData) -> dict[str, np.ndarray]:
        """Each task's predicted probability per row."""
        torch = _torch()
        torch.set_num_threads(self.config.threads)
        out = []
        with torch.no_grad():
            for start in range(0, len(data), 8192):
                x = torch.from_numpy(self._inputs(data, np.arange(start, min(start + 8192, len(data)))))
                out.append(torch.sigmoid(self.net(x)).numpy())
        probs = np.concatenate(out) if out else np.zeros((0, len(self.config.tasks)), np.float32)
        return {t: probs[:, j] for j, t in enumerate(self.config.tasks)}

    def _score(self, data: RankData) -> np.ndarray:
        probs = self.predict_tasks(data)
        return sum(w * probs[t] for t, w in self.config.tasks.items())

    def _save(self, path: Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(path / "model.safetensors"))
        np.savez(path / "scaler.npz", mean=self.mean, std=self.std)
        (path / "shape.json").write_text(json.dumps({"n_in": self.n_in}))

    def _load(self, path: Path) -> None:
        from safetensors.torch import load_file

        self.n_in = json.loads((path / "shape.json").read_text())["n_in"]
        with np.load(path / "scaler.npz", allow_pickle=False) as z:
            self.mean, self.std = z["mean"], z["std"]
        self.net = self._build(self.n_in)
        self.net.load_state_dict(load_file(str(path / "model.safetensors")))
        self.net.eval()
