"""A/B experiments: two saved pipeline versions served side by side to hashed user buckets,
and the ranking log joined with the clicks and purchases that followed.

- Assignment: a user is in variant B when the first 64 bits of sha256("<experiment>\\0<user>")
  read as a fraction of 2^64 are below `split`, else in A: deterministic (the same user always
  sees the same variant of an experiment, across requests, processes and restarts) and
  independent between experiments with different names.
- Serving: both versions are loaded from their folders, caught up with the catalog and the
  events since their fit, and every later event and item change is folded into both, as into
  the served version. `/recommend/{user}` serves the user's variant; each ranking is logged
  with its `ranking_id`, `experiment` and `variant` (context of the ranking log). Sessions,
  search and similar items stay on the served version.
- Report (`report`): a click or purchase counts for a ranking of the experiment when the event
  carries that `ranking_id` and names one of its items; an event without `ranking_id` counts
  for the latest ranking of the same user that listed the item and was served at most
  `window_s` seconds before the event (event time, or the server's time when the event was
  posted without one). Per variant: rankings, users, CTR (share of rankings with at least one
  click on a listed item) and conversion (share with at least one purchase), with Wilson score
  intervals; the difference B - A with Newcombe's hybrid score interval. Rankings of one user
  are counted as independent trials, which makes the intervals somewhat narrow for users with
  many rankings.

The experiment is kept in `<home>/experiment.json`, so a restarted service serves it again; a
stopped one stays there (with `stopped_at`) for its report until the next one starts.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lmrec.stores.records import EventRecord, RankingRecord

__all__ = ["Experiment", "RunningExperiment", "EXPERIMENT_FILE", "wilson", "newcombe", "report",
           "save_experiment", "load_experiment", "CLICK_KINDS", "CONVERSION_KINDS"]

EXPERIMENT_FILE = "experiment.json"
CLICK_KINDS = ("click",)
CONVERSION_KINDS = ("purchase",)
Z95 = 1.959963984540054


@dataclass
class Experiment:
    """Two versions (`a`, `b`) served to `1 - split` and `split` of the users."""

    name: str
    a: str
    b: str
    split: float = 0.5
    started_at: float = 0.0
    start_seq: int = 0
    stopped_at: float | None = None

    def __post_init__(self) -> None:
        for key in ("name", "a", "b"):
            v = getattr(self, key)
            if not isinstance(v, str) or not v.strip() or "/" in v or v != v.strip():
                raise ValueError(f"{key}: must be a non-empty id without '/' or surrounding spaces, got {v!r}")
        if self.a == self.b:
            raise ValueError(f"b: must be another version than a ({self.a!r})")
        if isinstance(self.split, bool) or not isinstance(self.split, (int, float)) \
                or not 0.0 < float(self.split) < 1.0:
            raise ValueError(f"split: the share of users in B must be between 0 and 1 (exclusive), got {self.split!r}")

    def variant(self, user_id: str) -> str:
        """"A" or "B" for this user (see the module docstring)."""
        digest = hashlib.sha256(f"{self.name}\0{user_id}".encode()).digest()
        return "B" if int.from_bytes(digest[:8], "big") / 2.0**64 < self.split else "A"

    @property
    def running(self) -> bool:
        return self.stopped_at is None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunningExperiment:
    """An experiment with its two loaded versions (`lmrec.serving.versions.Version`)."""

    experiment: Experiment
    versions: dict[str, Any]

    def assign(self, user_id: str) -> tuple[str, Any]:
        v = self.experiment.variant(user_id)
        return v, self.versions[v]


def save_experiment(home: Path, exp: Experiment) -> None:
    path = Path(home) / EXPERIMENT_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(exp.to_json(), indent=1), encoding="utf-8")
    tmp.replace(path)


def load_experiment(home: Path) -> Experiment | None:
    path = Path(home) / EXPERIMENT_FILE
    if not path.is_file():
        return None
    return Experiment(**json.loads(path.read_text(encoding="utf-8")))


# ---- intervals ------------------------------------------------------------------------------
def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ((0, 1) when n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(x_a: int, n_a: int, x_b: int, n_b: int, z: float = Z95) -> tuple[float, float, float]:
    """p_B - p_A and its interval by Newcombe's hybrid score method (from the two Wilson
    intervals): (difference, low, high)."""
    p_a, p_b = x_a / n_a if n_a else 0.0, x_b / n_b if n_b else 0.0
    la, ua = wilson(x_a, n_a, z)
    lb, ub = wilson(x_b, n_b, z)
    d = p_b - p_a
    return d, d - math.sqrt((p_b - lb) ** 2 + (ua - p_a) ** 2), d + math.sqrt((ub - p_b) ** 2 + (p_a - la) ** 2)


# ---- the report -----------------------------------------------------------------------------
def report(exp: Experiment, rankings: Iterable[RankingRecord], events: Iterable[EventRecord], *,
           window_s: float = 3600.0) -> dict[str, Any]:
    """CTR and conversion per variant with intervals, and B - A (see the module docstring).
    `rankings`: the ranking log since the experiment started; `events`: the events since."""
    mine: dict[str, RankingRecord] = {}
    for r in rankings:
        ctx = r.context or {}
        if ctx.get("experiment") == exp.name and ctx.get("variant") in ("A", "B") \
                and r.created_at >= exp.started_at and (exp.stopped_at is None or r.created_at <= exp.stopped_at):
            mine[r.ranking_id] = r
    by_user: dict[str, list[RankingRecord]] = {}
    for r in sorted(mine.values(), key=lambda r: (r.created_at, r.ranking_id)):
        if r.user_id is not None:
            by_user.setdefault(r.user_id, []).append(r)
    clicked: set[str] = set()
    bought: set[str] = set()
    n_clicks = {"A": 0, "B": 0}
    n_purchases = {"A": 0, "B": 0}
    by_id = by_window = 0
    for e in events:
        if e.kind not in CLICK_KINDS and e.kind not in CONVERSION_KINDS:
            continue
        hit: RankingRecord | None = None
        if e.ranking_id is not None:
            r = mine.get(e.ranking_id)
            if r is not None and e.item_id in r.item_ids:
                hit, by_id = r, by_id + 1
        else:
            for r in reversed(by_user.get(e.user_id, [])):
                if r.created_at <= e.timestamp <= r.created_at + window_s and e.item_id in r.item_ids:
                    hit, by_window = r, by_window + 1
                    break
        if hit is None:
            continue
        variant = hit.context["variant"]
        if e.kind in CLICK_KINDS:
            clicked.add(hit.ranking_id)
            n_clicks[variant] += 1
        else:
            bought.add(hit.ranking_id)
            n_purchases[variant] += 1
    variants: dict[str, Any] = {}
    counts: dict[str, tuple[int, int, int]] = {}
    for v, version in (("A", exp.a), ("B", exp.b)):
        ids = [rid for rid, r in mine.items() if r.context["variant"] == v]
        n = len(ids)
        c = sum(1 for rid in ids if rid in clicked)
        p = sum(1 for rid in ids if rid in bought)
        counts[v] = (n, c, p)
        variants[v] = {"version": version, "rankings": n,
                       "users": len({mine[rid].user_id for rid in ids}),
                       "clicks": n_clicks[v], "purchases": n_purchases[v],
                       "ctr": _rate(c, n), "conversion": _rate(p, n)}
    (na, ca, pa), (nb, cb, pb) = counts["A"], counts["B"]
    diff = {}
    for key, xa, xb in (("ctr", ca, cb), ("conversion", pa, pb)):
        if na and nb:
            d, lo, hi = newcombe(xa, na, xb, nb)
            diff[key] = {"value": round(d, 6), "ci_low": round(lo, 6), "ci_high": round(hi, 6)}
        else:
            diff[key] = None
    return {"experiment": exp.to_json(), "running": exp.running, "window_s": window_s, "confidence": 0.95,
            "variants": variants, "difference_b_minus_a": diff,
            "joined_events": {"by_ranking_id": by_id, "by_user_and_window": by_window}}


def _rate(x: int, n: int) -> dict[str, Any]:
    lo, hi = wilson(x, n)
    return {"rankings_with": x, "value": round(x / n, 6) if n else None,
            "ci_low": round(lo, 6) if n else None, "ci_high": round(hi, 6) if n else None}
