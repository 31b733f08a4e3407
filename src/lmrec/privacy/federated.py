"""Federated training, simulated in one process: FedAvg of the two-tower ("fed-two-tower").

Clients are shards of users (`clients` of them; 0 = one client per user). A client keeps its
users' events and its user-side parameters (the user-id residuals when `user_id=True`) and
never sends them; a round runs like this:

1. the server sends the shared weights (both towers' MLPs, i.e. everything but user ids);
2. each of the round's clients (a `client_fraction` of them, drawn at random) trains a fresh
   AdamW for `local_epochs` passes over its own examples, with the same loss as the central
   model (in-batch negatives come from the client's own batch);
   (the logQ term's global item counts come from one masked aggregation of the clients'
   count vectors before the first round);
3. it computes its update (local - global weights), optionally clips it to L2 norm `clip` and
   adds its share N(0, (noise_multiplier * clip)^2 / m) of the noise (m = clients in the round,
   so the sum carries N(0, (noise_multiplier * clip)^2): distributed DP, client-level);
4. it masks the update with pairwise masks (`PairwiseMasks`) and sends only the masked vector;
5. the server adds the masked vectors (the masks cancel), divides by the total weight and
   applies the average (times `server_lr`). Without clipping an update is weighted by the
   client's number of examples (FedAvg); with clipping every client weighs 1, so one client's
   influence stays bounded. The weight travels masked, inside the vector.

Validation (early stopping over rounds, `patience`) is federated evaluation: each client would
compute NDCG@10 on its users' held-out events locally and only the mean is used; the
simulation computes the same mean directly. Not simulated: client dropouts during a round
(real secure aggregation recovers masks by secret sharing), communication, stragglers.

Example:
    >>> import numpy as np
    >>> masks = PairwiseMasks([0, 1, 2], seed=7)
    >>> ups = [np.array([0.5, -1.0]), np.array([0.25, 2.0]), np.array([-0.5, 0.0])]
    >>> masks.unmask_sum([masks.mask(i, u) for i, u in enumerate(ups)]).tolist()
    [0.25, 1.0]
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from lmrec.models.training import TrainHistory, build_optimizer, require_torch
from lmrec.models.two_tower import TrainingData, TwoTowerConfig, TwoTowerRecommender

__all__ = ["PairwiseMasks", "FederatedConfig", "FederatedTwoTower"]

_MAX = np.iinfo(np.uint64).max


class PairwiseMasks:
    """Secure-aggregation-style pairwise masks (Bonawitz et al., CCS 2017, without dropouts).

    Updates are encoded in fixed point (`bits` fractional bits) as integers modulo 2^64. For
    every pair of clients i < j a mask r_ij, uniform in Z_2^64, is drawn from a seed the two
    share (simulated: derived from `seed` and the pair; in a deployment from a Diffie-Hellman
    key agreement); client i adds r_ij and client j subtracts it. Each masked vector is then
    uniform over Z_2^64 whatever the update, so alone it reveals nothing; in the sum every mask
    cancels and the server recovers exactly the sum of the encoded updates.
    """

    def __init__(self, clients: Sequence[int], seed: int, bits: int = 24) -> None:
        self.clients = [int(c) for c in clients]
        if len(set(self.clients)) != len(self.clients):
            raise ValueError("client ids must be distinct")
        self.seed, self.scale = int(seed), float(2 ** bits)

    def _pair_mask(self, a: int, b: int, size: int) -> np.ndarray:
        lo, hi = min(a, b), max(a, b)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=(lo, hi))))
        return rng.integers(0, _MAX, size=size, dtype=np.uint64, endpoint=True)

    def encode(self, update: np.ndarray) -> np.ndarray:
        """Fixed-point encoding of a float vector into Z_2^64 (two's complement)."""
        x = np.asarray(update, np.float64)
        if not np.all(np.isfinite(x)) or np.abs(x).max(initial=0.0) * self.scale >= 2.0 ** 62:
            raise ValueError("update out of the fixed-point range (non-finite or too large)")
        return np.round(x * self.scale).astype(np.int64).view(np.uint64)

    def mask(self, client: int, update: np.ndarray) -> np.ndarray:
        """What client `client` sends: its encoded update plus its pairwise masks (mod 2^64)."""
        out = self.encode(update).copy()
        me = int(client)
        if me not in self.clients:
            raise ValueError(f"client {me} is not in this round")
        for other in self.clients:
            if other != me:
                r = self._pair_mask(me, other, len(out))
                out = out + r if me < other else out - r  # uint64 arithmetic wraps modulo 2^64
        return out

    def unmask_sum(self, masked: Sequence[np.ndarray]) -> np.ndarray:
        """The server's view: the sum of every client's masked vector, decoded. Exact only when
        every client of the round sent (no dropout recovery)."""
        if len(masked) != len(self.clients):
            raise ValueError(f"{len(masked)} masked updates for {len(self.clients)} clients: the masks would not cancel")
        total = np.zeros(len(masked[0]), np.uint64)
        for m in masked:
            total = total + m
        return total.view(np.int64).astype(np.float64) / self.scale


class FederatedConfig(TwoTowerConfig):
    """`TwoTowerConfig` plus the federation. `epochs` is the most rounds, `patience` counts
    rounds. clients: shards of users (0 = one per user). client_fraction: share of clients per
    round. local_epochs: passes over a client's examples per round. clip: L2 bound of an update
    (0 = none); noise_multiplier: Gaussian noise std / clip on the summed update (needs clip).
    secure_aggregation: pairwise masks (off: the server adds plain updates, same result).
    server_lr: step size of the averaged update."""

    clients: int = Field(20, ge=0)
    client_fraction: float = Field(1.0, gt=0.0, le=1.0)
    local_epochs: int = Field(1, ge=1)
    clip: float = Field(0.0, ge=0.0)
    noise_multiplier: float = Field(0.0, ge=0.0)
    secure_aggregation: bool = True
    server_lr: float = Field(1.0, gt=0.0)

    @model_validator(mode="after")
    def _federation(self) -> FederatedConfig:
        if self.noise_multiplier > 0 and self.clip <= 0:
            raise ValueError("noise_multiplier > 0 needs clip > 0 (the noise is calibrated to the clip)")
        if self.dp_epsilon is not None:
            raise ValueError("fed-two-tower: use clip + noise_multiplier for DP (dp_epsilon is the central model's)")
        if self.fgm:
            raise ValueError("fed-two-tower does not support fgm")
        return self


class FederatedTwoTower(TwoTowerRecommender):
    """The two-tower trained by simulated FedAvg; see the module docstring. Scoring, saving
    and loading are the two-tower's."""

    name = "fed-two-tower"
    Config = FederatedConfig
    config: FederatedConfig

    def _shared(self) -> list[tuple[str, Any]]:
        """Parameters the server aggregates: all but the user-side (user-id) parameters."""
        return [(n, p) for n, p in self.net.named_parameters() if p.requires_grad and not n.startswith("user.users.")]

    def _train(self, data: TrainingData, liked: np.ndarray) -> TrainHistory:
        torch = require_torch()
        cfg = self.config
        step, validate = self._train_parts(data, liked)
        shared = self._shared()
        sizes = [p.numel() for _, p in shared]

        def get_flat() -> np.ndarray:
            return torch.cat([p.detach().reshape(-1) for _, p in shared]).double().numpy()

        def set_flat(vec: np.ndarray) -> None:
            with torch.no_grad():
                for (_, p), chunk in zip(shared, np.split(vec, np.cumsum(sizes)[:-1])):
                    p.copy_(torch.from_numpy(chunk.reshape(p.shape)).to(p.dtype))

        owners = data.owner[data.examples]
        users = np.unique(owners)
        rng = np.random.default_rng(cfg.seed)
        n_clients = len(users) if cfg.clients == 0 else min(cfg.clients, len(users))
        shards = np.array_split(rng.permutation(users), n_clients)
        client_of = np.full(self.n_users, -1)
        for c, s in enumerate(shards):
            client_of[s] = c
        ex_by_client = [data.examples[client_of[owners] == c] for c in range(n_clients)]
        if cfg.logq:
            # the logQ correction needs global item counts: one secure-aggregation round of the
            # clients' own count vectors gives them without any client's counts being seen
            counts = [np.bincount(data.items[ex], minlength=self.n_items).astype(np.float64) for ex in ex_by_client]
            agg = PairwiseMasks(list(range(n_clients)), seed=int(rng.integers(2**62)), bits=0)
            total = agg.unmask_sum([agg.mask(c, v) for c, v in enumerate(counts)])
            if not np.array_equal(total, data.target_counts):  # pragma: no cover - an arithmetic bug
                raise AssertionError("securely aggregated item counts differ from the plain sum")
        ids = getattr(self.net.user, "users", None)  # the user-side parameters, kept by the clients
        local_rows = ids.weight.detach().clone() if ids is not None else None

        def load_local() -> None:
            if ids is not None:
                with torch.no_grad():
                    ids.weight.copy_(local_rows)

        glob = get_flat()
        history = TrainHistory()
        best, best_round, bad, best_state = -np.inf, 0, 0, None
        t_start = time.perf_counter()
        per_round = max(2, int(round(cfg.client_fraction * n_clients)))
        sent_bytes = 0
        for rnd in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            chosen = np.sort(rng.choice(n_clients, size=min(per_round, n_clients), replace=False))
            round_seed = int(rng.integers(2**62))  # drawn either way: masking does not change the run
            masks = PairwiseMasks(chosen.tolist(), seed=round_seed) if cfg.secure_aggregation else None
            sent, losses = [], []
            for c in chosen.tolist():
                set_flat(glob)
                load_local()
                self.net.train()
                opt = build_optimizer(self.net, cfg.lr, cfg.weight_decay)  # fresh local optimiser
                rows_all = ex_by_client[c]
                for _ in range(cfg.local_epochs):
                    order = rng.permutation(rows_all)
                    for s in range(0, len(order), cfg.batch_size):
                        rows = order[s:s + cfg.batch_size]
                        if len(rows) < 2:
                            continue
                        opt.zero_grad(set_to_none=True)
                        losses.append(step(rows))
                        if cfg.max_grad_norm > 0:
                            torch.nn.utils.clip_grad_norm_([p for p in self.net.parameters() if p.requires_grad],
                                                           cfg.max_grad_norm)
                        opt.step()
                delta = get_flat() - glob
                if cfg.clip > 0:
                    delta *= min(1.0, cfg.clip / (np.linalg.norm(delta) + 1e-12))
                    if cfg.noise_multiplier > 0:
                        delta += rng.normal(0.0, cfg.noise_multiplier * cfg.clip / np.sqrt(len(chosen)), len(delta))
                weight = 1.0 if cfg.clip > 0 else float(len(rows_all))
                vec = np.r_[weight * delta, weight]
                sent.append(masks.mask(c, vec) if masks is not None else vec)
                sent_bytes += vec.size * 8
                if ids is not None:  # the client's user rows stay with the client
                    mine = torch.from_numpy(shards[c])
                    local_rows[mine] = ids.weight.detach()[mine]
            total = masks.unmask_sum(sent) if masks is not None else np.sum(sent, axis=0)
            glob = glob + cfg.server_lr * total[:-1] / max(total[-1], 1e-12)
            set_flat(glob)
            load_local()
            record: dict[str, float] = {"epoch": rnd, "loss": float(np.mean(losses)) if losses else float("nan"),
                                        "clients": float(len(chosen))}
            stop = False
            if validate is not None:
                self.net.eval()
                with torch.no_grad():
                    record["valid_NDCG@10"] = value = float(validate())
                if value > best:
                    best, best_round, bad = value, rnd, 0
                    best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
                else:
                    bad += 1
                    stop = bad >= cfg.patience
            record["seconds"] = time.perf_counter() - t0
            history.epochs.append(record)
            if stop:
                history.stopped_early = True
                break
        if best_state is not None:
            self.net.load_state_dict(best_state)
            history.best_epoch, history.best_valid = best_round, best
        else:
            history.best_epoch = len(history.epochs)
        self.net.eval()
        history.train_s = time.perf_counter() - t_start
        fed: dict[str, Any] = {"clients": n_clients, "clients_per_round": int(min(per_round, n_clients)),
                               "rounds_run": len(history.epochs), "best_round": history.best_epoch,
                               "secure_aggregation": cfg.secure_aggregation, "clip": cfg.clip,
                               "noise_multiplier": cfg.noise_multiplier, "shared_parameters": int(sum(sizes)),
                               "uploaded_MB": round(sent_bytes / 2**20, 2), "unit": "client"}
        if cfg.noise_multiplier > 0:
            from lmrec.privacy.dp import epsilon_spent

            q = min(per_round, n_clients) / n_clients
            fed.update({"epsilon": round(epsilon_spent(cfg.noise_multiplier, q, len(history.epochs), cfg.dp_delta), 4),
                        "delta": cfg.dp_delta, "note": "client-level; rounds drawn without replacement are "
                        "accounted as Poisson sampling at the same rate, and early stopping is not accounted"})
        self.train_info = {"train_s": round(history.train_s, 3), "best_epoch": history.best_epoch,
                           "epochs_run": len(history.epochs), "stopped_early": history.stopped_early,
                           "valid_NDCG@10": history.best_valid, "valid_users": int(len(data.valid_rows)),
                           "examples": int(len(data.examples)), "federated": fed}
        return history
