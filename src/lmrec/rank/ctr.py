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
from lmrec.privacy.dp import DPFields

from lmrec.rank.base import RankData, Ranker

__all__ = ["CTRConfig", "CTRRanker"]


class CTRConfig(ComponentConfig, DPFields):
    """hidden / dropout: the one hidden layer; tasks: label column -> weight in the score
    (each needs a RankData label); use_user / use_features: also feed the user profile
    embedding / the standardised tabular features; neg_per_pos: keep at most this many
    negatives per positive when training (0 = all).

    dp_*: differential privacy (`lmrec.privacy.dp.DPFields`; dp_epsilon None = off): per-user
    DP-SGD, see `CTRRanker._fit_dp`; `epochs` is then the expected passes over the users and
    dp_rows_per_user the most rows of one user in one step."""

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
    dp_rows_per_user: int = Field(64, ge=1)

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

    dp_report: dict[str, Any] | None = None
    log_features: bool = False

    def fit(self, data: RankData, units: np.ndarray | None = None) -> CTRRanker:
        """Train on labelled groups. `units` (one per group, e.g. the user of each query) names
        the privacy unit of each group under DP (default: every group is its own unit); it is
        ignored without DP."""
        if units is not None and len(units) != len(data.groups):
            raise ValueError(f"ctr: units has {len(units)} entries, the data {len(data.groups)} groups")
        self._units = None if units is None else np.asarray(units)
        return super().fit(data)

    def _inputs(self, data: RankData, rows: np.ndarray | slice) -> np.ndarray:
        """The network input of `rows`: [item vector, user vector, standardised features]."""
        parts = []
        if "item" in data.vectors:
            parts.append(data.vector("item", rows))
        if self.config.use_user and "user" in data.vectors:
            parts.append(data.vector("user", rows))
        if self.config.use_features and data.X.shape[1]:
            x = data.X[rows]
            if self.log_features:  # DP: a fixed transform instead of statistics of the private rows
                x = np.sign(x) * np.log1p(np.abs(x))
            # clipped: a feature nearly constant in training must not blow up on new data
            x = np.clip((x - self.mean) / self.std, -5.0, 5.0)
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
        self.dp_report, self.log_features = None, False
        if c.dp_epsilon is not None:
            self._fit_dp(data)
            return
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

    def _fit_dp(self, data: RankData) -> None:
        """Per-user DP-SGD of the whole network (`lmrec.privacy.dp.DPSGD`).

        Privacy unit: the unit of `fit(units=...)` (a user), else a group (a query). Each unit
        keeps its positives and up to neg_per_pos negatives per positive (drawn within the unit);
        each step draws every unit with probability q = dp_users_per_step / units (Poisson),
        takes up to dp_rows_per_user of a drawn unit's rows and computes one mean BCE per unit;
        its gradient is clipped to dp_max_grad_norm and the sum noised (sigma from the
        accountant for round(epochs / q) steps). No statistic of the rows is kept outside the
        noised gradients: the features are not standardised by their mean and std but by the
        fixed sign(x) log(1 + |x|), clipped to [-5, 5]. The features themselves (e.g.
        popularity) are the feature stages' releases, outside this guarantee.
        """
        from lmrec.privacy.dp import DPSGD, pick_rows

        torch = _torch()
        c = self.config
        rng = np.random.default_rng(c.seed)
        groups_unit = self._units if getattr(self, "_units", None) is not None else np.arange(len(data.groups))
        _, unit_of_group = np.unique(groups_unit, return_inverse=True)
        n_units = int(unit_of_group.max()) + 1 if len(unit_of_group) else 0
        if not n_units or not len(data):
            raise ValueError("ctr: no training rows")
        unit = unit_of_group[data.row_group]
        click = data.labels["click"] > 0
        keep = np.ones(len(data), bool)
        if c.neg_per_pos:  # within each unit: the unit's positives and a bounded share of its negatives
            order = np.lexsort((rng.random(len(data)), click, unit))  # per unit: negatives first, random order
            u_sorted = unit[order]
            neg_rank = np.zeros(len(data), np.int64)
            starts = np.r_[0, np.flatnonzero(np.diff(u_sorted)) + 1]
            neg_rank[order] = np.arange(len(data)) - np.repeat(starts, np.diff(np.r_[starts, len(data)]))
            n_pos = np.bincount(unit, weights=click, minlength=n_units)
            keep = click | (neg_rank < c.neg_per_pos * np.maximum(n_pos[unit], 1))
        rows = np.flatnonzero(keep)
        rows = rows[np.argsort(unit[rows], kind="stable")]
        ptr = np.searchsorted(unit[rows], np.arange(n_units + 1))
        self.mean, self.std = np.zeros(data.X.shape[1], np.float32), np.ones(data.X.shape[1], np.float32)
        self.log_features = True
        y_all = np.stack([(data.labels[t] > 0).astype(np.float32) for t in c.tasks], axis=1)
        self.n_in = self._inputs(data, rows[:1]).shape[1]
        self.net = self._build(self.n_in)

        def user_loss(call: Any, x: Any, y: Any, mask: Any) -> Any:
            losses = torch.nn.functional.binary_cross_entropy_with_logits(call(x), y, reduction="none").mean(1)
            return (losses * mask).sum() / mask.sum().clamp(min=1.0)

        dp = DPSGD.from_config(self.net, user_loss, c, n_users=n_units, epochs=c.epochs, seed=c.seed, chunk_size=256)
        opt = torch.optim.Adam(self.net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        self.net.train()
        self.losses = []
        m = c.dp_rows_per_user
        for _ in range(dp.steps_planned):
            units = dp.sample_users()
            pos, mask = pick_rows(ptr, units, m, rng)
            picked = rows[pos]
            x = torch.from_numpy(self._inputs(data, picked.ravel()).reshape(len(units), m, -1))
            y = torch.from_numpy(y_all[picked])
            opt.zero_grad(set_to_none=True)
            dp.step((x, y, torch.from_numpy(mask)))
            opt.step()
            if len(units):
                with torch.no_grad():
                    self.losses.append(float(user_loss(lambda a: self.net(a), x.reshape(-1, x.shape[-1]),
                                                       y.reshape(-1, y.shape[-1]), torch.from_numpy(mask.ravel()))))
        self.net.eval()
        self.dp_report = dp.report().to_dict()
        self.info = {"dp": self.dp_report}

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

        from lmrec.privacy.dp import save_report

        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(path / "model.safetensors"))
        np.savez(path / "scaler.npz", mean=self.mean, std=self.std)
        (path / "shape.json").write_text(json.dumps({"n_in": self.n_in, "log_features": self.log_features}))
        save_report(path, self.dp_report)

    def _load(self, path: Path) -> None:
        from safetensors.torch import load_file

        from lmrec.privacy.dp import load_report

        shape = json.loads((path / "shape.json").read_text())
        self.n_in, self.log_features = shape["n_in"], bool(shape.get("log_features", False))
        self.dp_report = load_report(path)
        with np.load(path / "scaler.npz", allow_pickle=False) as z:
            self.mean, self.std = z["mean"], z["std"]
        self.net = self._build(self.n_in)
        self.net.load_state_dict(load_file(str(path / "model.safetensors")))
        self.net.eval()
