"""Benchmark result files (JSON + markdown, the format in DESIGN.md), CLI tables and plots.

Example:
    >>> rows = [{"dataset": "toy", "split": "temporal-loo", "model": "popular", "params": {},
    ...          "NDCG@10": 0.1, "NDCG@10_se": 0.01, "fit_s": 0.0}]
    >>> print(rows_table(rows).splitlines()[0])
    | dataset | split | model | params | NDCG@10 | fit_s |
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["MAIN_METRICS", "FAIRNESS_METRICS", "COMPACT_METRICS", "write_results", "read_results", "rows_table",
           "rich_table", "rich_tables", "compact_tables", "fitted_tables", "fairness_markdown",
           "fairness_rich_tables", "plot_metric", "plot_results", "machine_description", "git_commit"]

#: Columns shown in tables, in this order, when at least one row has them.
MAIN_METRICS = ("NDCG@10", "HR@10", "MRR@10", "Recall@20", "Precision@10", "coverage@10", "ILD@10",
                "novelty@10", "AUC", "p50_ms", "p99_ms", "req_per_s", "events_per_s")
ID_COLUMNS = ("dataset", "split", "model", "what", "params")
#: Columns of the popularity-bias table (a separate table, so each one fits 80 columns).
FAIRNESS_METRICS = ("NDCG@10", "coverage@10", "gini@10", "longtail@10")


def git_commit(cwd: str | Path | None = None) -> str:
    """Short hash of HEAD, or "unknown" outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10, check=True)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_description() -> str:
    """E.g. "2 cores, no GPU" or "16 cores, GPU: NVIDIA H100"."""
    cores = f"{os.cpu_count() or 1} cores"
    # import torch only when it is installed: it is an optional, heavy dependency
    if importlib.util.find_spec("torch") is not None:
        try:
            import torch

            if torch.cuda.is_available():
                return f"{cores}, GPU: {torch.cuda.get_device_name(0)}"
        except Exception:  # a broken CUDA install must not stop a benchmark from writing results
            pass
    return f"{cores}, no GPU"


def _jsonable(x: Any) -> Any:
    """Numpy scalars / arrays and paths as plain JSON values."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None  # JSON has no NaN / inf
    if isinstance(x, Path):
        return str(x)
    return x


def write_results(benchmark: str, rows: list[dict[str, Any]], command: str,
                  out_dir: str | Path = "benchmarks/results", notes: str | None = None) -> tuple[Path, Path]:
    """Write `<benchmark>.json` (benchmark, command, git_commit, date, machine, rows) and
    `<benchmark>.md` (a markdown table of the rows, then `notes`) to `out_dir`; returns both
    paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # the commit of the lmrec code that produced the numbers; the working directory's repo when
    # lmrec is installed outside a checkout
    commit = git_commit(Path(__file__).resolve().parent)
    doc = {"benchmark": benchmark, "command": command, "git_commit": commit if commit != "unknown" else git_commit(),
           "date": _dt.date.today().isoformat(), "machine": machine_description(), "rows": _jsonable(rows)}
    json_path = out / f"{benchmark}.json"
    json_path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    fair = fairness_markdown(rows)
    md = (f"# {benchmark}\n\n`{command}`\n\ncommit {doc['git_commit']}, {doc['date']}, {doc['machine']}\n\n"
          f"{rows_table(rows)}\n" + (f"\n{fair}\n" if fair else "") + (f"\n{notes}\n" if notes else ""))
    md_path = out / f"{benchmark}.md"
    md_path.write_text(md, encoding="utf-8")
    return json_path, md_path


def read_results(path: str | Path) -> dict[str, Any]:
    """Load a results JSON written by `write_results`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def format_params(params: Any) -> str:
    """{'lam': 500, 'k': 100} -> 'lam=500, k=100'."""
    if isinstance(params, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
    return "" if params is None else str(params)


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}" if abs(v) < 1e-3 or abs(v) >= 1e4 else f"{float(v):.4f}".rstrip("0").rstrip(".")
    return str(v)


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    present = {k for r in rows for k in r}
    cols = [c for c in ID_COLUMNS if c in present]
    cols += [m for m in MAIN_METRICS if m in present]
    if "fit_s" in present:
        cols.append("fit_s")
    if "ci_low" in present or "vs_best" in present:
        cols.append(DELTA_COLUMN)
    return cols


DELTA_COLUMN = "ΔNDCG@10 [95% CI]"


def _delta_cell(row: dict[str, Any]) -> str:
    """Paired-bootstrap difference against the reference run named in `vs` / `vs_best`."""
    if row.get("vs_best") == "best":
        return "best"
    if "ci_low" not in row:
        return "-"
    ref = row.get("vs") or row.get("vs_best") or "ref"
    d = row.get("delta_NDCG@10", 0.0)
    return f"{d:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}] vs {ref}"


def _cell(row: dict[str, Any], col: str) -> str:
    if col == DELTA_COLUMN:
        return _delta_cell(row)
    if col == "params":
        return format_params(row.get("params"))
    v = row.get(col)
    if v is None:
        return "-"
    if isinstance(v, (float, np.floating)):
        text = f"{float(v):.2f}" if col == "fit_s" else f"{float(v):.4f}"
        se = row.get(f"{col}_se")
        return text + (f" ± {float(se):.4f}" if se is not None else "")
    return str(v)


def rows_table(rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table of result rows: ids, the main metrics (with ± se where known), fit_s."""
    cols = _columns(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r, c).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(lines)


