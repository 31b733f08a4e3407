"""Explanations of search hits and similar items (`explain=True`): the channels that proposed
the item with each channel's raw score and rank, the query terms it matched, the user's
profile cosine when the search was personalised, and for similar items the cosine and shared
categories. (Recommendations are explained by the pipeline: `lmrec.rerank.explain`.)
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from lmrec.serving.keyword import mixed_tokenize
from lmrec.stores.records import ItemRecord

if TYPE_CHECKING:
    from lmrec.serving.catalog import Catalog

__all__ = ["search_hit", "similar_hit", "digest"]


def digest(text: str) -> str:
    """A short hash of a query: rankings and logs carry it instead of the raw text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _channels(hit: dict[str, Any]) -> dict[str, Any]:
    return {"channels": list(hit["sources"]),
            "channel_scores": {k: round(v, 6) for k, v in hit["channel_scores"].items()},
            "channel_ranks": dict(hit["channel_ranks"])}


def search_hit(catalog: Catalog, hit: dict[str, Any], query: str) -> dict[str, Any]:
    """Why a hit matched `query`: channels, matched terms, profile cosine when personalised."""
    out = _channels(hit)
    terms = set(mixed_tokenize(query))
    out["matched_terms"] = sorted(terms.intersection(mixed_tokenize(catalog.text(hit["slot"]))))
    cos = hit.get("profile_cosine")
    out["profile_cosine"] = round(cos, 6) if cos is not None else None
    return out


def similar_hit(catalog: Catalog, hit: dict[str, Any], source: ItemRecord) -> dict[str, Any]:
    """Why a hit is similar to `source`: the cosine of their vectors and shared categories."""
    rec = catalog.record(hit["slot"])
    return {**_channels(hit), "cosine": round(hit["score"], 6),
            "shared_categories": [c for c in rec.categories if c in set(source.categories)]}
