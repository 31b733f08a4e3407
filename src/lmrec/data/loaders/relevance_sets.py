"""Search relevance sets: Home Depot (English product search) and QBQTC (Chinese web search)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from lmrec.data.dataset import IdMap
from lmrec.data.loaders.base import align_rows, aligned, fast_indices, require_files
from lmrec.data.relevance import RelevanceSet


def _query_index(queries: pd.Series) -> tuple[list[str], np.ndarray]:
    """Distinct queries in order of first appearance and each row's query index."""
    codes, uniques = pd.factorize(queries, sort=False)
    return [str(q) for q in uniques], codes.astype(np.int64)


def load_homedepot(folder: Path) -> RelevanceSet:
    """Home Depot: 74,067 (query, product) judgments, grade = mean rater relevance 1-3; items
    are product_uids with the product title as text."""
    require_files("homedepot", folder, ["train.csv.zip"])
    with zipfile.ZipFile(folder / "train.csv.zip") as zf:
        name = next((n for n in zf.namelist() if n.endswith(".csv")), None)
        if name is None:
            raise FileNotFoundError(f"{folder / 'train.csv.zip'}: no .csv file inside the archive")
        raw = zf.read(name)
    df = pd.read_csv(io.BytesIO(raw), encoding="ISO-8859-1", dtype={"product_uid": str, "product_title": str,
                                                                    "search_term": str})
    queries, qidx = _query_index(df["search_term"])
    first = df.drop_duplicates("product_uid")
    items = IdMap(first["product_uid"].tolist())
    rows = align_rows(items, first["product_uid"].tolist())
    return RelevanceSet(
        "homedepot", queries, items, aligned(first["product_title"].tolist(), rows, ""),
        qidx, fast_indices(items, df["product_uid"].to_numpy()), df["relevance"].to_numpy(dtype=np.float32),
        info={"source": str(folder), "grade_range": [1.0, 3.0],
              "grade": "mean of at least 3 raters (1 = not, 3 = highly relevant)"},
    )


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def load_qbqtc(folder: Path) -> RelevanceSet:
    """QBQTC: 25,000 Chinese (query, title) pairs from dev.json and test_public.json, grade
    0/1/2. Items are the distinct titles, with ids 0, 1, ... in order of first appearance;
    `part` says which file each judgment came from ("dev" / "test")."""
    require_files("qbqtc", folder, ["dev.json", "test_public.json"])
    rows = [(r, "dev") for r in _read_jsonl(folder / "dev.json")]
    rows += [(r, "test") for r in _read_jsonl(folder / "test_public.json")]
    df = pd.DataFrame({"query": [r["query"] for r, _ in rows], "title": [r["title"] for r, _ in rows],
                       "label": [int(r["label"]) for r, _ in rows], "part": [p for _, p in rows]})
    queries, qidx = _query_index(df["query"])
    titles, tidx = _query_index(df["title"])
    items = IdMap([str(i) for i in range(len(titles))])
    return RelevanceSet(
        "qbqtc", queries, items, titles, qidx, tidx, df["label"].to_numpy(dtype=np.float32),
        part=df["part"].to_numpy(dtype=str),
        info={"source": str(folder), "grade_range": [0.0, 2.0], "language": "zh",
              "grade": "0 poor, 1 somewhat relevant, 2 highly relevant"},
    )
