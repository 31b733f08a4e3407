"""Data set registry: `load_dataset(name)` for interaction data sets, `load_relevance(name)` for
query-item relevance sets, `load_faq(name)` for FAQ question sets, and generic loaders for any
events / item file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from lmrec.data.dataset import Dataset
from lmrec.data.loaders.amazon import load_amazon_scientific
from lmrec.data.loaders.base import missing_folder_error
from lmrec.data.loaders.faq import FaqSet, load_bitext_faq
from lmrec.data.loaders.generic import (
    ColumnMapping, ItemCatalog, ItemMapping, events_to_dataset, load_events_file, load_items_file,
)
from lmrec.data.loaders.movielens import load_ml1m, load_ml100k, load_ml_latest_small
from lmrec.data.loaders.relevance_sets import load_homedepot, load_qbqtc
from lmrec.data.cleaning import CleaningReport
from lmrec.data.relevance import RelevanceSet


@dataclass(frozen=True)
class DatasetSpec:
    """A registered data set: its folder under the data directory and its loader."""

    name: str
    folder: str
    kind: Literal["interactions", "relevance", "faq"]
    loader: Callable[[Path], Dataset | RelevanceSet | FaqSet]
    description: str
    downloadable: bool = False


DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("ml-100k", "movielens-100k", "interactions", load_ml100k,
                "MovieLens 100K: 100,000 ratings, 943 users, 1,682 movies", downloadable=True),
    DatasetSpec("ml-latest-small", "movielens-latest-small", "interactions", load_ml_latest_small,
                "MovieLens latest-small: 100,836 ratings, 610 users, 9,742 movies, tags"),
    DatasetSpec("ml-1m", "movielens-1m", "interactions", load_ml1m,
                "MovieLens 1M 10-core implicit: 998,539 events, 6,040 users, 3,260 movies, no times"),
    DatasetSpec("amazon-scientific", "amazon-scientific", "interactions", load_amazon_scientific,
                "Amazon Scientific: 59,384 purchases, 8,442 users, 4,385 items with text, order only"),
    DatasetSpec("homedepot", "homedepot-search-relevance", "relevance", load_homedepot,
                "Home Depot search relevance: 74,067 judgments, 11,795 queries, grades 1-3"),
    DatasetSpec("qbqtc", "qbqtc-zh-search-relevance", "relevance", load_qbqtc,
                "QBQTC Chinese query-title relevance: 25,000 pairs, grades 0-2"),
    DatasetSpec("bitext-faq", "bitext-customer-support", "faq", load_bitext_faq,
                "Bitext customer-support FAQ: 4,514 questions, 27 intents, 11 categories, answers"),
)}
INTERACTION_DATASETS = tuple(n for n, s in DATASETS.items() if s.kind == "interactions")
RELEVANCE_SETS = tuple(n for n, s in DATASETS.items() if s.kind == "relevance")
FAQ_SETS = tuple(n for n, s in DATASETS.items() if s.kind == "faq")


def _spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}") from None


def dataset_folder(name: str, data_dir: Path | None = None) -> Path:
    """The folder a registered data set is read from (it may not exist)."""
    from lmrec.settings import data_dir as default_data_dir

    root = Path(data_dir) if data_dir is not None else default_data_dir()
    return root / _spec(name).folder


def _locate(name: str, data_dir: Path | None) -> tuple[DatasetSpec, Path]:
    spec = _spec(name)
    folder = dataset_folder(name, data_dir)
    if not folder.is_dir():
        raise missing_folder_error(name, folder, folder.parent, spec.downloadable)
    return spec, folder


def load_dataset(name: str | Path, data_dir: Path | None = None, *, strict: bool = False) -> Dataset:
    """Load a registered interaction data set (see INTERACTION_DATASETS) from `data_dir`
    (default: `lmrec.settings.data_dir()`), or a data set of one's own: the path of a
    data-set spec TOML (`lmrec.data.spec`), of a folder holding `dataset.toml`, or of an
    events file with the columns user_id, item_id, timestamp. `strict` (own data only) stops
    at the first bad row."""
    from lmrec.data.spec import is_spec_path  # (the spec module builds on these loaders)

    if isinstance(name, Path) or (name not in DATASETS and is_spec_path(name)):
        return load_dataset_path(name, strict=strict)[0]
    spec, folder = _locate(name, data_dir)
    if spec.kind != "interactions":
        loader = "load_faq" if spec.kind == "faq" else "load_relevance"
        raise ValueError(f"{name!r} is a {'FAQ question' if spec.kind == 'faq' else 'query-item relevance'} set, "
                         f"not an interaction data set; use {loader}({name!r})")
    out = spec.loader(folder)
    assert isinstance(out, Dataset)
    return out


def load_dataset_path(path: str | Path, *, strict: bool = False) -> tuple[Dataset, CleaningReport]:
    """An own data set from a spec TOML, a folder with `dataset.toml`, or a bare events file
    (default columns), with the events' cleaning report."""
    from lmrec.data.spec import DataSpec, EventsSection, load_spec, load_spec_dataset

    p = Path(path)
    if p.suffix.lower() == ".toml" or p.is_dir():
        spec = load_spec(p)
    elif not p.exists():
        raise FileNotFoundError(f"{p}: no such file (a data-set spec .toml, a folder with dataset.toml, "
                                f"an events file, or one of the registered data sets: {', '.join(DATASETS)})")
    else:
        spec = DataSpec(events=EventsSection(path=p.resolve()))
        spec.source = p.resolve()
    return load_spec_dataset(spec, strict=strict)


def load_relevance(name: str, data_dir: Path | None = None) -> RelevanceSet:
    """Load a registered relevance set (see RELEVANCE_SETS) from `data_dir`."""
    spec, folder = _locate(name, data_dir)
    if spec.kind != "relevance":
        raise ValueError(f"{name!r} is not a relevance set; use "
                         f"{'load_faq' if spec.kind == 'faq' else 'load_dataset'}({name!r})")
    out = spec.loader(folder)
    assert isinstance(out, RelevanceSet)
    return out


def load_faq(name: str, data_dir: Path | None = None) -> FaqSet:
    """Load a registered FAQ question set (see FAQ_SETS) from `data_dir`."""
    spec, folder = _locate(name, data_dir)
    if spec.kind != "faq":
        raise ValueError(f"{name!r} is not an FAQ question set; known: {', '.join(FAQ_SETS)}")
    out = spec.loader(folder)
    assert isinstance(out, FaqSet)
    return out


__all__ = [
    "DATASETS", "FAQ_SETS", "INTERACTION_DATASETS", "RELEVANCE_SETS", "DatasetSpec", "FaqSet", "ColumnMapping", "ItemMapping",
    "ItemCatalog", "RelevanceSet", "dataset_folder", "events_to_dataset", "load_dataset",
    "load_dataset_path", "load_events_file", "load_faq", "load_items_file", "load_relevance",
]
