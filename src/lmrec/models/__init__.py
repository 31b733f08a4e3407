"""Trainable neural recommenders (torch), with the training machinery they share
(`lmrec.models.training`): sequential SASRec+ over item IDs ("sasrec", `sasrec.py`) and over
frozen language-model item embeddings ("sasrec-text", `text_seq.py`), the two-tower model
(`two_tower.py`) and the order-free Mult-VAE over a user's bag of items ("multvae",
`multvae.py`).

Importing this package registers these models in `lmrec.component` as lazy
"module:Class" paths with a small validation grid each (`lmrec.component` imports it at
start); torch is imported only when one of them is built.

Example:
    >>> from lmrec.component import create
    >>> create("sasrec", {"max_len": 50, "dropout": 0.5}).config.max_len
    50
"""

from __future__ import annotations

from typing import Any

#: Small validation grids (`lmrec eval --tune`); the training fields keep their defaults.
GRIDS: dict[str, list[dict[str, Any]]] = {
    "sasrec": [{"dropout": d, "n_heads": h} for d in (0.2, 0.35, 0.5) for h in (1, 2)],
    "sasrec-text": [{"id_fusion": f, "dropout": d} for f in ("none", "gate") for d in (0.2, 0.5)],
    "multvae": [{"beta": b, "dropout": d} for b in (0.2, 0.5) for d in (0.3, 0.5)],
}

_MODELS = {
    "sasrec": "lmrec.models.sasrec:SASRec",
    "sasrec-text": "lmrec.models.text_seq:SASRecText",
    "multvae": "lmrec.models.multvae:MultVAE",
}


def _register() -> None:
    from lmrec.component import DEFAULT_GRIDS, model_names, register_model

    for name, path in _MODELS.items():
        if name not in model_names():
            register_model(name, path)
        DEFAULT_GRIDS.setdefault(name, GRIDS[name])


_register()
