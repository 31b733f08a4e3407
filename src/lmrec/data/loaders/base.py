"""Shared helpers for the data set loaders: locating files with helpful errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from lmrec.data.dataset import IdMap


def missing_folder_error(dataset: str, folder: Path, data_dir: Path, download_hint: bool = False) -> FileNotFoundError:
    msg = (f"data set {dataset!r} not found: expected the folder {folder} "
           f"(data directory {data_dir}, set with LMREC_DATA_DIR or data_dir in lmrec.toml)")
    if download_hint:
        msg += f"; run `lmrec data download {dataset}` to fetch it"
    return FileNotFoundError(msg)


def require_files(dataset: str, folder: Path, names: Sequence[str]) -> None:
    """Raise FileNotFoundError naming every missing file of a data set folder."""
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"data set {dataset!r}: missing file(s) {', '.join(missing)} in {folder}")


def fast_indices(idmap: IdMap, ids: Sequence[Any] | np.ndarray | pd.Series, *, missing: int | None = None) -> np.ndarray:
    """Vectorised `IdMap.indices`: unknown ids raise KeyError unless `missing` gives a fill."""
    arr = ids.to_numpy() if isinstance(ids, pd.Series) else np.asarray(ids)
    if arr.dtype.kind in "iuU":
        values = arr.astype(str).astype(object)
    else:
        values = np.array([v if type(v) is str else str(v) for v in arr], dtype=object)
    idx = pd.Index(idmap.ids, dtype=object).get_indexer(values).astype(np.int64)
    bad = idx < 0
    if bad.any():
        if missing is None:
            raise KeyError(f"unknown id {values[np.flatnonzero(bad)[0]]!r}")
        idx[bad] = missing
    return idx


def align_rows(idmap: IdMap, ids: Sequence[str]) -> np.ndarray:
    """For each position of `idmap`, the row of `ids` holding that id (-1 when absent)."""
    rows = np.full(len(idmap), -1, dtype=np.int64)
    idx = fast_indices(idmap, ids, missing=-1)
    ok = idx >= 0
    rows[idx[ok]] = np.flatnonzero(ok)
    return rows


def aligned(values: Sequence, rows: np.ndarray, fill=None) -> list:
    """`values` reordered by `rows` (from align_rows); -1 gives `fill`."""
    return [values[r] if r >= 0 else fill for r in rows]