def rich_table(rows: Sequence[dict[str, Any]], title: str | None = None) -> Any:
    """The same table as `rows_table`, as a rich Table for the terminal."""
    from rich.table import Table

    cols = _columns(rows)
    t = Table(title=title)
    for c in cols:
        t.add_column(c, justify="left" if c in ID_COLUMNS else "right")
    for r in rows:
        t.add_row(*(_cell(r, c) for c in cols))
    return t


def rich_tables(rows: Sequence[dict[str, Any]], width: int = 80, title: str | None = None) -> list[Any]:
    """`rich_table`'s columns split over as many tables as it takes for each to fit `width`
    characters; every table after the first repeats the model column."""
    cols = _columns(rows)
    if not cols:
        return [rich_table(rows, title)]
    key = cols.index("model") if "model" in cols else 0
    cells = [[_cell(r, c) for c in cols] for r in rows]
    return fitted_tables(cols, cells, width=width, title=title, key=key,
                         left=[j for j, c in enumerate(cols) if c in ID_COLUMNS])


def fitted_tables(header: Sequence[str], cells: Sequence[Sequence[str]], *, width: int = 80,
                  title: str | None = None, caption: str | None = None, key: int = 0,
                  left: Sequence[int] = (0,)) -> list[Any]:
    """Rich Tables of `cells` under `header`, the columns split over as many tables as it takes
    for each to fit `width` characters (column `key`, the row label, is repeated in each).
    Columns in `left` are left-aligned text that may fold; the others are right-aligned and
    never wrapped, so a number is shown whole or not at all (never as '0.…')."""
    from rich.table import Table

    def w(j: int) -> int:
        return max([len(header[j])] + [len(line[j]) for line in cells]) + 3

    chunks: list[list[int]] = [[]]
    used = 1
    for j in range(len(header)):
        if chunks[-1] and used + w(j) > width:
            chunks.append([key] if j != key else [])
            used = 1 + (w(key) if j != key else 0)
        chunks[-1].append(j)
        used += w(j)
    tables = []
    for n, chunk in enumerate(chunks):
        last = n == len(chunks) - 1
        t = Table(title=title if n == 0 else None, caption=caption if last else None, caption_justify="left")
        for j in chunk:
            if j in left:
                t.add_column(header[j], justify="left", overflow="fold")
            else:
                t.add_column(header[j], justify="right", no_wrap=True, min_width=w(j) - 3)
        for line in cells:
            t.add_row(*(line[j] for j in chunk))
        tables.append(t)
    return tables


#: The columns `lmrec eval` shows by default (`--wide` shows all of MAIN_METRICS).
COMPACT_METRICS = ("NDCG@10", "HR@10", "Recall@20", "coverage@10", "fit_s")
_COMPACT_HEAD = {"coverage@10": "coverage", "fit_s": "fit s"}


def compact_tables(rows: Sequence[dict[str, Any]], width: int = 80) -> list[Any]:
    """A short table for the terminal: one line per row (its label), NDCG@10 ± se, HR@10,
    Recall@20, coverage@10 and fit seconds, with the data set and split in the title and the
    parameters under the table. Fits 80 columns for the usual model names; see `rich_tables`
    for every metric."""
    cols = [c for c in COMPACT_METRICS if any(c in r for r in rows)]
    labels = _row_labels(rows)
    header = ["model"] + [_COMPACT_HEAD.get(c, c) for c in cols]
    cells = [[lab] + [_cell(r, c) for c in cols] for lab, r in zip(labels, rows)]
    where = [", ".join(str(r[k]) for k in ("dataset", "split") if r.get(k)) for r in rows]
    title = where[0] if where and len(set(where)) == 1 and where[0] else None
    notes = []
    for lab, r in zip(labels, rows):
        p = format_params(r.get("params"))
        tuned = f" (tuned on {r['tuned_on']})" if r.get("tuned_on") else ""
        if p or tuned:
            notes.append(f"{lab}: {p or 'defaults'}{tuned}")
    return fitted_tables(header, cells, width=width, title=title, caption="; ".join(notes) or None)


