"""Text-aware SASRec ("sasrec-text"): the item table is a learned projection of each item's
FROZEN language-model embedding, optionally fused with an ID embedding.

Every item with text gets a vector, so items never seen in training (cold items, or items
added after fitting with `add_item`) are scored from their text alone. The ID part gives
warm items room to move away from what their text says; it is masked to zero for items
without training events (their ID vectors never learn anything) and, with `id_dropout`,
dropped for a random share of items at each training step, so the text-only vectors of cold
items live in the same space as the fused vectors of warm ones.

Item text and its embedding come from `lmrec.recall.item2item.dataset_item_vectors`: the
data set's text template, the registry's encoder and the on-disk embedding cache.

Example:
    >>> from lmrec.testing.toy import toy_dataset
    >>> ds = toy_dataset()
    >>> model = SASRecText(encoder="fake", hidden=16, n_blocks=1, epochs=2, max_len=10).fit(ds.interactions, ds)
    >>> [len(c) for c in model.recommend([0, 1], k=5)]
    [5, 5]
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from lmrec.data.dataset import Dataset
from lmrec.models.sasrec import SASRec, SASRecConfig
from lmrec.models.training import torch_threads
from lmrec.recall.item2item import dataset_item_vectors, resolve_encoder
from lmrec.text.base import normalize
from lmrec.text.registry import check_encoder_name

__all__ = ["SASRecTextConfig", "TextItemEncoder", "SASRecText"]

Projection = Literal["linear", "mlp"]
Fusion = Literal["none", "add", "gate"]


class SASRecTextConfig(SASRecConfig):
    """Parameters of `SASRecText`: those of `SASRecConfig` plus

    encoder: a `lmrec.text.registry` name ("minilm", "e5-small", "fake", ...). projection:
    "linear" (one Linear layer) or "mlp" (Linear, GELU, Linear) from the text dimension to
    hidden. id_fusion: "none" (text only), "add" (text projection + ID vector) or "gate"
    (text projection + sigmoid(W [text; id]) * ID vector, per dimension). id_dropout: the
    probability that an item's ID vector is dropped at a training step.
    """

    encoder: str = "minilm"
    projection: Projection = "linear"
    id_fusion: Fusion = "gate"
    id_dropout: float = Field(0.1, ge=0.0, le=1.0)

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, v: str) -> str:
        return check_encoder_name(v)


class TextItemEncoder(nn.Module):
    """Item table from frozen text embeddings: projection, plus an optional gated ID part.

    `text` (n_items, text_dim) and `warm` (n_items,) 1.0 for items with training events are
    buffers (saved with the weights, never trained). `forward()` returns the
    (n_items + 1, hidden) table with the padding row 0 at zero.
    """

    def __init__(self, text: torch.Tensor, warm: torch.Tensor, hidden: int, projection: Projection = "linear",
                 id_fusion: Fusion = "gate", id_dropout: float = 0.1) -> None:
        super().__init__()
        if text.ndim != 2 or warm.shape != (text.shape[0],):
            raise ValueError(f"text must be (n_items, dim) and warm (n_items,), got {tuple(text.shape)} "
                             f"and {tuple(warm.shape)}")
        self.register_buffer("text", text.float())
        self.register_buffer("warm", warm.float())
        dim = text.shape[1]
        self.project = nn.Linear(dim, hidden) if projection == "linear" else nn.Sequential(
            nn.Linear(dim, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden))
        self.id_fusion, self.id_dropout = id_fusion, id_dropout
        if id_fusion != "none":
            self.ids = nn.Parameter(torch.empty(text.shape[0], hidden))
            nn.init.normal_(self.ids, std=0.02)
        if id_fusion == "gate":
            self.gate = nn.Linear(2 * hidden, hidden)

    @property
    def n_items(self) -> int:
        return self.text.shape[0]

    def forward(self) -> torch.Tensor:
        vectors = self.project(self.text)
        if self.id_fusion != "none":
            keep = self.warm
            if self.training and self.id_dropout > 0:
                keep = keep * torch.bernoulli(torch.full_like(keep, 1.0 - self.id_dropout))
            ids = self.ids * keep[:, None]
            if self.id_fusion == "gate":
                ids = torch.sigmoid(self.gate(torch.cat([vectors, ids], dim=1))) * ids
            vectors = vectors + ids
        return F.pad(vectors, (0, 0, 1, 0))

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """The table rows of item indices `index` (0-based, no padding row), as `forward`
        computes them in eval mode: an item's vector depends on its own text and ID only."""
        vectors = self.project(self.text[index])
        if self.id_fusion != "none":
            ids = self.ids[index] * self.warm[index][:, None]
            if self.id_fusion == "gate":
                ids = torch.sigmoid(self.gate(torch.cat([vectors, ids], dim=1))) * ids
            vectors = vectors + ids
        return vectors

    def append(self, text: torch.Tensor) -> None:
        """Add cold items (no ID part) with these text embeddings at the end of the table."""
        self.text = torch.cat([self.text, text.float()])
        self.warm = torch.cat([self.warm, torch.zeros(len(text), device=self.warm.device)])
        if self.id_fusion != "none":
            grown = torch.cat([self.ids.data, torch.zeros(len(text), self.ids.shape[1])])
            self.ids = nn.Parameter(grown)


