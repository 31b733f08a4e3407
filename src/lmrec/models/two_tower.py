"""Two-tower recommender over language-model item vectors ("two-tower").

The item tower maps each item's text embedding (frozen vectors from
`lmrec.recall.item2item.dataset_item_vectors`, or a LoRA-tuned MiniLM with `item_tower="lora"`)
through an MLP; the user tower pools the frozen text vectors of the user's recent history
(mean or attention) and maps them through its own MLP. A score is the cosine of the two.
Because neither tower needs an item or user id, an item never seen in training is scored
from its text and a new user from any history (`score_histories`); learned id residuals are
optional (`item_id`, `user_id`).

Training is next-item prediction on each user's history in (timestamp, item) order: every
event but a user's first is a target, its input the up to `max_history` events before it.
Losses: in-batch sampled softmax with the logQ popularity correction (each item once in the
denominator) or pointwise BCE against uniformly drawn negatives, at `temperature`. Early
stopping: the last training event of up to `valid_users` users is held out and the weights
of the epoch with the best full-ranking NDCG@10 on it are kept (`lmrec.models.training`).
With `multitask_weight` > 0 a second user head learns "liked" (rating >= `like_threshold`)
next to "watched"; `score_task` picks the head that scores.

Saved as a folder: config.json (name, params, config hash), model.safetensors (tower weights,
LoRA adapters only, and the fitted user / item embeddings; its metadata repeats the hash).

Example:
    >>> from lmrec.testing.toy import toy_dataset
    >>> ds = toy_dataset()
    >>> model = TwoTowerRecommender(encoder="fake", epochs=2, dim=16, hidden=32).fit(ds.interactions, ds)
    >>> [len(c) for c in model.recommend([0, 1], k=5)]
    [5, 5]
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Self, Sequence

import numpy as np
import scipy.sparse as sp
from pydantic import Field, field_validator, model_validator

from lmrec.data.dataset import Dataset, Interactions
from lmrec.privacy.dp import DPFields
from lmrec.models.training import (TrainConfig, TrainHistory, fit_loop, ndcg_at_k, require_torch,
                                   seed_everything, torch_threads)
from lmrec.recall.base import Recommender
from lmrec.recall.item2item import dataset_item_texts, dataset_item_vectors, resolve_encoder
from lmrec.text.base import normalize
from lmrec.text.registry import check_encoder_name
from lmrec.recall.scores import UserScores, VectorCache, VectorScores
from lmrec.types import HistoryBatch, config_hash

__all__ = ["TwoTowerConfig", "TwoTowerRecommender", "TrainingData"]

FORMAT = "lmrec.two-tower/1"
TASKS = ("watched", "liked")


class TwoTowerConfig(TrainConfig, DPFields):
    """Parameters of `TwoTowerRecommender` (the optimisation fields come from `TrainConfig`).

    encoder: registry encoder of the frozen item vectors (user tower input; item tower input
    when item_tower="frozen"). item_tower: "frozen" (MLP over the frozen vectors) or "lora"
    (LoRA adapters on the top `lora_layers` layers of `lora_model`, rank `lora_r`, trained
    with the towers; slow on CPU). dim / hidden / dropout: output size, MLP hidden size
    (0 = linear) and dropout of both towers. pooling: "mean" or "attention" (learned queries,
    `attention_heads` of them, over the last `max_history` events with a position embedding).
    user_id / item_id: add learned id residuals (zero for new users / items without training
    events). loss: "softmax" (in-batch sampled softmax, `logq` correction) or "bce" (sigmoid of
    cosine / temperature + bias, `negatives` uniform negatives per event). multitask_weight:
    weight of the "liked" head's loss (events rated >= like_threshold; 0 = one head).
    score_task: head used to score. valid_users: users whose last event is held out for early
    stopping (0 = none: train all epochs). steps_per_epoch: batches per epoch (0 = one pass).
    threads: torch intra-op threads (0 = every core this process may use).
    """

    encoder: str = "minilm"
    item_tower: Literal["frozen", "lora"] = "frozen"
    dim: int = Field(128, ge=2)
    hidden: int = Field(256, ge=0)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    pooling: Literal["mean", "attention"] = "mean"
    attention_heads: int = Field(2, ge=1)
    max_history: int = Field(20, ge=1)
    user_id: bool = False
    item_id: bool = False
    loss: Literal["softmax", "bce"] = "softmax"
    temperature: float = Field(0.05, gt=0.0)
    logq: bool = True
    negatives: int = Field(8, ge=1)
    multitask_weight: float = Field(0.0, ge=0.0)
    like_threshold: float = 4.0
    score_task: Literal["watched", "liked"] = "watched"
    valid_users: int = Field(1000, ge=0)
    steps_per_epoch: int = Field(0, ge=0)
    lora_model: str = "packaged:all-MiniLM-L6-v2"
    lora_r: int = Field(8, ge=1)
    lora_alpha: float = Field(16.0, gt=0.0)
    lora_layers: int = Field(2, ge=1)
    lora_max_length: int = Field(64, ge=8)
    # TrainConfig fields with defaults that suit this model
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(512, ge=2)
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(1e-4, ge=0.0)
    patience: int = Field(2, ge=1)
    lr: float = Field(2e-3, gt=0.0)
    # one intra-op thread: these towers are small, and on a shared 2-core machine a second
    # thread mostly waits (measured: ~5x slower steps under load with 2)
    threads: int = Field(1, ge=0)
    # differential privacy (lmrec.privacy.dp): None = off. With a target epsilon the towers
    # train by per-user DP-SGD (see `_train_dp`): dp_users_per_step users drawn by Poisson
    # sampling per step, up to dp_examples_per_user of each one's examples, one clipped
    # gradient per user (L2 <= dp_max_grad_norm), Gaussian noise calibrated by the
    # dp_accountant for `epochs` expected passes over the users, at dp_delta
    # dp_epsilon = inf runs the same procedure without noise (no privacy; a reference)
    # (dp_epsilon, dp_delta, dp_max_grad_norm, dp_users_per_step, dp_accountant: `DPFields`)
    dp_examples_per_user: int = Field(32, ge=1)
    dp_negatives: int = Field(512, ge=1)

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, v: str) -> str:
        return check_encoder_name(v)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.score_task == "liked" and self.multitask_weight <= 0:
            raise ValueError("score_task='liked' needs the liked head: set multitask_weight > 0")
        if self.dp_epsilon is not None:
            # per-user gradients are vmapped over towers without data-dependent state: mean
            # pooling, frozen item vectors, no id residuals, one head, no FGM
            bad = {k: v for k, v in {"pooling": self.pooling != "mean", "item_tower": self.item_tower != "frozen",
                                     "user_id": self.user_id, "item_id": self.item_id,
                                     "multitask_weight": self.multitask_weight > 0, "fgm": self.fgm}.items() if v}
            if bad:
                raise ValueError(f"dp_epsilon needs pooling='mean', item_tower='frozen', user_id=False, "
                                 f"item_id=False, multitask_weight=0, fgm=False; change {sorted(bad)}")
        return self




class TrainingData:
    """Training histories as flat arrays and the next-item examples drawn from them.

    Events are sorted by (user, timestamp, item); user u owns rows indptr[u]:indptr[u + 1].
    `examples` are row indices of target events (never a user's first event, never a held-out
    validation event); `valid_rows` are the held-out last events of the validation users.
    """

    def __init__(self, train: Interactions, n_users: int, n_items: int, *, valid_users: int, seed: int) -> None:
        s = train.sorted()
        self.items, self.values = s.item.astype(np.int64), s.value.astype(np.float32)
        self.owner = s.user.astype(np.int64)
        self.indptr = np.searchsorted(s.user, np.arange(n_users + 1)).astype(np.int64)
        starts = self.indptr[self.owner]
        lengths = np.diff(self.indptr)
        eligible = np.flatnonzero(lengths >= 3)  # keeps at least one training example per valid user
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.permutation(eligible)[:valid_users]) if valid_users else eligible[:0]
        held = np.zeros(len(self.items), dtype=bool)
        held[self.indptr[chosen + 1] - 1] = True
        self.examples = np.flatnonzero((np.arange(len(self.items)) > starts) & ~held)
        # the evaluator drops truth the user already saw: so does validation
        rows = self.indptr[chosen + 1] - 1
        repeat = np.array([self.items[r] in self.items[self.indptr[u]:r] for u, r in zip(chosen, rows)], dtype=bool)
        self.valid_rows = rows[~repeat]
        self.target_counts = np.bincount(self.items[self.examples], minlength=n_items)

    def history(self, rows: np.ndarray, max_history: int, fallback: int) -> tuple[np.ndarray, np.ndarray]:
        """Item indices (b, L) of the up to `max_history` events before each row (right-padded,
        most recent last; -1 = padding) and the mask. Rows without history get `fallback`."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.indptr[self.owner[rows]]
        first = np.maximum(starts, rows - max_history)
        return _pad(self.items, first, rows - first, fallback)

    def user_history(self, users: np.ndarray, max_history: int, fallback: int) -> tuple[np.ndarray, np.ndarray]:
        """The last `max_history` training events of each user (whole history, nothing held out)."""
        users = np.asarray(users, dtype=np.int64)
        ends = self.indptr[users + 1]
        first = np.maximum(self.indptr[users], ends - max_history)
        return _pad(self.items, first, ends - first, fallback)