def _row_labels(rows: Sequence[dict[str, Any]]) -> list[str]:
    """A short, unique label per row: `label` if set, else the model (with params when two rows
    share a model)."""
    base = [str(r.get("label") or r.get("model") or r.get("what") or f"row {j + 1}") for j, r in enumerate(rows)]
    out = []
    for j, (b, r) in enumerate(zip(base, rows)):
        if base.count(b) > 1 and not r.get("label"):
            p = format_params(r.get("params"))
            b = f"{b} ({p})" if p else f"{b} #{j + 1}"
        if "dataset" in r and len({x.get("dataset") for x in rows}) > 1:
            b = f"{r['dataset']}: {b}"
        out.append(b)
    return out


def _fair_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if any(m in r for m in FAIRNESS_METRICS[2:])]


def _group_head(rows: Sequence[dict[str, Any]]) -> str:
    keys = {k for r in rows for g in (r.get("groups") or {}).values() for x in g for k in x}
    return next((k for k in sorted(keys) if k.startswith("NDCG@") and not k.endswith("_se")), "NDCG@10")


def _group_grid(rows: Sequence[dict[str, Any]], by: str) -> tuple[list[str], list[list[str]]]:
    """Header and cells of one grouping: a row per group (users, what it covers), a column of
    NDCG per result row."""
    metric = _group_head(rows)
    labels = _row_labels(rows)
    groups: dict[str, dict[str, Any]] = {}
    for r in rows:
        for g in (r.get("groups") or {}).get(by, []):
            groups.setdefault(g["group"], {"users": g.get("users"), "about": g.get("about", "")})
    about = any(v["about"] for v in groups.values())
    if len(rows) > 2:  # many result rows: one line per row, one column per group
        header = [f"{metric} by {by}"] + list(groups)
        cells = [["users"] + [str(meta["users"]) for meta in groups.values()]]
        if about:
            cells.append(["range"] + [meta["about"].replace(" items", "") for meta in groups.values()])
        for lab, r in zip(labels, rows):
            got = {g["group"]: g.get(metric) for g in (r.get("groups") or {}).get(by, [])}
            cells.append([lab] + ["-" if got.get(name) is None else f"{float(got[name]):.4f}" for name in groups])
        return header, cells
    header = [by] + (["range"] if about else []) + ["users"] + (
        [metric] if len(rows) == 1 else [f"{metric} {lab}" for lab in labels])
    cells = []
    for name, meta in groups.items():
        line = [name] + ([meta["about"]] if about else []) + [str(meta["users"])]
        for r in rows:
            hit = next((g for g in (r.get("groups") or {}).get(by, []) if g["group"] == name), None)
            v = None if hit is None else hit.get(metric)
            line.append("-" if v is None else f"{float(v):.4f}")
        cells.append(line)
    return header, cells


