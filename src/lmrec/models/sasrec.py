"""SASRec with full cross-entropy ("SASRec+"): a causal transformer over each user's item
sequence that predicts the next item, trained with a softmax over the whole catalog.

Kang & McAuley, "Self-Attentive Sequential Recommendation" (ICDM 2018) proposed the model
with one sampled negative per position; Klenitskiy & Vasilev, "Turning Dross Into Gold
Loss: is BERT4Rec really better than SASRec?" (RecSys 2023) showed that the same network
trained with cross-entropy over all items is much stronger. That is what this module trains.

The item table is tied: one matrix embeds the input items and scores the output, so the
score of item i after a sequence is <h_last, e_i>. `SASRec` is registered as "sasrec";
`lmrec.models.text_seq` swaps its item table for projected language-model embeddings.

Example:
    >>> from lmrec.testing.toy import toy_dataset
    >>> ds = toy_dataset()
    >>> model = SASRec(hidden=16, n_blocks=1, epochs=2, max_len=10).fit(ds.interactions, ds)
    >>> [len(c) for c in model.recommend([0, 1], k=5)]
    [5, 5]
"""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, field_validator, model_validator
from torch import nn

from lmrec.data.dataset import Dataset, Interactions
from lmrec.models.sequences import IGNORE, Histories, WindowMode
from lmrec.models.torch_base import TorchRecommender
from lmrec.models.training import (TrainConfig, TrainHistory, build_optimizer, fgm_backward, fit_loop, ndcg_at_k,
                                   seed_everything, torch_threads, warmup_schedule)
from lmrec.privacy.dp import DPFields
from lmrec.recall.scores import UserScores, VectorCache, VectorScores
from lmrec.types import HistoryBatch

__all__ = ["SASRecConfig", "IDItemEncoder", "SASRecNetwork", "SASRec"]

_SCORE_BATCH = 256  # users scored per forward pass


class SASRecConfig(TrainConfig, DPFields):
    """Parameters of `SASRec` (and the training fields of `TrainConfig`).

    max_len: the most recent items a user is represented by (training windows and scoring).
    hidden: the embedding and transformer width. n_blocks, n_heads: transformer blocks and
    attention heads (hidden must be divisible by n_heads). ffn_factor: feed-forward width as a
    multiple of hidden (SASRec uses 1). dropout: on embeddings, attention and feed-forward.
    windows: "all" trains on each user's whole history cut into windows of max_len + 1
    items, "last" only on their most recent window (SASRec's original choice, which leaves
    most of a long history unused: on ml-100k at max_len 50 "all" had the better validation
    NDCG@10, see benchmarks/sequential.py).

    dp_*: differential privacy (`lmrec.privacy.dp.DPFields`; dp_epsilon None = off): per-user
    DP-SGD, see `SASRec._fit_dp`; `epochs` is then the expected passes over the users.
    dp_chunk: users whose per-user gradients are computed together (memory, not privacy).
    dp_windows_per_user: the most training windows of one drawn user in one DP step (their
    mean loss is the user's loss, clipped as one). dp_freeze: parameter-name prefixes (e.g.
    "item_encoder", "blocks") kept at their starting values under DP: fewer noised weights,
    useful with `init_from` (public weights). dp_ema: the model keeps the exponential moving
    average of the weights over the DP steps with this decay (0 = the last weights): averaging
    the iterates averages their noise out, and costs no privacy (post-processing).
    init_from: a folder saved by a model of the same class and shape, trained on other
    (public) data, whose catalog-independent weights start this one (`warm_start`): with
    sasrec-text that is everything but the per-item tensors, so a model pre-trained on one
    catalog starts another (the public pre-training lever of DP training).
    """

    max_len: int = Field(50, ge=1, le=4096)
    hidden: int = Field(64, ge=1)
    n_blocks: int = Field(2, ge=1)
    n_heads: int = Field(1, ge=1)
    ffn_factor: int = Field(1, ge=1)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    windows: WindowMode = "all"
    dp_chunk: int = Field(64, ge=1)
    dp_windows_per_user: int = Field(1, ge=1)
    dp_freeze: tuple[str, ...] = ()
    dp_ema: float = Field(0.0, ge=0.0, lt=1.0)
    init_from: str | None = None

    @model_validator(mode="after")
    def _dp_consistent(self):  # noqa: ANN202
        if self.dp_epsilon is not None and self.fgm:
            raise ValueError("dp_epsilon does not combine with fgm=True (the adversarial step is not per-user)")
        return self

    @field_validator("n_heads")
    @classmethod
    def _heads_divide_hidden(cls, v: int, info: ValidationInfo) -> int:
        hidden = info.data.get("hidden")
        if hidden is not None and hidden % v:
            raise ValueError(f"hidden ({hidden}) must be divisible by n_heads ({v})")
        return v