def _pad(items: np.ndarray, first: np.ndarray, n: np.ndarray, fallback: int) -> tuple[np.ndarray, np.ndarray]:
    width = max(int(n.max()) if len(n) else 0, 1)
    col = np.arange(width)[None, :]
    valid = col < n[:, None]
    idx = np.where(valid, items[np.where(valid, first[:, None] + col, 0)] if len(items) else 0, -1)
    empty = n == 0
    idx[empty, 0], valid[empty, 0] = fallback, True
    return idx.astype(np.int64), valid


def _histories_arrays(histories: Sequence[Sequence[int]], max_history: int, fallback: int,
                      n_items: int) -> tuple[np.ndarray, np.ndarray]:
    lists = [np.asarray(h, dtype=np.int64)[-max_history:] for h in histories]
    for i, h in enumerate(lists):
        if len(h) and (h.min() < 0 or h.max() >= n_items):
            raise IndexError(f"histories[{i}]: item index out of range 0..{n_items - 1}")
    flat = np.concatenate(lists) if lists else np.zeros(0, dtype=np.int64)
    lengths = np.array([len(h) for h in lists], dtype=np.int64)
    first = np.r_[0, np.cumsum(lengths)[:-1]] if len(lists) else np.zeros(0, dtype=np.int64)
    return _pad(flat, first, lengths, fallback)