def _groupings(rows: Sequence[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(by for r in rows for by in (r.get("groups") or {})))


def fairness_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown: a popularity-bias table (NDCG, coverage, exposure Gini, long-tail share per row)
    and one table per user grouping (NDCG per group); "" when no row has these figures."""
    fair = _fair_rows(rows)
    if not fair:
        return ""
    labels = _row_labels(fair)
    cols = [c for c in FAIRNESS_METRICS if any(c in r for r in fair)]
    out = ["#### Popularity bias", "",
           "gini: exposure Gini of the items' top-10 appearances over the catalog (0 = equal); "
           "longtail: share of top-10 slots given to items outside the 20% most popular of the "
           "training data (see `lmrec.eval.fairness`).", "",
           "| " + " | ".join(["model"] + cols) + " |", "|" + "|".join("---" for _ in range(len(cols) + 1)) + "|"]
    for lab, r in zip(labels, fair):
        vals = ["-" if r.get(c) is None else f"{float(r[c]):.4f}" for c in cols]
        out.append("| " + " | ".join([lab.replace("|", "\\|")] + vals) + " |")
    for name, part in _by_dataset(fair):
        for by in _groupings(part):
            rows_by = [r for r in part if by in (r.get("groups") or {})]
            header, cells = _group_grid(rows_by, by)
            title = f"{_group_head(rows_by)} by {by}" + (" decile (training items per user)" if by == "activity" else "")
            out += ["", f"#### {name + ': ' if name else ''}{title}", "",
                    "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
            out += ["| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in cells]
    return "\n".join(out)


def _by_dataset(rows: Sequence[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Rows split by data set, in order (groups of different data sets hold different users)."""
    names = list(dict.fromkeys(str(r.get("dataset", "")) for r in rows))
    parts = [(n, [r for r in rows if str(r.get("dataset", "")) == n]) for n in names]
    return parts if len(parts) > 1 else [("", list(rows))]


def fairness_rich_tables(rows: Sequence[dict[str, Any]], width: int = 80) -> list[Any]:
    """The tables of `fairness_markdown` as rich Tables for the terminal, columns split so each
    table fits `width` characters (many result rows get one column per user group)."""
    fair = _fair_rows(rows)
    if not fair:
        return []
    cols = [c for c in FAIRNESS_METRICS if any(c in r for r in fair)]
    cells = [[lab] + ["-" if r.get(c) is None else f"{float(r[c]):.4f}" for c in cols]
             for lab, r in zip(_row_labels(fair), fair)]
    tables = fitted_tables(["model"] + cols, cells, width=width, title="popularity bias (top 10)")
    for name, part in _by_dataset(fair):
        for by in _groupings(part):
            rows_by = [r for r in part if by in (r.get("groups") or {})]
            header, grid = _group_grid(rows_by, by)
            title = f"{name + ': ' if name else ''}{_group_head(rows_by)} by {by}"
            left = [0] + ([1] if len(header) > 1 and header[1] == "range" else [])
            tables += fitted_tables(header, grid, width=width, title=title, left=left)
    return tables


def _value(row: dict[str, Any], key: str) -> Any:
    """A row's value for `key`, looking in `params` too ("lam" or "params.lam")."""
    if key in row:
        return row[key]
    params = row.get("params") or {}
    return params.get(key.removeprefix("params."))


def plot_metric(rows: Sequence[dict[str, Any]], x: str, y: str, out_png: str | Path, *,
                group: str = "model", title: str | None = None, logx: bool = False) -> Path:
    """Plot `y` against `x` for each `group` (one line per model by default) and save a PNG.

    `x` / `y` are row keys (metrics, fit_s, ...) or parameter names. Rows missing either
    value are left out.
    """
    # a bare Figure on the Agg canvas: no pyplot global state, no display needed, and the
    # backend of an interactive session that calls this is left alone
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        xv, yv = _value(r, x), _value(r, y)
        if xv is None or yv is None:
            continue
        groups.setdefault(str(r.get(group, "")), []).append((float(xv), float(yv)))
    if not groups:
        raise ValueError(f"no row has both {x!r} and {y!r}")
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for name, pts in groups.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title or f"{y} vs {x}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out


def plot_results(rows: Sequence[dict[str, Any]], out_png: str | Path, *, metric: str = "NDCG@10",
                 title: str | None = None) -> Path:
    """A PNG of evaluation rows (what `lmrec eval --plot` writes): `metric` per row with its 95%
    confidence interval (± 1.96 standard errors, when the rows have `<metric>_se`), and, when
    the rows were scored per activity decile (`groups["activity"]`), `metric` by decile, one
    line per row."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [r for r in rows if r.get(metric) is not None]
    if not rows:
        raise ValueError(f"no row has {metric!r}")
    labels = _row_labels(rows)
    deciles = [r for r in rows if (r.get("groups") or {}).get("activity")]
    fig = Figure(figsize=(11 if deciles else 6, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if deciles else 1, squeeze=False)[0]
    ax = axes[0]
    vals = np.array([float(r[metric]) for r in rows])
    err = np.array([1.96 * float(r.get(f"{metric}_se") or 0.0) for r in rows])
    pos = np.arange(len(rows))
    ax.barh(pos, vals, xerr=err if err.any() else None, color="#4c72b0", capsize=4, alpha=0.85)
    for y, v, e in zip(pos, vals, err):
        ax.text(v + e, y, f" {v:.4f}", va="center", fontsize="small")
    ax.set_yticks(pos, labels, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlim(0, float((vals + err).max()) * 1.25 or 1.0)
    ax.set_xlabel(f"{metric}" + (" (95% CI)" if err.any() else ""))
    ax.grid(axis="x", alpha=0.3)
    where = {", ".join(str(r[k]) for k in ("dataset", "split") if r.get(k)) for r in rows}
    ax.set_title(title or (f"{metric}: {where.pop()}" if len(where) == 1 else metric), fontsize="medium")
    if deciles:
        ax2 = axes[1]
        head = _group_head(deciles)
        for lab, r in zip(_row_labels(deciles), deciles):
            groups = r["groups"]["activity"]
            ys = [np.nan if g.get(head) is None else float(g[head]) for g in groups]
            ax2.plot(range(1, len(groups) + 1), ys, marker="o", label=lab)
        first = deciles[0]["groups"]["activity"]
        ax2.set_xticks(range(1, len(first) + 1), [str(g["group"]) for g in first], fontsize="small")
        ax2.set_xlabel("activity decile (d1: fewest training items per user)")
        ax2.set_ylabel(head)
        ax2.set_title(f"{head} by activity decile", fontsize="medium")
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize="small")
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