class IDItemEncoder(nn.Module):
    """One learned vector per item: the classic ID embedding table.

    `forward()` returns the (n_items + 1, hidden) table whose row 0 is the padding token's
    all-zero vector; it is rebuilt on each call so the padding row gets no gradient."""

    def __init__(self, n_items: int, hidden: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_items, hidden))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self) -> torch.Tensor:
        return F.pad(self.weight, (0, 0, 1, 0))


class SASRecNetwork(nn.Module):
    """Item table -> (scaled item vectors + learned positions) -> causal pre-norm transformer.

    Sequences are right-padded token arrays (item index + 1, 0 = padding) and positions count
    from the first item, so with the causal mask a position's output depends only on the
    items up to it: neither later items nor any amount of padding change it.
    """

    def __init__(self, item_encoder: nn.Module, config: SASRecConfig) -> None:
        super().__init__()
        h = config.hidden
        self.item_encoder = item_encoder
        self.positions = nn.Parameter(torch.empty(config.max_len, h))
        nn.init.normal_(self.positions, std=0.02)
        self.dropout = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(h, config.n_heads, h * config.ffn_factor, config.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, config.n_blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(h)
        self.scale = math.sqrt(h)

    def table(self) -> torch.Tensor:
        """(n_items + 1, hidden) item vectors, row 0 the padding token's zeros."""
        return self.item_encoder()

    def hidden_states(self, tokens: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """(b, w, hidden) outputs of right-padded `tokens` (b, w); position t sees items 0..t."""
        w = tokens.shape[1]
        if w > self.positions.shape[0]:
            raise ValueError(f"sequence of {w} items is longer than max_len {self.positions.shape[0]}")
        x = self.dropout(table[tokens] * self.scale + self.positions[:w])
        mask = nn.Transformer.generate_square_subsequent_mask(w, device=tokens.device, dtype=x.dtype)
        return self.norm(self.blocks(x, mask=mask, is_causal=True))

    def user_states(self, tokens: torch.Tensor, lengths: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """(b, hidden): each sequence's output at its last item (lengths must be >= 1)."""
        h = self.hidden_states(tokens, table)
        return h[torch.arange(len(tokens)), lengths - 1]


class SASRec(TorchRecommender):
    """SASRec+ over item IDs ("sasrec"): next-item prediction with full cross-entropy.

    Training: each user's history in (timestamp, item) order, minus their last event, which
    is held out for early stopping on full-ranking NDCG@10 (seen items masked); windows of at
    most max_len + 1 items; at every position the loss is the softmax cross-entropy of the
    next item over the whole catalog. Scoring: the user's full training history truncated to
    the last max_len items; users without history get log-popularity scores.
    """

    name = "sasrec"
    Config = SASRecConfig
    config: SASRecConfig
    history_based = True  # as a channel: the user's latest max_len items as of the request

    histories: Histories
    item_counts: np.ndarray  # training events per item

    # --- network -----------------------------------------------------------------------------
    def _item_encoder(self, dataset: Dataset | None, weights: dict[str, torch.Tensor] | None) -> nn.Module:
        return IDItemEncoder(self.n_items, self.config.hidden)

    def _build_network(self, dataset: Dataset | None, weights: dict[str, torch.Tensor] | None) -> nn.Module:
        net = SASRecNetwork(self._item_encoder(dataset, weights), self.config)
        if weights is None and self.config.init_from:
            self.warm_started = warm_start(net, self.config.init_from)
        return net

    # --- fitting -----------------------------------------------------------------------------
    def _fit(self, matrix: sp.csr_matrix, train: Interactions, dataset: Dataset) -> None:
        cfg = self.config
        self.histories = Histories.from_interactions(train, self.n_users)
        self.dp_report = None
        if cfg.dp_epsilon is not None:
            self._fit_dp(dataset)
            return
        self.item_counts = np.bincount(train.item, minlength=self.n_items).astype(np.int64)
        fit_hist, val_users, val_targets = self.histories.holdout_last()
        spans = fit_hist.windows(cfg.max_len, cfg.windows)
        if not len(spans):
            raise ValueError(f"{self.name}: no user has 3 or more training events; nothing to learn "
                             "the next item from")
        with torch_threads(cfg.threads):
            seed_everything(cfg.seed)
            self.network = net = self._build_network(dataset, None)

            def batches(rng: np.random.Generator):
                # uniformly random batches: grouping windows by length pads less, but gives the
                # tokens of short-window batches more weight (lower validation NDCG@10 on ml-100k)
                order = rng.permutation(len(spans))
                for s in range(0, len(order), cfg.batch_size):
                    inputs, targets = fit_hist.training_batch(spans[order[s:s + cfg.batch_size]])
                    yield torch.from_numpy(inputs), torch.from_numpy(targets)

            def step(batch: tuple[torch.Tensor, torch.Tensor]) -> float:
                inputs, targets = batch
                return fgm_backward(net.table, lambda table: self._loss(table, inputs, targets),
                                    cfg.fgm_epsilon if cfg.fgm else None)

            def validate() -> float:
                return self._valid_ndcg(fit_hist, val_users, val_targets)

            self.train_history = fit_loop(net, cfg, batches=batches, step=step,
                                          validate=validate if len(val_users) else None,
                                          progress=self.show_progress, description=f"{self.name} epochs")
            self.train_history.valid_users = int(len(val_users))

    def _fit_dp(self, dataset: Dataset) -> None:
        """Per-user DP-SGD of every trainable weight (`lmrec.privacy.dp.DPSGD`).

        Privacy unit: a user (all of their events). Each step draws every user with
        probability q = dp_users_per_step / n_users (Poisson); a drawn user contributes one of
        their training windows (drawn at random among `windows`), whose loss is the mean
        full-catalog cross-entropy of its next items. That user's gradient is clipped to
        dp_max_grad_norm, the sum gets Gaussian noise calibrated by the accountant for
        round(epochs / q) steps, AdamW applies it (post-processing). Nothing else is learned
        from the events: no validation users, no early stopping (model selection on private
        data would spend budget the accountant does not count), and no item counts (every item
        counts as warm; users without history get uniform scores). The users' own histories
        kept for scoring are their own data and are not released to anyone else.
        """
        from lmrec.privacy.dp import DPSGD, pick_rows

        cfg = self.config
        hist = self.histories
        self.item_counts = np.ones(self.n_items, np.int64)  # counts are private: a constant
        spans = hist.windows(cfg.max_len, cfg.windows)
        if not len(spans):
            raise ValueError(f"{self.name}: no user has 2 or more training events; nothing to learn")
        owner = np.searchsorted(hist.indptr, spans[:, 0], side="right") - 1
        order = np.argsort(owner, kind="stable")
        spans, owner = spans[order], owner[order]
        ptr = np.searchsorted(owner, np.arange(self.n_users + 1))
        has = np.diff(ptr) > 0
        with torch_threads(cfg.threads):
            seed_everything(cfg.seed)
            self.network = net = self._build_network(dataset, None)
            frozen = [n for n, p in net.named_parameters() if n.startswith(tuple(cfg.dp_freeze))]
            if cfg.dp_freeze and (not frozen or len(frozen) == len(list(net.parameters()))):
                raise ValueError(f"dp_freeze {list(cfg.dp_freeze)} freezes {'nothing' if not frozen else 'everything'}"
                                 f"; parameters: {[n for n, _ in net.named_parameters()]}")
            for n, p in net.named_parameters():
                p.requires_grad_(n not in frozen)
            module = _SeqLoss(net)

            def user_loss(call, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
                h, table = call(inputs)  # (k, w, hidden): the user's k windows
                logits = h @ table[1:].T
                keep = (targets != IGNORE).to(logits.dtype)
                nll = torch.logsumexp(logits, -1) - logits.gather(2, targets.clamp(min=0)[..., None])[..., 0]
                return (nll * keep).sum() / keep.sum().clamp(min=1.0)

            dp = DPSGD.from_config(module, user_loss, cfg, n_users=self.n_users, epochs=cfg.epochs, seed=cfg.seed,
                                   chunk_size=cfg.dp_chunk)
            opt = build_optimizer(net, cfg.lr, cfg.weight_decay)
            sched = warmup_schedule(opt, cfg.warmup_steps)
            rng = np.random.default_rng(cfg.seed + 1)
            history = TrainHistory()
            ema = ({n: p.detach().clone() for n, p in net.named_parameters() if p.requires_grad}
                   if cfg.dp_ema > 0 else None)
            per_epoch = max(1, int(round(1 / dp.sample_rate)))
            t0 = time.perf_counter()
            net.train()
            for t in range(dp.steps_planned):
                users = dp.sample_users()
                users = users[has[users]]  # the others have no window: a zero gradient
                k = cfg.dp_windows_per_user
                picked, real = pick_rows(ptr, users, k, rng)  # up to k of each drawn user's windows
                chosen = np.where(real[..., None] > 0, spans[picked], np.array([0, 1]))  # (0, 1): no target
                inputs, targets = hist.training_batch(chosen.reshape(-1, 2))
                shape = (len(users), k, inputs.shape[1])
                opt.zero_grad(set_to_none=True)
                stats = dp.step((torch.from_numpy(inputs.reshape(shape)), torch.from_numpy(targets.reshape(shape))))
                opt.step()
                sched.step()
                if ema is not None:
                    with torch.no_grad():
                        for name, p in net.named_parameters():
                            if name in ema:
                                ema[name].mul_(cfg.dp_ema).add_(p.detach(), alpha=1 - cfg.dp_ema)
                if (t + 1) % per_epoch == 0 or t + 1 == dp.steps_planned:
                    history.epochs.append({"epoch": len(history.epochs) + 1, "step": t + 1, **stats})
            if ema is not None:
                with torch.no_grad():
                    for name, p in net.named_parameters():
                        if name in ema:
                            p.copy_(ema[name])
            net.eval()
            history.best_epoch = len(history.epochs)
            history.train_s = time.perf_counter() - t0
            self.train_history = history
            self.dp_report = dp.report().to_dict()

    def training_summary(self) -> dict:
        out = super().training_summary()
        if getattr(self, "dp_report", None):
            out["dp"] = self.dp_report
        return out

    def save(self, path):  # noqa: ANN001, ANN201
        """`TorchRecommender.save`, plus privacy.json with the (epsilon, delta) of a DP fit."""
        from lmrec.privacy.dp import save_report

        path = super().save(path)
        save_report(path, getattr(self, "dp_report", None))
        return path

    @classmethod
    def load(cls, path):  # noqa: ANN001, ANN206
        from lmrec.privacy.dp import load_report

        model = super().load(path)
        model.dp_report = load_report(path)
        return model

    def _loss(self, table: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of every real position's next item over the whole catalog."""
        h = self.network.hidden_states(inputs, table)
        keep = targets != IGNORE
        return F.cross_entropy(h[keep] @ table[1:].T, targets[keep])

    def _valid_ndcg(self, hist: Histories, users: np.ndarray, targets: np.ndarray) -> float:
        """Mean NDCG@10 of each held-out item, ranked against every item the user has not seen."""
        table = self.network.table()
        order = np.argsort(hist.lengths[users], kind="stable")  # similar lengths share a batch: less padding
        total = 0.0
        for s in range(0, len(users), _SCORE_BATCH):
            rows = order[s:s + _SCORE_BATCH]
            scores = self._network_scores(hist, users[rows], table)
            _mask_seen(scores, hist, users[rows])
            total += float(ndcg_at_k(scores, torch.from_numpy(targets[rows]), 10).sum())
        return total / len(users)

    # --- scoring -----------------------------------------------------------------------------
    def _network_scores(self, hist: Histories, users: np.ndarray, table: torch.Tensor) -> torch.Tensor:
        """(len(users), n_items) scores from each user's last max_len items (users with history)."""
        tokens, lengths = hist.recent(users, self.config.max_len)
        states = self.network.user_states(torch.from_numpy(tokens), torch.from_numpy(lengths), table)
        return states @ table[1:].T

    def _score(self, users: np.ndarray) -> np.ndarray:
        out = np.empty((len(users), self.n_items), dtype=np.float32)
        out[:] = np.log1p(self.item_counts)[None, :]  # users without history
        lengths = self.histories.lengths[users]
        known = np.flatnonzero(lengths > 0)
        known = known[np.argsort(lengths[known], kind="stable")]  # similar lengths share a batch
        if not len(known):
            return out
        self.network.eval()
        with torch_threads(self.config.threads), torch.no_grad():
            table = self.network.table()
            for s in range(0, len(known), _SCORE_BATCH):
                rows = known[s:s + _SCORE_BATCH]
                out[rows] = self._network_scores(self.histories, users[rows], table).numpy()
        return out

    # --- as a channel: the latest sequence at request time, no refit ----------------------
    def _inference_table(self) -> tuple[torch.Tensor, np.ndarray]:
        """The (n_items + 1, hidden) item table in eval mode, computed once and kept until the
        items change (`add_items`), as a tensor and as a numpy view of its item rows."""
        cached = getattr(self, "_table", None)
        if cached is None:
            self.network.eval()
            with torch_threads(self.config.threads), torch.no_grad():
                t = self.network.table().detach().contiguous()
            cached = self._table = (t, t[1:].numpy())
        return cached

    def runs_for(self, batch: HistoryBatch) -> np.ndarray:
        """Rows with at least one item the model knows (an empty history has no sequence)."""
        self._check_fitted()
        n = self._inference_table()[1].shape[0]
        return np.array([bool(((i >= 0) & (i < n)).any()) for i in batch.items], bool)

    def user_scores(self, batch: HistoryBatch) -> UserScores:
        """The transformer's state after each row's latest `max_len` known items (the whole
        history of an event stream: no refit needed for a new event) against the item table."""
        self._check_fitted()
        table, items = self._inference_table()
        n = len(items)
        seqs = [i[(i >= 0) & (i < n)][-self.config.max_len:] for i in batch.items]
        lengths = np.array([len(q) for q in seqs], np.int64)
        width = max(int(lengths.max()) if len(lengths) else 1, 1)
        tokens = np.zeros((len(seqs), width), np.int64)
        for r, q in enumerate(seqs):
            tokens[r, :len(q)] = q + 1
        states = np.zeros((len(seqs), items.shape[1]), np.float32)
        with torch_threads(self.config.threads), torch.no_grad():
            # one sequence at a time: a padded batch gives the same states up to float rounding,
            # and that rounding would make a user's list depend on who else is in the batch
            # (offline evaluation batches users, a service request is one user)
            for r in np.flatnonzero(lengths > 0).tolist():
                n = int(lengths[r])
                states[r] = self.network.user_states(torch.from_numpy(tokens[r:r + 1, :n]),
                                                     torch.from_numpy(lengths[r:r + 1]), table).numpy()[0]
        if getattr(self, "_vectors", None) is None:
            self._vectors = VectorCache()
        stats, ann = self._vectors.get(items, None, self.n_items, self.retrieval)
        return VectorScores(states, items, stats, None, ann, self.n_items)

    def prepare_retrieval(self, index: str = "exact", **params: object) -> None:
        super().prepare_retrieval(index, **params)
        if self.network is not None:
            self._table, self._vectors = None, VectorCache()
            self._vectors.get(self._inference_table()[1], None, self.n_items, self.retrieval)

    def _forget_table(self) -> None:
        self._table = None

    # --- persistence -------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return {"hist_indptr": self.histories.indptr, "hist_items": self.histories.items,
                "item_counts": self.item_counts}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.histories = Histories(state["hist_indptr"], state["hist_items"])
        self.item_counts = state["item_counts"]


def warm_start(net: nn.Module, path: str) -> list[str]:
    """Copy into `net` the weights saved in `path`/model.safetensors that have the same name
    and shape, except per-item tensors (item tables, text buffers, warm masks), which belong to
    the catalog the weights were trained on. Returns the names copied; none is an error."""
    from pathlib import Path

    from safetensors.torch import load_file

    from lmrec.models.torch_base import WEIGHTS

    f = Path(path) / WEIGHTS
    if not f.is_file():
        raise FileNotFoundError(f"init_from: no {WEIGHTS} in {path}")
    saved = load_file(str(f))
    per_item = ("item_encoder.text", "item_encoder.warm", "item_encoder.ids", "item_encoder.weight")
    state = net.state_dict()
    copied = [k for k, v in saved.items() if k in state and k not in per_item and state[k].shape == v.shape]
    if not copied:
        raise ValueError(f"init_from {path}: no weight fits this network (another model or shape?)")
    net.load_state_dict({**state, **{k: saved[k] for k in copied}})
    return copied


class _SeqLoss(nn.Module):
    """The network as one module call for DP-SGD's per-user gradients: tokens -> (hidden
    states, item table)."""

    def __init__(self, net: SASRecNetwork) -> None:
        super().__init__()
        self.net = net

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        table = self.net.table()
        return self.net.hidden_states(tokens, table), table


def _mask_seen(scores: torch.Tensor, hist: Histories, users: np.ndarray) -> None:
    """Set every item in each user's history to -inf (in place)."""
    lengths = hist.lengths[users]
    rows = np.repeat(np.arange(len(users)), lengths)
    cols = np.concatenate([hist.of(u) for u in users]) if len(users) else np.zeros(0, dtype=np.int64)
    scores[torch.from_numpy(rows), torch.from_numpy(cols)] = -torch.inf
