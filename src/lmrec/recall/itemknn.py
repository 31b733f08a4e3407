"""ItemKNN: item-item cosine similarity on the binary user-item matrix, top-k neighbours
per item, a user's score for an item is the summed similarity to the items they saw."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from lmrec.data.dataset import Dataset, Interactions
from lmrec.component import ComponentConfig
from lmrec.recall.base import Recommender, _csr_from_state, _csr_state
from lmrec.recall.scores import SparseRowScores, UserScores
from lmrec.types import HistoryBatch

# Dense float32 elements per similarity block (64 MiB): bounds memory on large catalogs.
_BLOCK_ELEMENTS = 16 * 1024 * 1024


class ItemKNNConfig(ComponentConfig):
    """Parameters of `ItemKNN`.

    k: neighbours kept per item. shrink: added to the norm product in the cosine
    denominator, pulling similarities of rarely co-occurring items toward zero.
    normalize: scale each user's row to unit length before computing similarities, so
    heavy users weigh as much as light ones.
    """

    k: int = Field(100, ge=1)
    shrink: float = Field(0.0, ge=0.0)
    normalize: bool = False


class ItemKNN(Recommender):
    """Item-based nearest neighbours with (shrunk) cosine similarity.

    sim(i, j) = x_i . x_j / (|x_i| |x_j| + shrink) over the item columns of the training
    matrix; each item keeps its `k` most similar items, and the score of item j for user u
    is the sum of sim(i, j) over the items i that u interacted with.

    Example:
        >>> from lmrec.testing.toy import toy_dataset
        >>> ds = toy_dataset()
        >>> model = ItemKNN(k=20, shrink=1.0).fit(ds.interactions, ds)
        >>> model.score([0, 1]).shape
        (2, 40)
        >>> int(model.similarity.getnnz(axis=0).max()) <= 20
        True
    """

    name = "itemknn"
    Config = ItemKNNConfig
    config: ItemKNNConfig
    history_based = True  # scores = x_u S of the user's current items: events fold in at once

    similarity: sp.csr_matrix
    """(n_items, n_items) float32; column j holds the k neighbours of item j."""

    def _fit(self, matrix: sp.csr_matrix, train: Interactions, dataset: Dataset) -> None:
        self.similarity = item_similarity(matrix, k=self.config.k, shrink=self.config.shrink,
                                          normalize=self.config.normalize)

    def _score(self, users: np.ndarray) -> np.ndarray:
        return (self.matrix[users] @ self.similarity).toarray()

    def user_scores(self, batch: HistoryBatch) -> UserScores:
        """x S for each row's current distinct items, kept sparse: only the neighbours of the
        user's items are touched."""
        self._check_fitted()
        m = sp.csr_matrix(batch.to_csr(self.similarity.shape[0]) @ self.similarity)
        m.sort_indices()
        cols = [m.indices[m.indptr[r]:m.indptr[r + 1]] for r in range(m.shape[0])]
        vals = [m.data[m.indptr[r]:m.indptr[r + 1]] for r in range(m.shape[0])]
        return SparseRowScores(cols, vals, self.n_items)

    def _state(self) -> dict[str, np.ndarray]:
        return _csr_state("similarity", self.similarity)

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.similarity = _csr_from_state("similarity", state, (self.n_items, self.n_items))


def item_similarity(matrix: sp.spmatrix, *, k: int, shrink: float = 0.0,
                    normalize: bool = False) -> sp.csr_matrix:
    """Top-k (shrunk) cosine similarity between the columns of a user x item matrix.

    Returns an (n_items, n_items) float32 CSR matrix whose column j holds at most `k`
    positive similarities of item j to other items (never to itself).
    """
    x = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    n_items = x.shape[1]
    if normalize:
        row_norm = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        inv = np.divide(1.0, row_norm, out=np.zeros_like(row_norm), where=row_norm > 0)
        x = sp.csr_matrix(sp.diags(inv.astype(np.float32)) @ x)
    col_norm = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel()).astype(np.float32)
    xt = x.T.tocsr()  # item x user: sparse @ dense with it is the fast kernel here
    xc = x.tocsc()  # cheap column slices
    block = max(1, _BLOCK_ELEMENTS // max(n_items, 1))
    rows, cols, vals = [], [], []
    for start in range(0, n_items, block):
        stop = min(start + block, n_items)
        width = stop - start
        dots = xt @ xc[:, start:stop].toarray()  # (n_items, width) co-occurrence
        denom = col_norm[:, None] * col_norm[None, start:stop] + np.float32(shrink)
        sim = np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)
        sim[np.arange(start, stop), np.arange(width)] = 0.0  # an item is not its own neighbour
        if k < n_items:
            top = np.argpartition(-sim, k - 1, axis=0)[:k]
        else:
            top = np.broadcast_to(np.arange(n_items)[:, None], sim.shape)
        top_vals = np.take_along_axis(sim, top, axis=0)
        keep = top_vals > 0  # zero similarity carries no signal; storing it wastes memory
        rows.append(top[keep])
        cols.append(np.broadcast_to(np.arange(start, stop)[None, :], top.shape)[keep])
        vals.append(top_vals[keep])
    out = sp.csr_matrix(
        (np.concatenate(vals) if vals else np.zeros(0, np.float32),
         (np.concatenate(rows) if rows else np.zeros(0, np.int64),
          np.concatenate(cols) if cols else np.zeros(0, np.int64))),
        shape=(n_items, n_items), dtype=np.float32,
    )
    out.sort_indices()
    return out
