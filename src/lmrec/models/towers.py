"""The torch parts of the two-tower recommender: towers, a LoRA text tower and the losses.

Kept apart from `two_tower.py` (data handling, the `Recommender` API, persistence) so each
piece can be tested alone. Both towers end in L2-normalised vectors, so a score is a cosine.

- `ItemTower`: item LM vector (frozen, or from `LoraTextEncoder`) -> MLP, plus an optional
  learned item-id residual that is zero for items without training events (cold items are
  then scored from their text alone).
- `UserTower`: pools the frozen LM vectors of a user's recent history (masked mean, or
  attention pooling: per head, softmax over the events of a learned linear score of the
  item vector plus a learned bias per position from the end) -> MLP, one
  output head per task. It has no user-id parameters unless `n_users` is given, so any
  history, including a new user's, can be embedded.
- `sampled_softmax_loss`: in-batch sampled softmax with the logQ correction of Yi et al.,
  "Sampling-bias-corrected neural modeling for large corpus item recommendations" (RecSys
  2019); every item enters the denominator once (duplicates in a batch are merged).
- `pointwise_bce_loss`: sigmoid(cosine / temperature + bias) against sampled negatives.

torch is required (the `lm` extra); this module imports it at the top.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

Pooling = Literal["mean", "attention"]


def mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    """Linear -> GELU -> dropout -> linear; `hidden` = 0 gives one linear map."""
    if hidden <= 0:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, out_dim))
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))


class ItemTower(nn.Module):
    """Item LM vectors (n, in_dim) -> normalised item embeddings (n, dim).

    With `n_id_items` > 0 a zero-initialised id embedding is added before normalising for
    items whose index is below that number and that `has_id` marks (items seen in training).
    """

    def __init__(self, in_dim: int, dim: int, hidden: int, dropout: float, n_id_items: int = 0) -> None:
        super().__init__()
        self.proj = mlp(in_dim, hidden, dim, dropout)
        self.ids: nn.Embedding | None = None
        if n_id_items > 0:
            self.ids = nn.Embedding(n_id_items, dim)
            nn.init.zeros_(self.ids.weight)

    def forward(self, lm_vectors: torch.Tensor, items: torch.Tensor | None = None,
                has_id: torch.Tensor | None = None) -> torch.Tensor:
        out = self.proj(lm_vectors)
        if self.ids is not None and items is not None:
            known = (items >= 0) & (items < self.ids.num_embeddings)
            if has_id is not None:
                known &= has_id[items.clamp(min=0, max=len(has_id) - 1)]
            idx = items.clamp(min=0, max=self.ids.num_embeddings - 1)
            out = out + self.ids(idx) * known[:, None].to(out.dtype)
        return F.normalize(out, dim=-1)


class UserTower(nn.Module):
    """A history of item indices (b, L) into a table of frozen item LM vectors, with a mask
    (b, L) -> one normalised user vector per task head: (n_heads, b, dim).

    Histories are oldest first and padded on the right; attention pooling embeds each event's
    position counted from the end (0 = most recent), so it can learn recency. With `n_users`
    a zero-initialised user-id embedding is added to each head's output (`users` = -1, or an
    index past the table, adds nothing: new users).
    """

    def __init__(self, in_dim: int, dim: int, hidden: int, dropout: float, *, pooling: Pooling = "mean",
                 max_history: int = 50, attention_heads: int = 2, n_heads: int = 1, n_users: int = 0) -> None:
        super().__init__()
        self.pooling = pooling
        pooled = in_dim
        if pooling == "attention":
            # linear attention scores: a learned direction per head over the item vector plus a
            # learned bias per position from the end; cheap (no (b, L, in_dim) tensor), and
            # zero-initialised so training starts from the mean
            self.score = nn.Linear(in_dim, attention_heads, bias=False)
            nn.init.zeros_(self.score.weight)
            self.position = nn.Embedding(max_history, attention_heads)
            nn.init.zeros_(self.position.weight)
            pooled = in_dim * attention_heads
        elif pooling != "mean":
            raise ValueError(f"pooling must be 'mean' or 'attention', got {pooling!r}")
        width = hidden if hidden > 0 else pooled
        self.trunk: nn.Module = (nn.Sequential(nn.Linear(pooled, hidden), nn.GELU(), nn.Dropout(dropout))
                                 if hidden > 0 else nn.Dropout(dropout))
        self.heads = nn.ModuleList(nn.Linear(width, dim) for _ in range(n_heads))
        self.users: nn.Embedding | None = None
        if n_users > 0:
            self.users = nn.Embedding(n_users, dim)
            nn.init.zeros_(self.users.weight)

    def pool(self, table: torch.Tensor, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pooled history (b, pooled) of item indices `history` (b, L) into the vector `table`
        (n, in_dim), `mask` (b, L) bool. Every row needs at least one valid slot."""
        idx = history.clamp(min=0)
        m = mask.to(table.dtype)
        if self.pooling == "mean":
            # embedding_bag sums the rows without materialising the (b, L, in_dim) tensor
            weights = (m / m.sum(1, keepdim=True).clamp(min=1.0)).flatten()
            return F.embedding_bag(idx.flatten(), table, torch.arange(0, idx.numel(), idx.shape[1]),
                                   mode="sum", per_sample_weights=weights)
        # position counted from the end of each history: 0 = the most recent event
        back = mask.sum(1, keepdim=True) - 1 - torch.arange(idx.shape[1], device=table.device)[None, :]
        logits = self.score(table)[idx] + self.position(back.clamp(min=0, max=self.position.num_embeddings - 1))
        logits = logits.masked_fill(~mask[..., None], float("-inf"))  # (b, L, heads)
        weights = torch.softmax(logits, dim=1)
        offsets = torch.arange(0, idx.numel(), idx.shape[1])
        return torch.cat([F.embedding_bag(idx.flatten(), table, offsets, mode="sum",
                                          per_sample_weights=weights[..., h].flatten())
                          for h in range(weights.shape[-1])], dim=1)

    def forward(self, table: torch.Tensor, history: torch.Tensor, mask: torch.Tensor,
                users: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.trunk(self.pool(table, history, mask))
        outs = []
        for head in self.heads:
            out = head(hidden)
            if self.users is not None and users is not None:
                known = (users >= 0) & (users < self.users.num_embeddings)
                out = out + self.users(users.clamp(0, self.users.num_embeddings - 1)) * known[:, None].to(out.dtype)
            outs.append(F.normalize(out, dim=-1))
        return torch.stack(outs)


def sampled_softmax_loss(user: torch.Tensor, item: torch.Tensor, item_ids: torch.Tensor, *,
                         temperature: float, log_q: torch.Tensor | None = None,
                         weight: torch.Tensor | None = None) -> torch.Tensor:
    """In-batch sampled softmax: row i's positive is item_ids[i], the negatives are the other
    distinct items of the batch.

    `user` (b, d) and `item` (b, d) are normalised; row i of `item` embeds `item_ids[i]`.
    Logits are cosine / temperature, minus log q(item) when `log_q` (per row, the log of the
    item's probability of being in a batch) is given: the logQ correction, which removes the
    popularity bias of in-batch negatives. An item that occurs several times in the batch
    enters the denominator once (its first row), so a duplicate of the positive is never a
    negative. `weight` (b,) weights rows (0 drops a row); returns the weighted mean.
    """
    ids = item_ids.long()
    same = ids[:, None] == ids[None, :]
    earlier = torch.tril(same, diagonal=-1)  # column j duplicates an earlier column
    first = ~earlier.any(dim=1)
    # the column of row i's positive: the first occurrence of its item
    pos_col = torch.argmax(same.to(torch.int8), dim=1)
    logits = user @ item.T / temperature
    if log_q is not None:
        logits = logits - log_q[None, :]
    logits = logits.masked_fill(~first[None, :], float("-inf"))
    losses = F.cross_entropy(logits, pos_col, reduction="none")
    if weight is None:
        return losses.mean()
    return (losses * weight).sum() / weight.sum().clamp(min=1e-12)


def pointwise_bce_loss(user: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, *, temperature: float,
                       bias: torch.Tensor | float = 0.0, neg_mask: torch.Tensor | None = None,
                       weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy of sigmoid(cosine / temperature + bias): label 1 for `pos` (b, d),
    0 for each of the negatives `neg` (b, n, d).

    Negatives where `neg_mask` (b, n) is false (a draw that hit the positive) are left out.
    Each row's loss is the mean over its positive and kept negatives; rows are averaged,
    weighted by `weight` (b,) when given (0 drops a row).
    """
    pos_logit = (user * pos).sum(-1) / temperature + bias
    neg_logit = torch.einsum("bd,bnd->bn", user, neg) / temperature + bias
    pos_loss = F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit), reduction="none")
    neg_loss = F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit), reduction="none")
    keep = torch.ones_like(neg_loss) if neg_mask is None else neg_mask.to(neg_loss.dtype)
    rows = (pos_loss + (neg_loss * keep).sum(1)) / (1.0 + keep.sum(1))
    if weight is None:
        return rows.mean()
    return (rows * weight).sum() / weight.sum().clamp(min=1e-12)


class LoraTextEncoder(nn.Module):
    """A sentence-transformers model whose top layers carry LoRA adapters (peft); everything
    else is frozen. `forward(texts)` returns normalised sentence embeddings with gradients
    flowing into the adapters only.

    `layers`: how many of the top transformer layers get adapters on their attention query
    and value projections (rank `r`, scaling `alpha / r`).
    """

    def __init__(self, model: str = "packaged:all-MiniLM-L6-v2", *, r: int = 8, alpha: float = 16.0,
                 layers: int = 2, dropout: float = 0.0, max_seq_length: int = 64,
                 target_modules: Sequence[str] = ("query", "value")) -> None:
        super().__init__()
        try:
            from peft import LoraConfig, inject_adapter_in_model
            from sentence_transformers import SentenceTransformer
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("the LoRA item tower needs peft and sentence-transformers: "
                              "pip install 'lmrec[lm,train]'") from e
        from lmrec.text.sentence import resolve_model_path

        self.st = SentenceTransformer(resolve_model_path(model), device="cpu")
        self.st.max_seq_length = max_seq_length
        hf = self.st[0].auto_model
        n_layers = int(hf.config.num_hidden_layers)
        if not 1 <= layers <= n_layers:
            raise ValueError(f"lora_layers must be in 1..{n_layers} for {model!r}, got {layers}")
        for p in self.st.parameters():
            p.requires_grad_(False)
        cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                         layers_to_transform=list(range(n_layers - layers, n_layers)), layers_pattern="layer")
        inject_adapter_in_model(cfg, hf)
        for name, p in self.st.named_parameters():
            p.requires_grad_("lora_" in name)
        self.dim = int(self.st.get_embedding_dimension() if hasattr(self.st, "get_embedding_dimension")
                       else self.st.get_sentence_embedding_dimension())

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        features = self.st.preprocess(list(texts))
        features = {k: v for k, v in features.items() if isinstance(v, torch.Tensor)}
        return F.normalize(self.st(features)["sentence_embedding"], dim=-1)

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The LoRA weights only (the base model comes from its package on load)."""
        return {k: v for k, v in self.state_dict().items() if "lora_" in k}

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 128, progress: bool = False) -> torch.Tensor:
        """Embeddings of many texts in eval mode, without gradients, in batches."""
        from lmrec.text.cache import batches

        was_training = self.training
        self.eval()
        out = torch.zeros(len(texts), self.dim)
        for s, e in batches(len(texts), batch_size, progress=progress, description="LoRA item encoding"):
            out[s:e] = self.forward(texts[s:e])
        self.train(was_training)
        return out
