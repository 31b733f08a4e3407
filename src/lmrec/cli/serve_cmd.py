"""`lmrec search` and `lmrec recommend`: query a local data set from the command line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from lmrec.cli.common import console, fail, parse_params

RETRIEVERS = ("bm25", "dense", "hybrid")


def _catalog(dataset: str, data_dir: Optional[Path]) -> tuple[list[str], list[str]]:
    """(item ids, item texts) of a data set: interaction sets (registered or one's own spec)
    use their item text template, relevance sets (homedepot, qbqtc) their product / page
    titles, FAQ sets their stored questions."""
    from lmrec.cli.common import load_named_dataset
    from lmrec.data.loaders import DATASETS, load_faq, load_relevance

    if dataset not in DATASETS or DATASETS[dataset].kind == "interactions":  # own data: a spec / file
        from lmrec.text.templates import item_texts

        ds = load_named_dataset(dataset, data_dir)
        if ds.item_table is None:
            raise fail(f"{dataset}: the data set has no item file, so there is no text to search "
                       "(add an [items] section to its spec)")
        return list(ds.items.ids), item_texts(ds)
    try:
        if DATASETS[dataset].kind == "relevance":
            rel = load_relevance(dataset, data_dir)
            return list(rel.items.ids), list(rel.item_text)
        faq = load_faq(dataset, data_dir)  # the stored questions (ids: row numbers)
        return [str(i) for i in range(len(faq))], list(faq.questions)
    except FileNotFoundError as e:
        raise fail(str(e)) from None


def build_retriever(kind: str, encoder: str, texts: list[str]):
    """A fitted retriever of `kind` over `texts` (item index = position)."""
    from lmrec.recall.bm25 import BM25Retriever
    from lmrec.recall.hybrid import HybridRetriever
    from lmrec.recall.search import DenseRetriever
    from lmrec.text.registry import get_encoder

    if kind not in RETRIEVERS:
        raise fail(f"unknown retriever {kind!r}; choose one of {', '.join(RETRIEVERS)}")
    if kind == "bm25":
        return BM25Retriever().fit(texts)
    try:
        enc = get_encoder(encoder, cache=True)
    except ValueError as e:
        raise fail(str(e)) from None
    dense = DenseRetriever(enc)
    dense.fit(texts)   # the encoder reports its progress (lmrec.cli.progress); cached on disk after the first run
    if kind == "dense":
        return dense
    return HybridRetriever(BM25Retriever().fit(texts), dense, method="rrf")


def search_command(
    query: str = typer.Argument(..., help="The search query (any language the encoder knows)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Data set whose catalog is searched."),
    retriever: str = typer.Option("hybrid", "--retriever", "-r", help="bm25 | dense | hybrid (RRF)."),
    encoder: str = typer.Option("minilm", "--encoder", "-e",
                                help="minilm | minilm-int8 | e5-small (Chinese) | st:<path>."),
    k: int = typer.Option(10, "--k", help="Number of results."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Overrides LMREC_DATA_DIR."),
) -> None:
    """Search a data set's catalog with BM25, a dense encoder or both."""
    ids, texts = _catalog(dataset, data_dir)
    r = build_retriever(retriever, encoder, texts)
    t0 = time.perf_counter()
    cands = r(query, k)
    ms = (time.perf_counter() - t0) * 1000
    t = Table(title=f"{retriever} search in {dataset} ({len(texts)} items): {query!r} — {ms:.1f} ms")
    for col in ("rank", "item", "score", "channels", "text"):
        t.add_column(col, overflow="fold")
    for rank, (item, score) in enumerate(zip(cands.items, cands.scores), 1):
        src = ",".join(cands.sources[rank - 1]) if cands.sources else retriever
        t.add_row(str(rank), ids[int(item)], f"{float(score):.4f}", src, texts[int(item)][:120])
    console.print(t)


def recommend_command(
    user: str = typer.Option(..., "--user", "-u", help="Original user id."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Interaction data set."),
    model: str = typer.Option("ease", "--model", "-m", help="Model name (lmrec models lists them)."),
    params: Optional[str] = typer.Option(None, "--params", "-p", help="Model parameters: JSON or a=1,b=2."),
    k: int = typer.Option(10, "--k", help="Number of recommendations."),
    history: int = typer.Option(5, "--history", help="Show the user's last N events."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Overrides LMREC_DATA_DIR."),
) -> None:
    """Fit a model on all of a data set's events and recommend for one user (seen items excluded)."""
    from lmrec.cli.common import load_named_dataset
    from lmrec.component import create, model_names

    if model not in model_names():
        raise fail(f"unknown model {model!r}; known: {', '.join(model_names())}")
    try:
        m = create(model, parse_params(params))
    except Exception as e:
        raise fail(f"bad --params for {model}: {e}") from None
    ds = load_named_dataset(dataset, data_dir)
    if user not in ds.users:
        raise fail(f"user {user!r} is not in {dataset} (ids look like {', '.join(ds.users.ids[:3])}, ...)")
    u = ds.users.index(user)
    with console.status(f"fitting {model} on {len(ds.interactions)} events"):
        m.fit(ds.interactions, ds)
    titles = ds.item_table.title if ds.item_table is not None else [""] * ds.n_items
    hist = ds.interactions.per_user(ds.n_users)[u][-history:] if history else []
    if len(hist):
        console.print(f"[bold]user {user}[/], last {len(hist)} of their events: " +
                      "; ".join(titles[int(i)] or ds.items.ids[int(i)] for i in hist))
    cands = m.recommend([u], k)[0]
    t = Table(title=f"{model} recommendations for user {user} ({dataset})")
    for col in ("rank", "item", "score", "title"):
        t.add_column(col, overflow="fold")
    for rank, (item, score) in enumerate(zip(cands.items, cands.scores), 1):
        t.add_row(str(rank), ds.items.ids[int(item)], f"{float(score):.4f}", titles[int(item)])
    console.print(t)
