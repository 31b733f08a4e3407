"""`TorchRecommender`: a `Recommender` whose learned state is a torch module.

Saved as a folder, like every model (DESIGN.md): `config.json` (name, parameters, catalog
size and the config hash), `model.safetensors` (the module's weights, with the same config
hash in its metadata, so weights cannot be loaded under another configuration), `state.npz`
(the seen-item matrix and any other arrays the model keeps, e.g. user histories) and
`training.json` (the training history, for inspection only). Loading checks both hashes.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from lmrec.data.dataset import Dataset
from lmrec.models.training import TrainHistory, require_torch
from lmrec.recall.base import Recommender
from lmrec.types import config_hash

if TYPE_CHECKING:
    import torch

WEIGHTS = "model.safetensors"
HISTORY = "training.json"


class TorchRecommender(Recommender):
    """Base of the trained recommenders: persistence of `self.network` and training history.

    Subclasses implement `_build_network(dataset, weights)`, which returns a new module for
    this model's configuration: from the data set at fit time, or from the saved weights
    (`weights`, a name -> tensor dict) when loading, for modules whose shape depends on data
    (e.g. frozen text embeddings). `show_progress` turns on the training progress bar.
    """

    show_progress: bool = False
    network: torch.nn.Module | None = None
    train_history: TrainHistory | None = None

    @abstractmethod
    def _build_network(self, dataset: Dataset | None, weights: dict[str, torch.Tensor] | None) -> torch.nn.Module:
        ...

    def save(self, path: str | Path) -> Path:
        """Save to a folder: config.json, model.safetensors, state.npz and training.json."""
        from safetensors.torch import save_file

        if self.network is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
        path = super().save(path)
        cfg = json.loads((path / "config.json").read_text())
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in self.network.state_dict().items()}
        save_file(tensors, str(path / WEIGHTS), metadata={"config_hash": cfg["config_hash"], "model": self.name})
        if self.train_history is not None:
            (path / HISTORY).write_text(json.dumps(self.train_history.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Load a folder written by `save`; a config or weights file that does not match its
        config hash raises ValueError."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        require_torch()
        path = Path(path)
        cfg = json.loads((path / "config.json").read_text())
        expected = config_hash({k: v for k, v in cfg.items() if k != "config_hash"})
        if cfg.get("config_hash") != expected:
            raise ValueError(f"{path / 'config.json'}: config_hash {cfg.get('config_hash')!r} does not match "
                             f"its contents ({expected}); the file was edited after saving")
        weights_path = path / WEIGHTS
        if not weights_path.is_file():
            raise FileNotFoundError(f"{path}: no {WEIGHTS}; was the model saved with save()?")
        with safe_open(str(weights_path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("config_hash") != expected:
            raise ValueError(f"{weights_path}: weights were saved for config {meta.get('config_hash')!r}, "
                             f"not {expected}")
        tensors = load_file(str(weights_path))
        model = super().load(path)
        model.network = model._build_network(None, tensors)
        model.network.load_state_dict(tensors, strict=True)
        model.network.eval()
        if (path / HISTORY).is_file():
            model.train_history = TrainHistory(**json.loads((path / HISTORY).read_text()))
        return model

    def training_summary(self) -> dict[str, Any]:
        """Best epoch, its validation NDCG@10, epochs run and training seconds (empty before fit)."""
        h = self.train_history
        if h is None:
            return {}
        return {"best_epoch": h.best_epoch, "valid_NDCG@10": h.best_valid, "epochs_run": len(h.epochs),
                "stopped_early": h.stopped_early, "train_s": round(h.train_s, 2), "valid_users": h.valid_users}
