"""Explanations attached to ranked items when a request asks for them (`explain=True`).

They are computed from the same state the ranking used, after ranking, and only for the k
returned items: the channels that proposed the item (with each channel's raw score and rank),
the history item whose vector matches the recommended item best (id, title, cosine), the
categories the item shares with the user's recent items, and for search the query terms that
matched and each channel's score.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lmrec.serving.keyword import mixed_tokenize
from lmrec.serving.merge import Fused
from lmrec.stores.records import ItemRecord

if TYPE_CHECKING:
    from lmrec.serving.catalog import Catalog

__all__ = ["recommendation", "search_hit", "similar_hit", "digest"]


def digest(text: str) -> str:
    """A short hash of a query: rankings and logs carry it instead of the raw text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _channels(f: Fused) -> dict[str, Any]:
    return {"channels": list(f.sources),
            "channel_scores": {k: round(v, 6) for k, v in f.channel_scores.items()},
            "channel_ranks": dict(f.channel_ranks)}


def recommendation(catalog: Catalog, f: Fused, history: Sequence[tuple[Any, ...]],
                   profile: np.ndarray | None) -> dict[str, Any]:
    """Why `f` was recommended to a user with this recent `history` ((item_id, kind, value,
    timestamp) tuples, most recent last) and profile vector."""
    out = _channels(f)
    vec = catalog.vector(f.slot)
    out["profile_cosine"] = round(float(vec @ profile), 6) if profile is not None else None
    recent = list(dict.fromkeys(h[0] for h in reversed(history)))  # most recent first, once each
    slots = [(item_id, s) for item_id in recent if (s := catalog.slot(item_id)) is not None and s != f.slot]
    because = None
    if slots:
        sims = catalog.vectors([s for _, s in slots]) @ vec
        j = int(np.argmax(sims))
        item_id, s = slots[j]
        because = {"item_id": item_id, "title": catalog.record(s).title, "cosine": round(float(sims[j]), 6)}
    out["because"] = because
    mine = catalog.record(f.slot).categories
    theirs = {c for _, s in slots for c in catalog.record(s).categories}
    out["shared_categories"] = [c for c in mine if c in theirs]
    return out


def search_hit(catalog: Catalog, f: Fused, query: str, personal: float | None) -> dict[str, Any]:
    """Why `f` matched `query`: channels, matched terms, profile cosine when personalised."""
    out = _channels(f)
    terms = set(mixed_tokenize(query))
    out["matched_terms"] = sorted(terms.intersection(mixed_tokenize(catalog.text(f.slot))))
    out["profile_cosine"] = round(personal, 6) if personal is not None else None
    return out


def similar_hit(catalog: Catalog, f: Fused, source: ItemRecord) -> dict[str, Any]:
    """Why `f` is similar to `source`: the cosine of their vectors and shared categories."""
    rec = catalog.record(f.slot)
    return {**_channels(f), "cosine": round(f.score, 6),
            "shared_categories": [c for c in rec.categories if c in set(source.categories)]}
