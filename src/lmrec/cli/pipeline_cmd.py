"""`lmrec pipeline`: fit a recall -> rank -> rerank pipeline from a TOML config on a data set and
show its stages and one user's explained recommendations."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from lmrec.cli.common import console, fail, load_named_dataset, parse_params


def _stages_table(pipe) -> Table:  # noqa: ANN001 - RecPipeline, imported lazily
    spec = pipe.spec
    t = Table(title="pipeline stages")
    for col in ("stage", "name", "parameters"):
        t.add_column(col, overflow="fold")
    for c in spec.channels:
        role = "fallback" if c.fallback_only else "recall"
        t.add_row(role, f"{c.name} ({c.model})", f"quota={c.quota} min_history={c.min_history} weight={c.weight} "
                  + json.dumps(c.params))
    if spec.fallback.chain:
        t.add_row("fallback", " -> ".join(spec.fallback.chain), f"min_candidates={spec.fallback.min_candidates}")
    t.add_row("merge", spec.merge.method, "")
    t.add_row("rank", spec.rank.ranker, f"keep={spec.rank.keep} features="
              + ",".join(f.name for f in spec.rank.features) + " " + json.dumps(spec.rank.params.get(spec.rank.ranker, {})))
    for s in spec.rerank.stages:
        t.add_row("rerank", s.name, json.dumps(s.params))
    return t


def _recs_table(ds, user: str, cands) -> Table:  # noqa: ANN001
    t = Table(title=f"recommendations for user {user} ({ds.name})")
    for col in ("rank", "item", "title", "score", "channels", "because (history item, cosine)", "shared"):
        t.add_column(col, overflow="fold")
    for e in cands.explanations or []:
        because = e.get("because")
        shared = ", ".join(e.get("shared_categories", []) + [f"{k}={v}" for k, v in e.get("shared_attributes", {}).items()])
        path = e.get("kg_path")
        if path:  # the knowledge-graph path: same <relation> (<entity>) as a history item
            shared = f"same {path['relation']} ({path['entity_name']}) as {path['because']['title'][:30]}" + \
                (f"; {shared}" if shared else "")
        t.add_row(str(e["rank"]), e["item_id"], e["title"][:60], f"{e['score']:.4f}", ",".join(e["channels"]),
                  f"{because['title'][:40]} ({because['cosine']:.2f})" if because else "-", shared)
    return t


def pipeline_command(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Interaction data set (lmrec data info lists them)."),
    config: Path = typer.Option(Path("configs/default.toml"), "--config", "-c", help="Pipeline config (TOML)."),
    user: Optional[str] = typer.Option(None, "--user", "-u", help="Original user id (default: the first user)."),
    k: int = typer.Option(10, "--k", help="Number of recommendations."),
    overrides: Optional[str] = typer.Option(None, "--set", help="JSON deep-merged into the config, e.g. "
                                            "'{\"rank\": {\"ranker\": \"none\"}}'."),
    save: Optional[Path] = typer.Option(None, "--save", help="Save the fitted pipeline to this folder."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Overrides LMREC_DATA_DIR."),
) -> None:
    """Fit the pipeline on all of a data set's events and show one user's explained top-k."""
    from lmrec.pipeline import RecPipeline

    try:
        pipe = RecPipeline(config=str(config), overrides=parse_params(overrides))
    except (ValueError, FileNotFoundError) as e:
        raise fail(str(e)) from None
    console.print(_stages_table(pipe))
    ds = load_named_dataset(dataset, data_dir)
    if user is not None and user not in ds.users:
        raise fail(f"user {user!r} is not in {dataset} (ids look like {', '.join(ds.users.ids[:3])}, ...)")
    uid = user if user is not None else ds.users.ids[0]
    t0 = time.perf_counter()
    with console.status(f"fitting the pipeline on {len(ds.interactions)} events of {dataset}") as status:
        pipe.progress = lambda msg: status.update(f"fitting: {msg}")
        try:
            pipe.fit(ds.interactions, ds)
        except ValueError as e:
            raise fail(str(e)) from None
    console.print(f"fitted in {time.perf_counter() - t0:.1f} s " + json.dumps(pipe.fit_info))
    t1 = time.perf_counter()
    cands = pipe.recommend(ds.users.index(uid), k=k, explain=True)
    console.print(_recs_table(ds, uid, cands))
    console.print(f"one recommend call: {(time.perf_counter() - t1) * 1000:.1f} ms")
    if save is not None:
        pipe.save(save)
        console.print(f"saved to {save}")
