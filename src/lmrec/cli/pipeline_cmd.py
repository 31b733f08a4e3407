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
from lmrec.cli.progress import Reporter


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
    """One row per recommendation; the title cell carries the explanation on a second line
    (the history item it resembles, shared categories / attributes or the knowledge-graph
    path), so the table stays readable at 80 columns."""
    from rich.markup import escape

    t = Table(title=f"recommendations for user {user} ({ds.name})")
    t.add_column("#", justify="right", no_wrap=True)
    t.add_column("item", overflow="fold")
    t.add_column("title / why", overflow="fold", ratio=1)
    t.add_column("score", justify="right", no_wrap=True)
    t.add_column("channels", overflow="fold")
    for e in cands.explanations or []:
        because = e.get("because")
        shared = ", ".join(e.get("shared_categories", []) + [f"{k}={v}" for k, v in e.get("shared_attributes", {}).items()])
        path = e.get("kg_path")
        if path:  # the knowledge-graph path: same <relation> (<entity>) as a history item
            shared = f"same {path['relation']} ({path['entity_name']}) as {path['because']['title'][:30]}" + \
                (f"; {shared}" if shared else "")
        why = []
        if because:
            why.append(f"like {because['title'][:40]} (cosine {because['cosine']:.2f})")
        if shared:
            why.append(f"shared: {shared}")
        cell = escape(e["title"][:60]) + (f"\n[dim]{escape('; '.join(why))}[/]" if why else "")
        t.add_row(str(e["rank"]), escape(str(e["item_id"])), cell, f"{e['score']:.4f}", ",".join(e["channels"]))
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
    # each stage message is a step: a bar in a terminal, a line every 10 s elsewhere (the current
    # stage and the time so far), and a final line
    head = f"fit pipeline on {len(ds.interactions)} events of {ds.name}"
    with Reporter(head, unit="stages") as rep:
        pipe.progress = lambda msg: rep.update(completed=rep.completed + 1, description=f"{head}: {msg}")
        try:
            pipe.fit(ds.interactions, ds)
        except ValueError as e:
            raise fail(str(e)) from None
        finally:
            pipe.progress = None
        rep.update(description=head)
    console.print(f"fitted in {time.perf_counter() - t0:.1f} s " + json.dumps(pipe.fit_info))
    t1 = time.perf_counter()
    cands = pipe.recommend(ds.users.index(uid), k=k, explain=True)
    console.print(_recs_table(ds, uid, cands))
    console.print(f"one recommend call: {(time.perf_counter() - t1) * 1000:.1f} ms")
    if save is not None:
        pipe.save(save)
        console.print(f"saved to {save}")
