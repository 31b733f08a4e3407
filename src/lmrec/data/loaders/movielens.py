"""MovieLens loaders: 100K (original files), latest-small, and 1M (10-core implicit)."""

from __future__ import annotations

import re
from itertools import chain
from pathlib import Path

import numpy as np
import pandas as pd

from lmrec.data.dataset import Dataset, IdMap, Interactions, ItemTable
from lmrec.data.loaders.base import align_rows, aligned, fast_indices, require_files
from lmrec.types import EventKind

_YEAR = re.compile(r"\((\d{4})\)\s*$")

# Occupation codes of ML-1M users.dat (from the ML-1M README).
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
    "programmer", "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer",
    "tradesman/craftsman", "unemployed", "writer",
)


def _year(title: str) -> int | None:
    m = _YEAR.search(title)
    return int(m.group(1)) if m else None


def _ratings_interactions(df: pd.DataFrame, users: IdMap, items: IdMap) -> Interactions:
    return Interactions(
        fast_indices(users, df["user"].to_numpy()), fast_indices(items, df["item"].to_numpy()),
        df["ts"].to_numpy(dtype=np.int64), np.full(len(df), int(EventKind.RATING), dtype=np.int8),
        df["rating"].to_numpy(dtype=np.float32),
    )


def _read_udata(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", header=None, names=["user", "item", "rating", "ts"], dtype=np.int64)


def load_ml100k(folder: Path) -> Dataset:
    """MovieLens 100K: 100,000 ratings 1-5 with times, 1,682 movies with genres, user
    demographics, and the official `ua` train/test split."""
    require_files("ml-100k", folder, ["u.data", "u.item", "u.genre", "u.user", "ua.base", "ua.test"])
    ratings = _read_udata(folder / "u.data")
    genres = [ln.split("|")[0] for ln in (folder / "u.genre").read_text(encoding="latin-1").splitlines()
              if ln.strip()]
    cols = ["item", "title", "release_date", "video_release_date", "imdb_url"]
    movies = pd.read_csv(folder / "u.item", sep="|", header=None, names=cols + genres, encoding="latin-1",
                         dtype=str, keep_default_na=False)
    item_ids = movies["item"].str.strip().tolist()
    items = IdMap(item_ids)
    rows = align_rows(items, item_ids)
    flags = movies[genres].to_numpy() == "1"
    released = pd.to_datetime(movies["release_date"], format="%d-%b-%Y", errors="coerce", utc=True)
    created = np.where(released.notna(), (released - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1), -1)
    table = ItemTable(
        title=aligned(movies["title"].tolist(), rows, ""),
        categories=[[g for g, f in zip(genres, flags[r]) if f] if r >= 0 else [] for r in rows],
        attributes={"release_date": aligned(movies["release_date"].tolist(), rows, ""),
                    "imdb_url": aligned(movies["imdb_url"].tolist(), rows, "")},
        created_at=np.array([created[r] if r >= 0 else -1 for r in rows], dtype=np.int64),
    )
    people = pd.read_csv(folder / "u.user", sep="|", header=None, dtype=str, keep_default_na=False,
                         names=["user", "age", "gender", "occupation", "zip"])
    users = IdMap(list(ratings["user"].astype(str).unique()) + people["user"].tolist())
    urows = align_rows(users, people["user"].tolist())
    user_attributes = {
        "age": aligned([int(a) for a in people["age"]], urows),
        "gender": aligned(people["gender"].tolist(), urows),
        "occupation": aligned(people["occupation"].tolist(), urows),
        "zip": aligned(people["zip"].tolist(), urows),
    }
    split = {name: _ratings_interactions(_read_udata(folder / f"ua.{part}"), users, items)
             for name, part in (("train", "base"), ("test", "test"))}
    return Dataset("ml-100k", users, items, _ratings_interactions(ratings, users, items), item_table=table,
                   user_attributes=user_attributes, has_timestamps=True, given_split=split,
                   info={"source": str(folder), "rating_range": [1, 5],
                         "given_split": "official ua.base / ua.test (10 test ratings per user)"})


def load_ml_latest_small(folder: Path) -> Dataset:
    """MovieLens latest-small: 100,836 ratings 0.5-5 with times over all 9,742 movies of
    movies.csv; genres, user tags (text field "tags"), IMDb/TMDb ids."""
    require_files("ml-latest-small", folder, ["ratings.csv", "movies.csv"])
    ratings = pd.read_csv(folder / "ratings.csv", dtype={"userId": np.int64, "movieId": np.int64,
                                                         "rating": np.float64, "timestamp": np.int64})
    ratings = ratings.rename(columns={"userId": "user", "movieId": "item", "timestamp": "ts"})
    movies = pd.read_csv(folder / "movies.csv", dtype=str, keep_default_na=False, encoding="utf-8")
    item_ids = movies["movieId"].str.strip().tolist()
    items = IdMap(item_ids)
    rows = align_rows(items, item_ids)
    titles = movies["title"].tolist()
    genres = [[] if g in ("", "(no genres listed)") else g.split("|") for g in movies["genres"]]
    text: dict[str, list[str]] = {}
    if (folder / "tags.csv").is_file():
        tags = pd.read_csv(folder / "tags.csv", dtype=str, keep_default_na=False)
        per_movie: dict[str, dict[str, None]] = {}
        for movie, tag in zip(tags["movieId"].tolist(), tags["tag"].tolist()):
            per_movie.setdefault(movie.strip(), {})[tag.strip()] = None
        text["tags"] = [", ".join(per_movie.get(i, ())) for i in items.ids]
    attributes: dict[str, list] = {"year": aligned([_year(t) for t in titles], rows)}
    if (folder / "links.csv").is_file():
        links = pd.read_csv(folder / "links.csv", dtype=str, keep_default_na=False)
        by_id = {m.strip(): (a, b) for m, a, b in zip(links["movieId"].tolist(), links["imdbId"].tolist(),
                                                      links["tmdbId"].tolist())}
        attributes["imdb_id"] = [by_id.get(i, ("", ""))[0] for i in items.ids]
        attributes["tmdb_id"] = [by_id.get(i, ("", ""))[1] for i in items.ids]
    table = ItemTable(title=aligned(titles, rows, ""), categories=aligned(genres, rows, []),
                      text=text, attributes=attributes)
    users = IdMap(ratings["user"].astype(str).unique())
    return Dataset("ml-latest-small", users, items, _ratings_interactions(ratings, users, items),
                   item_table=table, has_timestamps=True,
                   info={"source": str(folder), "rating_range": [0.5, 5.0]})


def _read_dat(path: Path, n_fields: int) -> list[list[str]]:
    """Rows of a '::'-separated latin-1 file (ML-1M movies.dat / users.dat)."""
    out = []
    for ln in path.read_text(encoding="latin-1").splitlines():
        if ln.strip():
            parts = ln.split("::")
            if len(parts) != n_fields:
                raise ValueError(f"{path.name}: expected {n_fields} fields separated by '::', got {ln!r}")
            out.append(parts)
    return out


def _read_index_lines(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`user_idx item_idx item_idx ...` lines -> (user_idx per line, items per line, all items)."""
    lines = [ln.split() for ln in path.read_text(encoding="ascii").splitlines() if ln.strip()]
    users = np.array([p[0] for p in lines], dtype=np.int64)
    lengths = np.array([len(p) - 1 for p in lines], dtype=np.int64)
    items = np.array(list(chain.from_iterable(p[1:] for p in lines)), dtype=np.int64)
    return users, lengths, items


def _positions(lengths: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """0..len-1 within each run of `lengths`, plus the run's offset."""
    starts = np.cumsum(lengths) - lengths
    return np.arange(lengths.sum()) - np.repeat(starts - offsets, lengths)


def load_ml1m(folder: Path) -> Dataset:
    """MovieLens 1M 10-core implicit interactions (998,539 VIEW events, no times) with titles,
    genres and user demographics. Timestamps hold each event's position in the user's train
    line followed by the test line (`has_timestamps=False`); the given split is the
    processed random 80/20 train/test split."""
    sub = folder / "interactions-10core-implicit"
    require_files("ml-1m", folder, ["movies.dat", "users.dat", "interactions-10core-implicit/train.txt",
                                    "interactions-10core-implicit/test.txt",
                                    "interactions-10core-implicit/item_map.txt",
                                    "interactions-10core-implicit/user_map.txt"])
    pairs = [ln.split() for ln in (sub / "item_map.txt").read_text().splitlines() if ln.strip()]
    idx2movie = np.zeros(len(pairs), dtype=np.int64)
    for orig, idx in pairs:
        idx2movie[int(idx)] = int(orig)
    upairs = [ln.split() for ln in (sub / "user_map.txt").read_text().splitlines() if ln.strip()]
    idx2user = {int(idx): orig for orig, idx in upairs}
    items = IdMap(idx2movie.astype(str))
    movie_pos = items.indices(idx2movie.astype(str))  # processed item idx -> our item index
    users = IdMap(list(idx2user.values()))
    user_pos = np.full(max(idx2user) + 1, -1, dtype=np.int64)  # processed user idx -> our user index
    user_pos[list(idx2user)] = fast_indices(users, list(idx2user.values()))
    split: dict[str, Interactions] = {}
    offset = np.zeros(len(user_pos), dtype=np.int64)  # test positions continue after train
    for name in ("train", "test"):
        uidx, lengths, its = _read_index_lines(sub / f"{name}.txt")
        split[name] = Interactions(np.repeat(user_pos[uidx], lengths), movie_pos[its],
                                   _positions(lengths, offset[uidx]))
        offset[uidx] += lengths
    movies = {r[0]: r for r in _read_dat(folder / "movies.dat", 3)}
    table = ItemTable(
        title=[movies[i][1] if i in movies else "" for i in items.ids],
        categories=[movies[i][2].split("|") if i in movies and movies[i][2] else [] for i in items.ids],
        attributes={"year": [_year(movies[i][1]) if i in movies else None for i in items.ids]},
    )
    people = {r[0]: r for r in _read_dat(folder / "users.dat", 5)}

    def occupation(code: str) -> str:
        return ML1M_OCCUPATIONS[int(code)] if code.isdigit() and int(code) < len(ML1M_OCCUPATIONS) else code

    user_attributes = {
        "gender": [people[u][1] if u in people else None for u in users.ids],
        "age": [int(people[u][2]) if u in people else None for u in users.ids],
        "occupation": [occupation(people[u][3]) if u in people else None for u in users.ids],
        "zip": [people[u][4] if u in people else None for u in users.ids],
    }
    triples = ml1m_triples(folder.parent / "movielens-1m-kg", items)
    return Dataset("ml-1m", users, items, Interactions.concat([split["train"], split["test"]]),
                   item_table=table, user_attributes=user_attributes, has_timestamps=False,
                   given_split=split, triples=triples,
                   info={"source": str(folder),
                         "timestamps": "position in the user's train line, then test line (no real times)",
                         "age": "ML-1M age group code (1: under 18, 18: 18-24, ..., 56: 56+)",
                         "given_split": "processed random 80/20 per-user split (train.txt / test.txt)",
                         "knowledge_graph": (f"{len(triples)} triples from {folder.parent / 'movielens-1m-kg'}"
                                             if triples is not None else "none (movielens-1m-kg not found)")})


def ml1m_triples(folder: Path, items: IdMap) -> pd.DataFrame | None:
    """The MovieLens-1M knowledge graph (`movielens-1m-kg`: Satori film triples, MKR's
    preprocessing) over `items` (MovieIDs): movie entities become item ids, attribute
    entities keep their (anonymous) ids. Triples of movies outside `items` are dropped. None
    when the folder is absent."""
    if not (folder / "kg.txt").is_file() or not (folder / "item_index2entity_id.txt").is_file():
        return None
    movie_of: dict[str, str] = {}
    for ln in (folder / "item_index2entity_id.txt").read_text().splitlines():
        if ln.strip():
            movie, ent = ln.split()
            movie_of[ent] = movie
    kg = pd.read_csv(folder / "kg.txt", sep="\t", header=None, names=["head", "relation", "tail"], dtype=str)
    movie_ents = set(movie_of)
    head_movie = kg["head"].isin(movie_ents).to_numpy()
    tail_movie = kg["tail"].isin(movie_ents).to_numpy()
    head = np.where(head_movie, kg["head"].map(movie_of).fillna(""), kg["head"])
    tail = np.where(tail_movie, kg["tail"].map(movie_of).fillna(""), kg["tail"])
    known = set(items.ids)
    keep = ((~head_movie) | np.isin(head, list(known))) & ((~tail_movie) | np.isin(tail, list(known)))
    out = pd.DataFrame({"head": head[keep].astype(object), "relation": kg["relation"].to_numpy()[keep].astype(object),
                        "tail": tail[keep].astype(object), "head_item": head_movie[keep], "tail_item": tail_movie[keep]})
    return out.drop_duplicates(ignore_index=True)