def _dp_towers_class() -> Any:
    torch = require_torch()

    class DPTowers(torch.nn.Module):
        """The trainable path of the two-tower under DP: the user tower after mean pooling
        (trunk + first head) and the item tower's MLP; shares the network's parameters."""

        def __init__(self, net: Any) -> None:
            super().__init__()
            self.trunk, self.head, self.item = net.user.trunk, net.user.heads[0], net.item.proj

        def forward(self, pooled: Any, pos: Any, negs: Any) -> Any:
            norm = torch.nn.functional.normalize
            return (norm(self.head(self.trunk(pooled)), dim=-1), norm(self.item(pos), dim=-1),
                    norm(self.item(negs), dim=-1))

    return DPTowers


def _DPTowers(net: Any) -> Any:
    return _dp_towers_class()(net)


class TwoTowerRecommender(Recommender):
    """Two-tower model over LM item vectors; see the module docstring and `TwoTowerConfig`."""

    name = "two-tower"
    Config = TwoTowerConfig
    config: TwoTowerConfig

    item_embeddings: np.ndarray  # (n_items, dim) normalised
    user_embeddings: np.ndarray  # (n_tasks, n_users, dim) normalised
    user_lm: np.ndarray  # (n_items + 1, d_user) frozen vectors, last row = the empty-history fallback
    item_lm: np.ndarray  # (n_items, d_item) item tower input (frozen or LoRA vectors)
    has_id: np.ndarray  # (n_items,) bool: items with an id residual (seen in training)

    def __init__(self, config: TwoTowerConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.net: Any = None
        self.item_texts: list[str] | None = None
        self.history: TrainHistory | None = None
        self.train_info: dict[str, Any] = {}
        self.progress: bool | None = None  # None: show the training bar when stderr is a terminal

    @property
    def n_tasks(self) -> int:
        return 2 if self.config.multitask_weight > 0 else 1

    @property
    def task_index(self) -> int:
        return TASKS.index(self.config.score_task)

    # --- fitting ---------------------------------------------------------------------------
    def _fit(self, matrix: sp.csr_matrix, train: Interactions, dataset: Dataset) -> None:
        require_torch()
        cfg = self.config
        with torch_threads(cfg.threads):
            seed_everything(cfg.seed)
            dp = cfg.dp_epsilon is not None
            # DP: no early stopping on held-out user events (model selection on private data
            # would spend budget the accountant does not count): every event trains
            data = TrainingData(train, self.n_users, self.n_items, valid_users=0 if dp else cfg.valid_users,
                                seed=cfg.seed)
            if not len(data.examples):
                raise ValueError("two-tower: no training example (every user needs two or more events)")
            liked = data.values >= cfg.like_threshold
            if cfg.multitask_weight > 0 and not liked[data.examples].any():
                raise ValueError(f"multitask_weight > 0 needs events with value >= like_threshold "
                                 f"({cfg.like_threshold}); {dataset.name} has none (no ratings?)")
            lm = dataset_item_vectors(dataset, cfg.encoder, progress=self._show_progress())
            counts = np.bincount(train.item, minlength=self.n_items).astype(np.float64)
            # the empty-history vector: popularity-weighted, or (DP) the public catalog mean
            fallback = normalize(counts @ lm if counts.sum() and not dp else lm.mean(axis=0))
            self.user_lm = np.vstack([lm, fallback[None, :]]).astype(np.float32)
            self.has_id = counts > 0
            self.item_texts = dataset_item_texts(dataset) if cfg.item_tower == "lora" else None
            self.net = self._build_net(self.user_lm.shape[1])
            self.item_lm = lm.astype(np.float32) if cfg.item_tower == "frozen" else np.zeros((0, 0), np.float32)
            self.history = self._train_dp(data) if dp else self._train(data, liked)
            self._finish(data)

    def _build_net(self, user_in: int) -> Any:
        from lmrec.models.towers import ItemTower, LoraTextEncoder, UserTower

        torch = require_torch()
        cfg = self.config
        net = torch.nn.Module()
        if cfg.item_tower == "lora":
            net.lora = LoraTextEncoder(cfg.lora_model, r=cfg.lora_r, alpha=cfg.lora_alpha, layers=cfg.lora_layers,
                                       max_seq_length=cfg.lora_max_length)
            item_in = net.lora.dim
        else:
            item_in = user_in
        net.item = ItemTower(item_in, cfg.dim, cfg.hidden, cfg.dropout, self.n_items if cfg.item_id else 0)
        net.user = UserTower(user_in, cfg.dim, cfg.hidden, cfg.dropout, pooling=cfg.pooling,
                             max_history=cfg.max_history, attention_heads=cfg.attention_heads,
                             n_heads=self.n_tasks, n_users=self.n_users if cfg.user_id else 0)
        net.bias = torch.nn.Parameter(torch.zeros(()))  # the BCE logit offset
        return net

    def _item_inputs(self, items: Any) -> Any:
        """Item tower inputs of item indices (a tensor): frozen vectors or LoRA embeddings."""
        torch = require_torch()
        if self.config.item_tower == "lora":
            assert self.item_texts is not None
            return self.net.lora([self.item_texts[i] for i in items.tolist()])
        return torch.from_numpy(self.item_lm)[items]

    def _user_vectors(self, hist: np.ndarray, mask: np.ndarray, users: np.ndarray | None) -> Any:
        torch = require_torch()
        u = None if users is None else torch.from_numpy(np.asarray(users, dtype=np.int64))
        return self.net.user(torch.from_numpy(self.user_lm), torch.from_numpy(hist), torch.from_numpy(mask), u)

    def _batches(self, data: TrainingData, rng: np.random.Generator) -> Iterator[np.ndarray]:
        order = rng.permutation(data.examples)
        bs = self.config.batch_size
        n = len(order) if not self.config.steps_per_epoch else min(len(order), self.config.steps_per_epoch * bs)
        for s in range(0, n, bs):
            if n - s >= 2:  # a one-row batch has no in-batch negative
                yield order[s:s + bs]

    def _train(self, data: TrainingData, liked: np.ndarray) -> TrainHistory:
        step, validate = self._train_parts(data, liked)
        history = fit_loop(self.net, self.config, batches=lambda rng: self._batches(data, rng), step=step,
                           validate=validate, progress=self._show_progress(),
                           description=f"two-tower ({self.config.loss}, {self.config.item_tower})")
        self.train_info = {"train_s": round(history.train_s, 3), "best_epoch": history.best_epoch,
                           "epochs_run": len(history.epochs), "stopped_early": history.stopped_early,
                           "valid_NDCG@10": history.best_valid, "valid_users": int(len(data.valid_rows)),
                           "examples": int(len(data.examples))}
        return history

    def _train_parts(self, data: TrainingData, liked: np.ndarray) -> tuple[Any, Any]:
        """The training step (rows of examples -> forward + backward, returns the loss) and the
        validation (full-ranking NDCG@10 of the held-out events; None without any)."""
        from lmrec.models.towers import pointwise_bce_loss, sampled_softmax_loss
        from lmrec.models.training import fgm_backward

        torch = require_torch()
        cfg = self.config
        fallback = self.n_items
        log_q = torch.from_numpy(np.log(np.maximum(data.target_counts, 1) / len(data.examples)).astype(np.float32))
        has_id = torch.from_numpy(self.has_id)
        neg_pool = np.flatnonzero(self.has_id)
        neg_rng = np.random.default_rng(cfg.seed + 1)

        def step(rows: np.ndarray) -> float:
            hist, mask = data.history(rows, cfg.max_history, fallback)
            users = data.owner[rows]
            targets = torch.from_numpy(data.items[rows])
            like = torch.from_numpy(liked[rows].astype(np.float32))
            negs = None
            if cfg.loss == "bce":
                negs = torch.from_numpy(neg_pool[neg_rng.integers(len(neg_pool), size=(len(rows), cfg.negatives))])
            wanted = targets if negs is None else torch.cat([targets, negs.flatten()])
            uniq, inverse = torch.unique(wanted, return_inverse=True)

            def loss_of(table: Any) -> Any:
                # both towers run inside: FGM back-propagates a second, perturbed pass
                user = self._user_vectors(hist, mask, users)  # (tasks, b, dim)
                emb = self.net.item(table, uniq, has_id)[inverse]
                pos = emb[:len(rows)]
                total = 0.0
                for task, weight in ((0, None), (1, like)):
                    if task >= self.n_tasks:
                        break
                    if cfg.loss == "softmax":
                        part = sampled_softmax_loss(user[task], pos, targets, temperature=cfg.temperature,
                                                    log_q=log_q[targets] if cfg.logq else None, weight=weight)
                    else:
                        neg = emb[len(rows):].reshape(len(rows), cfg.negatives, -1)
                        part = pointwise_bce_loss(user[task], pos, neg, temperature=cfg.temperature,
                                                  bias=self.net.bias, neg_mask=negs != targets[:, None],
                                                  weight=weight)
                    total = total + (part if task == 0 else cfg.multitask_weight * part)
                return total

            def embed() -> Any:
                table = self._item_inputs(uniq)
                return table if table.requires_grad or not cfg.fgm else table.clone().requires_grad_(True)

            return fgm_backward(embed, loss_of, cfg.fgm_epsilon if cfg.fgm else None)

        vrows = data.valid_rows
        task_rows = vrows if cfg.score_task == "watched" else vrows[liked[vrows]]
        seen = [data.items[data.indptr[data.owner[r]]:r] for r in task_rows]

        def validate() -> float:
            """Full-ranking NDCG@10 of the held-out events, history items masked."""
            items = self._all_item_embeddings()
            hist, mask = data.history(task_rows, cfg.max_history, fallback)
            user = self._user_vectors(hist, mask, data.owner[task_rows])[self.task_index]
            scores = user @ items.T
            rows = np.repeat(np.arange(len(task_rows)), [len(s) for s in seen])
            scores[torch.from_numpy(rows), torch.from_numpy(np.concatenate(seen))] = float("-inf")
            return float(ndcg_at_k(scores, torch.from_numpy(data.items[task_rows]), 10).mean())

        return step, (validate if len(task_rows) else None)

    def _train_dp(self, data: TrainingData) -> TrainHistory:
        """Per-user DP-SGD of both towers (`lmrec.privacy.dp.DPSGD`).

        Privacy unit: a user (all of the user's events). Each step draws every user with
        probability q = dp_users_per_step / n_users (Poisson), takes up to dp_examples_per_user
        of the drawn user's next-item examples, and computes one loss per user: sampled softmax
        of each example's target against dp_negatives items drawn uniformly from the catalog
        (shared by the step; no logQ: uniform sampling needs none, and counts are private).
        Each user's gradient is clipped to dp_max_grad_norm, the sum gets Gaussian noise and is
        divided by q n_users; AdamW applies it (post-processing). Steps = epochs / q. The
        accountant's (epsilon, delta) covers the tower weights; the per-user vectors the model
        keeps (each computed from that user's own history) and the training matrix are that
        user's own data and are not released by it to anyone else.
        """
        from lmrec.models.training import build_optimizer, warmup_schedule
        from lmrec.privacy.dp import DPSGD, pick_rows

        torch = require_torch()
        cfg = self.config
        n = self.n_users
        q = min(1.0, cfg.dp_users_per_step / n)
        steps = max(1, int(round(cfg.epochs / q)))
        owners = data.owner[data.examples]
        ex_ptr = np.searchsorted(owners, np.arange(n + 1))
        has_examples = np.diff(ex_ptr) > 0
        towers = _DPTowers(self.net)
        temperature = cfg.temperature

        def user_loss(call: Any, pooled: Any, pos: Any, pos_ids: Any, mask: Any, negs: Any, neg_ids: Any) -> Any:
            u, p, ng = call(pooled, pos, negs)  # (m, dim), (m, dim), (K, dim)
            pos_logit = (u * p).sum(-1, keepdim=True) / temperature
            neg_logit = (u @ ng.T / temperature).masked_fill(neg_ids[None, :] == pos_ids[:, None], float("-inf"))
            losses = -torch.log_softmax(torch.cat([pos_logit, neg_logit], 1), dim=1)[:, 0]
            return (losses * mask).sum() / mask.sum().clamp(min=1.0)

        dp = DPSGD(towers, user_loss, n_users=n, sample_rate=q, steps=steps, max_grad_norm=cfg.dp_max_grad_norm,
                   delta=cfg.dp_delta, target_epsilon=cfg.dp_epsilon, accountant=cfg.dp_accountant, seed=cfg.seed)
        opt = build_optimizer(self.net, cfg.lr, cfg.weight_decay)
        sched = warmup_schedule(opt, cfg.warmup_steps)
        rng = np.random.default_rng(cfg.seed + 2)
        item_lm = torch.from_numpy(self.item_lm)
        user_table = torch.from_numpy(self.user_lm)
        m = cfg.dp_examples_per_user
        history = TrainHistory()
        t_start = time.perf_counter()
        per_epoch = max(1, int(round(1 / q)))
        losses: list[float] = []
        for t in range(steps):
            users = dp.sample_users()
            users = users[has_examples[users]]  # the others have no example: a zero gradient
            pos, mask = pick_rows(ex_ptr, users, m, rng)
            rows = np.where(mask > 0, data.examples[pos], 0)
            self.net.train()
            with torch.no_grad():
                hist, hmask = data.history(rows.ravel(), cfg.max_history, self.n_items)
                pooled = self.net.user.pool(user_table, torch.from_numpy(hist), torch.from_numpy(hmask))
            pooled = pooled.reshape(len(users), m, -1)
            pos_ids = torch.from_numpy(data.items[rows])
            neg_ids = torch.from_numpy(rng.integers(self.n_items, size=cfg.dp_negatives))
            opt.zero_grad(set_to_none=True)
            stats = dp.step((pooled, item_lm[pos_ids], pos_ids, torch.from_numpy(mask)), (item_lm[neg_ids], neg_ids))
            opt.step()
            sched.step()
            if len(users):
                with torch.no_grad():
                    call = lambda *a: towers(*a)  # noqa: E731
                    losses.append(float(torch.stack([user_loss(call, pooled[i], item_lm[pos_ids[i]], pos_ids[i],
                                                               torch.from_numpy(mask[i]), item_lm[neg_ids], neg_ids)
                                                     for i in range(min(len(users), 8))]).mean()))
            if (t + 1) % per_epoch == 0 or t + 1 == steps:
                history.epochs.append({"epoch": len(history.epochs) + 1, "step": t + 1,
                                       "loss": float(np.mean(losses)) if losses else float("nan"),
                                       "clipped": stats["clipped"], "median_norm": stats["median_norm"]})
                losses = []
        self.net.eval()
        history.best_epoch = len(history.epochs)
        history.train_s = time.perf_counter() - t_start
        report = dp.report()
        self.train_info = {"train_s": round(history.train_s, 3), "best_epoch": history.best_epoch,
                           "epochs_run": len(history.epochs), "stopped_early": False, "valid_NDCG@10": None,
                           "valid_users": 0, "examples": int(len(data.examples)), "dp": report.to_dict()}
        return history

    def _all_item_embeddings(self) -> Any:
        """Item tower output of every catalog item (no gradients), in chunks."""
        torch = require_torch()
        with torch.no_grad():
            was = self.net.training
            self.net.eval()
            if self.config.item_tower == "lora":
                assert self.item_texts is not None
                self.item_lm = self.net.lora.encode(self.item_texts).numpy()
            items = torch.arange(self.n_items)
            out = self.net.item(torch.from_numpy(self.item_lm), items, torch.from_numpy(self.has_id))
            self.net.train(was)
        return out

    def _finish(self, data: TrainingData) -> None:
        """Fitted embeddings of every item and every user (their whole training history)."""
        torch = require_torch()
        self.item_embeddings = self._all_item_embeddings().numpy().astype(np.float32)
        users = np.arange(self.n_users)
        out = np.zeros((self.n_tasks, self.n_users, self.config.dim), dtype=np.float32)
        with torch.no_grad():
            for s in range(0, self.n_users, 4096):
                hist, mask = data.user_history(users[s:s + 4096], self.config.max_history, self.n_items)
                out[:, s:s + 4096] = self._user_vectors(hist, mask, users[s:s + 4096]).numpy()
        self.user_embeddings = out

    def _show_progress(self) -> bool:
        return self.progress if self.progress is not None else sys.stderr.isatty()

    # --- scoring ---------------------------------------------------------------------------
    def _score(self, users: np.ndarray) -> np.ndarray:
        return self.user_embeddings[self.task_index][users] @ self.item_embeddings.T

    def user_vectors_from_histories(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """User vectors (n, dim) of arbitrary histories (item indices, oldest first): new users
        need no refit. An empty history gets the popularity-weighted fallback."""
        torch = require_torch()
        self._require_net()
        hist, mask = _histories_arrays(histories, self.config.max_history, self.n_items, self.n_items)
        with torch.no_grad():
            self.net.eval()
            return self._user_vectors(hist, mask, None)[self.task_index].numpy()

    def score_histories(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """Scores (n, n_items) of every item for users given only by their histories."""
        return self.user_vectors_from_histories(histories) @ self.item_embeddings.T

    def add_item(self, item_index: int, text: str) -> None:
        """Give item `item_index` (new, or replacing one) the embedding of `text` through the
        item tower; indices past the catalog grow it. The item has no id residual."""
        torch = require_torch()
        self._require_net()
        frozen = normalize(resolve_encoder(self.config.encoder).encode_items([text]))[0]
        vec = frozen if self.config.item_tower == "frozen" else self.net.lora.encode([text]).numpy()[0]
        if item_index >= self.n_items:
            grow = item_index + 1 - self.n_items
            self.item_embeddings = np.vstack([self.item_embeddings, np.zeros((grow, self.config.dim), np.float32)])
            self.item_lm = np.vstack([self.item_lm, np.zeros((grow, self.item_lm.shape[1]), np.float32)])
            # the fallback (empty-history) vector stays the last row
            self.user_lm = np.vstack([self.user_lm[:-1], np.zeros((grow, self.user_lm.shape[1]), np.float32),
                                      self.user_lm[-1:]])
            self.has_id = np.r_[self.has_id, np.zeros(grow, dtype=bool)]
            self.matrix = sp.csr_matrix((self.matrix.data, self.matrix.indices, self.matrix.indptr),
                                        shape=(self.n_users, item_index + 1))
            self.n_items = item_index + 1
        self.has_id[item_index] = False
        self.item_lm[item_index] = vec
        self.user_lm[item_index] = frozen
        with torch.no_grad():
            self.net.eval()
            emb = self.net.item(torch.from_numpy(vec[None, :].astype(np.float32)))
        self.item_embeddings[item_index] = emb.numpy()[0]

    # --- as a channel: the user tower over the request's history ---------------------------
    history_based = True

    def user_scores(self, batch: HistoryBatch) -> UserScores:
        """<user tower(history), item tower(item)>: the fitted user vector while the user's
        items are those of the fit, else the user tower over the current history (new events,
        new users, sessions), against the item embeddings."""
        self._require_net()
        m = self.matrix
        vecs = np.zeros((len(batch), self.config.dim), np.float32)
        todo: list[int] = []
        for r, u in enumerate(batch.users.tolist()):
            if 0 <= u < self.n_users and len(batch.items[r]) and np.array_equal(
                    batch.distinct(r), m.indices[m.indptr[u]:m.indptr[u + 1]]):
                vecs[r] = self.user_embeddings[self.task_index][u]
            else:
                todo.append(r)
        if todo:
            hist = [batch.items[r][batch.items[r] < self.n_items] for r in todo]
            vecs[todo] = self.user_vectors_from_histories(hist)
        if getattr(self, "_vectors", None) is None:
            self._vectors = VectorCache()
        stats, ann = self._vectors.get(self.item_embeddings, None, self.n_items, self.retrieval)
        return VectorScores(vecs, self.item_embeddings, stats, None, ann, self.n_items)

    def prepare_retrieval(self, index: str = "exact", **params: Any) -> None:
        super().prepare_retrieval(index, **params)
        self._vectors = None

    def add_items(self, items: np.ndarray, dataset: Dataset) -> None:
        """Embed new (or changed) items through the item tower from their text in `dataset`."""
        from lmrec.recall.item2item import _texts_at

        rows = np.unique(np.r_[np.asarray(items, np.int64), np.arange(self.n_items, dataset.n_items)])
        for i, text in zip(rows.tolist(), _texts_at(dataset, rows)):
            self.add_item(int(i), text)
        self._vectors = None

    def for_task(self, task: str) -> TwoTowerRecommender:
        """The same fitted model scoring with another head ("watched" or "liked")."""
        if task not in TASKS[:self.n_tasks]:
            raise ValueError(f"score_task must be one of {TASKS[:self.n_tasks]}, got {task!r}")
        other = type(self)(self.config.model_copy(update={"score_task": task}))
        other.__dict__.update({k: v for k, v in self.__dict__.items() if k != "config"})
        return other

    def _require_net(self) -> None:
        if self.matrix is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
        if self.net is None:
            raise RuntimeError("the tower weights are not loaded")

    # --- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """A folder with config.json (name, params, sizes, config hash, training summary) and
        model.safetensors (tower weights, LoRA adapters without the base model, embeddings)."""
        from safetensors.torch import save_file

        torch = require_torch()
        if self.matrix is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        cfg = {"model": self.name, "params": self.params, "n_users": self.n_users, "n_items": self.n_items,
               "format": FORMAT}
        cfg["config_hash"] = config_hash(cfg)
        cfg["train"] = self.train_info
        weights = {f"net.{k}": v.detach().contiguous() for k, v in self.net.state_dict().items()
                   if not k.startswith("lora.") or "lora_" in k}
        arrays = {"item_embeddings": self.item_embeddings, "user_embeddings": self.user_embeddings,
                  "user_lm": self.user_lm, "item_lm": self.item_lm, "has_id": self.has_id.astype(np.uint8),
                  "matrix_indices": self.matrix.indices.astype(np.int64),
                  "matrix_indptr": self.matrix.indptr.astype(np.int64)}
        weights.update({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()})
        save_file(weights, str(path / "model.safetensors"), metadata={"config_hash": cfg["config_hash"],
                                                                     "format": FORMAT})
        (path / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Rebuild a model saved with `save`; the hash in config.json must match both its content
        and the weights file's metadata."""
        from safetensors import safe_open

        require_torch()
        path = Path(path)
        cfg = json.loads((path / "config.json").read_text())
        if cfg.get("model") != cls.name:
            raise ValueError(f"{path}: holds a {cfg.get('model')!r} model, not {cls.name!r}")
        body = {k: cfg[k] for k in ("model", "params", "n_users", "n_items", "format") if k in cfg}
        if config_hash(body) != cfg.get("config_hash"):
            raise ValueError(f"{path / 'config.json'}: config_hash does not match its content (edited by hand?)")
        with safe_open(str(path / "model.safetensors"), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("config_hash") != cfg["config_hash"]:
                raise ValueError(f"{path / 'model.safetensors'}: config_hash {meta.get('config_hash')!r} does not "
                                 f"match config.json ({cfg['config_hash']!r}): files from different models")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        model = cls(**cfg["params"])
        model.n_users, model.n_items = int(cfg["n_users"]), int(cfg["n_items"])
        model.train_info = cfg.get("train", {})
        model.item_embeddings = tensors.pop("item_embeddings").numpy()
        model.user_embeddings = tensors.pop("user_embeddings").numpy()
        model.user_lm = tensors.pop("user_lm").numpy()
        model.item_lm = tensors.pop("item_lm").numpy()
        model.has_id = tensors.pop("has_id").numpy().astype(bool)
        indices, indptr = tensors.pop("matrix_indices").numpy(), tensors.pop("matrix_indptr").numpy()
        model.matrix = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr),
                                     shape=(model.n_users, model.n_items))
        if model.config.item_tower == "lora":
            model.item_texts = None  # texts are not saved; add_item encodes the given text
        with torch_threads(model.config.threads):
            model.net = model._build_net(model.user_lm.shape[1])
            state = {k.removeprefix("net."): v for k, v in tensors.items()}
            missing, unexpected = model.net.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.startswith("lora.") or "lora_" in k]
            if missing or unexpected:
                raise ValueError(f"{path / 'model.safetensors'}: weights do not fit the configured towers "
                                 f"(missing {missing[:5]}, unexpected {list(unexpected)[:5]})")
        model.net.eval()
        return model

    # the base class's npz hooks are unused: save/load are overridden
    def _state(self) -> dict[str, np.ndarray]:  # pragma: no cover
        return {}
