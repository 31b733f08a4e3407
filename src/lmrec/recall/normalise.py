"""Score normalisation shared by every stage that fuses scores from different sources
(hybrid search, re-ranking, CF + LM blends)."""

from __future__ import annotations

from typing import Literal

import numpy as np


def normalise(x: np.ndarray, how: Literal["minmax", "zscore"] = "minmax") -> np.ndarray:
    """Normalise scores along the last axis (one vector, or each row of a matrix): "minmax"
    to [0, 1] or "zscore" (mean 0, std 1). A constant (or empty) vector maps to zeros. float64.

    >>> normalise(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])).tolist()
    [[0.0, 0.5, 1.0], [0.0, 0.0, 0.0]]
    """
    s = np.asarray(x, dtype=np.float64)
    if how not in ("minmax", "zscore"):
        raise ValueError(f"normalisation must be 'minmax' or 'zscore', got {how!r}")
    if s.shape[-1] == 0:
        return s
    if how == "zscore":
        centre, scale = s.mean(axis=-1, keepdims=True), s.std(axis=-1, keepdims=True)
    else:
        centre = s.min(axis=-1, keepdims=True)
        scale = s.max(axis=-1, keepdims=True) - centre
    out = np.zeros_like(s)
    np.divide(s - centre, scale, out=out, where=scale > 1e-12)
    return out
