"""Mult-VAE (Liang et al., "Variational Autoencoders for Collaborative Filtering", WWW 2018):
a user's bag of items -> an encoder MLP -> a Gaussian latent -> a decoder MLP -> a softmax over
the catalog, trained with the multinomial log-likelihood plus a KL term whose weight rises
linearly to `beta`. No order is used, so it suits data without timestamps (random splits).

Early stopping: a seeded random `valid_fraction` of each user's training events is held out;
every epoch the users are folded in from the rest and NDCG@10 of the held-out items is
measured with full ranking (seen items masked); the best epoch's weights are kept. Scoring
folds in a user's whole training row.

Example:
    >>> from lmrec.testing.toy import toy_dataset
    >>> ds = toy_dataset()
    >>> m = MultVAE(hidden=32, latent=8, epochs=3, batch_size=16).fit(ds.interactions, ds)
    >>> m.score([0, 1]).shape
    (2, 40)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from lmrec.data.dataset import Dataset, Interactions
from lmrec.models.torch_base import TorchRecommender
from lmrec.models.training import TrainConfig, fit_loop, require_torch, seed_everything, torch_threads

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["MultVAEConfig", "MultVAE", "holdout_rows"]

_SCORE_BATCH = 1024


class MultVAEConfig(TrainConfig):
    """Parameters of `MultVAE` (and the training fields of `TrainConfig`).

    hidden / latent: widths of the encoder's hidden layer and of the latent (the decoder
    mirrors the encoder). dropout: on the normalised input row. beta: the final KL weight;
    anneal_steps: optimiser steps over which it rises linearly from 0. valid_fraction: share
    of each user's training events held out for early stopping (0: no early stopping)."""

    epochs: int = Field(100, ge=1)
    batch_size: int = Field(256, ge=1)
    warmup_steps: int = Field(0, ge=0)
    hidden: int = Field(600, ge=1)
    latent: int = Field(200, ge=1)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    beta: float = Field(0.2, ge=0.0)
    anneal_steps: int = Field(2000, ge=0)
    valid_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    threads: int = Field(1, ge=0)


def holdout_rows(matrix: sp.csr_matrix, fraction: float, seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(kept, held) binary matrices: a seeded random `fraction` of each row's items (rounded,
    at least one for rows with two or more items) moves to `held`."""
    m = sp.csr_matrix(matrix, dtype=np.float32)
    rng = np.random.default_rng(seed)
    held_mask = np.zeros(m.nnz, dtype=bool)
    for r in range(m.shape[0]):
        a, b = m.indptr[r], m.indptr[r + 1]
        n = b - a
        if n < 2 or fraction <= 0:
            continue
        take = min(max(1, int(round(fraction * n))), n - 1)
        held_mask[a + rng.choice(n, take, replace=False)] = True
    coo = m.tocoo()
    keep = sp.csr_matrix((coo.data[~held_mask], (coo.row[~held_mask], coo.col[~held_mask])), shape=m.shape)
    held = sp.csr_matrix((coo.data[held_mask], (coo.row[held_mask], coo.col[held_mask])), shape=m.shape)
    return keep, held


def _network(n_items: int, cfg: MultVAEConfig) -> nn.Module:
    torch = require_torch()
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.Linear(n_items, cfg.hidden)
            self.mu_logvar = nn.Linear(cfg.hidden, 2 * cfg.latent)
            self.dec1 = nn.Linear(cfg.latent, cfg.hidden)
            self.dec2 = nn.Linear(cfg.hidden, n_items)
            self.drop = nn.Dropout(cfg.dropout)
            for lin in (self.enc, self.mu_logvar, self.dec1, self.dec2):
                nn.init.xavier_uniform_(lin.weight)
                nn.init.normal_(lin.bias, std=0.001)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            h = torch.nn.functional.normalize(x, dim=1)
            h = torch.tanh(self.enc(self.drop(h)))
            mu, logvar = self.mu_logvar(h).chunk(2, dim=1)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
            return self.dec2(torch.tanh(self.dec1(z))), mu, logvar

    return Net()


class MultVAE(TorchRecommender):
    """Mult-VAE^PR with KL annealing; see the module docstring."""

    name = "multvae"
    Config = MultVAEConfig
    config: MultVAEConfig

    def _build_network(self, dataset: Dataset | None, weights: dict[str, Any] | None) -> nn.Module:
        return _network(self.n_items, self.config)

    def _fit(self, matrix: sp.csr_matrix, train: Interactions, dataset: Dataset) -> None:
        torch = require_torch()
        cfg = self.config
        fit_m, held = holdout_rows(matrix, cfg.valid_fraction, cfg.seed)
        rows = np.flatnonzero(np.diff(fit_m.indptr) > 0)
        val_users = np.flatnonzero(np.diff(held.indptr) > 0)
        with torch_threads(cfg.threads):
            seed_everything(cfg.seed)
            self.network = net = self._build_network(dataset, None)
            steps = [0]

            def batches(rng: np.random.Generator):
                order = rows[rng.permutation(len(rows))]
                for s in range(0, len(order), cfg.batch_size):
                    yield torch.from_numpy(fit_m[order[s:s + cfg.batch_size]].toarray())

            def step(x: torch.Tensor) -> float:
                logits, mu, logvar = net(x)
                nll = -(torch.log_softmax(logits, 1) * x).sum(1).mean()
                kl = (-0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)).mean()
                beta = cfg.beta * min(1.0, steps[0] / cfg.anneal_steps) if cfg.anneal_steps else cfg.beta
                steps[0] += 1
                loss = nll + beta * kl
                loss.backward()
                return float(loss.detach())

            def validate() -> float:
                return _ndcg_rows(net, fit_m, held, val_users, 10)

            self.train_history = fit_loop(net, cfg, batches=batches, step=step,
                                          validate=validate if len(val_users) else None,
                                          progress=self.show_progress, description=f"{self.name} epochs")
            self.train_history.valid_users = int(len(val_users))

    def _score(self, users: np.ndarray) -> np.ndarray:
        torch = require_torch()
        out = np.empty((len(users), self.n_items), dtype=np.float32)
        self.network.eval()
        with torch_threads(self.config.threads), torch.no_grad():
            for s in range(0, len(users), _SCORE_BATCH):
                x = torch.from_numpy(self.matrix[users[s:s + _SCORE_BATCH]].toarray())
                out[s:s + _SCORE_BATCH] = self.network(x)[0].numpy()
        return out


def _ndcg_rows(net: nn.Module, fit_m: sp.csr_matrix, held: sp.csr_matrix, users: np.ndarray, k: int) -> float:
    """Mean NDCG@k (binary gains, ideal over min(|held|, k)) of each user's held-out items,
    ranked from the fold-in row with its items masked."""
    torch = require_torch()
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    total = 0.0
    for s in range(0, len(users), _SCORE_BATCH):
        us = users[s:s + _SCORE_BATCH]
        x = fit_m[us].toarray()
        scores = net(torch.from_numpy(x))[0].numpy()
        scores[x > 0] = -np.inf
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable"), 1)
        h = held[us]
        for j in range(len(us)):
            truth = h.indices[h.indptr[j]:h.indptr[j + 1]]
            hits = np.isin(order[j], truth)
            total += float((hits * disc).sum() / disc[:min(len(truth), k)].sum())
    return total / len(users)