class SASRecText(SASRec):
    """SASRec+ over projected frozen LM item embeddings ("sasrec-text"); see the module doc."""

    name = "sasrec-text"
    Config = SASRecTextConfig
    config: SASRecTextConfig

    def _item_encoder(self, dataset: Dataset | None, weights: dict[str, torch.Tensor] | None) -> nn.Module:
        cfg = self.config
        if weights is not None:
            text, warm = weights["item_encoder.text"], weights["item_encoder.warm"]
        else:
            if dataset is None:
                raise ValueError("sasrec-text needs the data set (for item texts) or saved weights")
            vectors = dataset_item_vectors(dataset, cfg.encoder, progress=self.show_progress)
            text = torch.from_numpy(np.array(vectors, dtype=np.float32))
            warm = torch.from_numpy((self.item_counts > 0).astype(np.float32))
        return TextItemEncoder(text, warm, cfg.hidden, cfg.projection, cfg.id_fusion, cfg.id_dropout)

    def add_item(self, item_index: int, text: str) -> None:
        """Make item `item_index` scorable from `text` without refitting: an index inside the
        catalog gets this text (keeping any learned ID part), the next free index appends a
        cold item. Users' histories and seen items are unchanged."""
        if self.network is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
        if not 0 <= item_index <= self.n_items:
            raise IndexError(f"item_index {item_index} must be in 0..{self.n_items} (an existing item or the next one)")
        vec = torch.from_numpy(normalize(resolve_encoder(self.config.encoder).encode_items([text])))
        encoder: TextItemEncoder = self.network.item_encoder
        if vec.shape[1] != encoder.text.shape[1]:
            raise ValueError(f"encoder {self.config.encoder!r} gives {vec.shape[1]}-d vectors, "
                             f"the model holds {encoder.text.shape[1]}-d ones")
        self._table = None
        self._vectors = None
        if item_index < self.n_items:
            encoder.text[item_index] = vec[0]
            return
        encoder.append(vec)
        self.n_items += 1
        self.item_counts = np.r_[self.item_counts, 0]
        m = self.matrix
        self.matrix = sp.csr_matrix((m.data, m.indices, m.indptr), shape=(m.shape[0], self.n_items))

    def add_items(self, items: np.ndarray, dataset: Dataset) -> None:
        """Embed new (or changed) items from their text in `dataset` and project them into the
        item table: recommendable at once, and usable as history in the next request."""
        if self.network is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
        encoder: TextItemEncoder = self.network.item_encoder
        n_old = encoder.n_items
        rows = np.unique(np.r_[np.asarray(items, np.int64), np.arange(n_old, dataset.n_items)]).astype(np.int64)
        if not len(rows):
            return
        from lmrec.recall.item2item import _texts_at

        vecs = torch.from_numpy(normalize(resolve_encoder(self.config.encoder).encode_items(_texts_at(dataset, rows))))
        inside = rows < n_old
        if inside.any():
            encoder.text[torch.from_numpy(rows[inside])] = vecs[torch.from_numpy(inside)]
        if (~inside).any():
            new = rows[~inside]
            if int(new.min()) != n_old or len(new) != int(new.max()) + 1 - n_old:
                raise ValueError("sasrec-text: new items must take the next indices")
            encoder.append(vecs[torch.from_numpy(~inside)])
            self.item_counts = np.r_[self.item_counts, np.zeros(len(new), np.int64)]
        self.n_items = max(self.n_items, dataset.n_items)
        m = self.matrix
        if m.shape[1] < self.n_items:
            self.matrix = sp.csr_matrix((m.data, m.indices, m.indptr), shape=(m.shape[0], self.n_items))
        cached = getattr(self, "_table", None)
        if cached is None:
            return
        # only the changed rows are projected (an item's vector depends on its own text and ID)
        from lmrec.types import grow_rows

        _, old_items = cached
        old = old_items[rows[inside]].copy()
        buf = grow_rows(np.ascontiguousarray(cached[0].numpy()), self.n_items + 1)
        self.network.eval()
        with torch_threads(self.config.threads), torch.no_grad():
            buf[rows + 1] = encoder.rows(torch.from_numpy(rows)).numpy()
        self._table = (torch.from_numpy(buf), buf[1:])
        if getattr(self, "_vectors", None) is not None:
            self._vectors.rows_changed(buf[1:], rows, old, n_old)
