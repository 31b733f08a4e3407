"""Trainable neural recommenders (torch), with the training machinery they share
(`lmrec.models.training`): sequential SASRec+ over item IDs ("sasrec", `sasrec.py`) and over
frozen language-model item embeddings ("sasrec-text", `text_seq.py`), the two-tower model
(`two_tower.py`) and the order-free Mult-VAE over a user's bag of items ("multvae",
`multvae.py`).

They are registered in `lmrec.component.MODELS` as lazy "module:Class" paths (with a small
validation grid each in `DEFAULT_GRIDS`); torch is imported only when one of them is built.

Example:
    >>> from lmrec.component import create
    >>> create("sasrec", {"max_len": 50, "dropout": 0.5}).config.max_len
    50
"""

from __future__ import annotations
