"""Re-ranking: business filters, diversity, exploration and explanations, on top of the
ranked candidates. Every stage is built by name from `RERANKERS` (see `lmrec.rerank.base`)."""

from lmrec.rerank.base import RERANKERS, Filter, Reranker, StageContext
from lmrec.rerank.explain import Explainer

__all__ = ["RERANKERS", "Filter", "Reranker", "StageContext", "Explainer"]
