"""Re-ranking: business filters, diversity, exploration and explanations, on top of the
ranked candidates. Every stage is built by name from `RERANKERS` (see `lmrec.rerank.base`)."""

from lmrec.component import RERANKERS
from lmrec.rerank.base import Filter, Reranker, StageContext
from lmrec.rerank.explain import Explainer

__all__ = ["RERANKERS", "Filter", "Reranker", "StageContext", "Explainer"]
