"""`FaqAnswerer`: a new question -> the stored answer of the most similar stored question, or a
hand-over to a person when the match is not confident enough.

Stored entries are (entry id, one or more question wordings, answer, intent). Every wording is
indexed as one document of a `lmrec.recall` retriever over the stored *questions* (BM25, dense,
or their reciprocal-rank-fusion hybrid), optionally followed by a pairwise re-ranker (a trained
cross-encoder, `lmrec.text.cross_encoder.CrossEncoderModel`, or any `PairScorer`) on the top
`top_n`. The best wording of each entry represents it; the top entry gives the answer and the intent.

Confidence (what the abstain threshold compares against) comes from the most semantic stage's
score: the re-ranker's when there is one, else the dense cosine, else BM25. `confidence="margin"`
(default) uses the best entry's score minus the best score of an entry with another intent (a
question close to two intents is ambiguous however high its score); `"score"` the best score
alone. `threshold=None` never abstains; `lmrec.faq.calibrate` picks one on validation questions.

Entries can be added, replaced and removed while serving (`upsert`, `remove`): the next question
sees the change. Calls are serialised by a lock (retrievers rebuild lazily inside a query).

Example:
    >>> from lmrec.text.base import FakeEncoder
    >>> faq = FaqAnswerer(FakeEncoder()).fit([
    ...     FaqEntry("ship", ("how long does shipping take", "when will my parcel arrive"), "3-5 days.", "delivery"),
    ...     FaqEntry("ret", ("how do I return an item",), "Within 30 days.", "returns")])
    >>> a = faq.answer("when does my parcel arrive")
    >>> a.intent, a.answer, a.abstained
    ('delivery', '3-5 days.', False)
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Literal, Sequence

import numpy as np

from lmrec.recall.bm25 import _CJK, _CJK_RUN, BM25Retriever, english_tokenizer
from lmrec.recall.hybrid import HybridRetriever
from lmrec.recall.search import DenseRetriever, PairScorer, RerankRetriever, Retriever
from lmrec.text.base import TextEncoder
from lmrec.types import Candidates

__all__ = ["FaqEntry", "FaqMatch", "FaqAnswer", "FaqAnswerer", "mixed_tokenizer", "MAX_QUESTION_CHARS"]

#: the longest question the answerer reads (longer ones are cut; the service answers 422 above it)
MAX_QUESTION_CHARS = 512


@dataclass(frozen=True)
class FaqEntry:
    """One stored answer with the question wordings that lead to it."""

    entry_id: str
    questions: tuple[str, ...]
    answer: str
    intent: str = ""
    language: str = ""

    def __post_init__(self) -> None:
        qs = (self.questions,) if isinstance(self.questions, str) else tuple(self.questions)
        qs = tuple(q.strip() for q in qs if str(q).strip())
        if not str(self.entry_id).strip():
            raise ValueError("entry_id is empty")
        if not qs:
            raise ValueError(f"entry {self.entry_id!r}: at least one non-empty question is needed")
        if not str(self.answer).strip():
            raise ValueError(f"entry {self.entry_id!r}: the answer is empty")
        object.__setattr__(self, "questions", qs)

    @property
    def intent_key(self) -> str:
        """The intent, or the entry id when it has none (each entry is then its own intent)."""
        return self.intent or f"entry:{self.entry_id}"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["questions"] = list(self.questions)
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FaqEntry:
        qs = d.get("questions", d.get("question", ()))
        return cls(str(d["entry_id"]), tuple([qs] if isinstance(qs, str) else qs), str(d["answer"]),
                   str(d.get("intent") or ""), str(d.get("language") or ""))


@dataclass
class FaqMatch:
    """A stored entry matched by a question: `question` is its best-matching wording, `score` the
    final ranking score, `similarity` the confidence stage's score."""

    entry_id: str
    question: str
    answer: str
    intent: str
    score: float
    similarity: float


@dataclass
class FaqAnswer:
    """The answer to one question: `best` is None when nothing matched; `abstained` when the
    confidence is under the threshold (hand over to a person: `answer` is then None)."""

    query: str
    best: FaqMatch | None
    confidence: float
    threshold: float | None
    abstained: bool
    alternatives: list[FaqMatch] = field(default_factory=list)

    @property
    def answer(self) -> str | None:
        return None if self.abstained or self.best is None else self.best.answer

    @property
    def intent(self) -> str | None:
        return None if self.best is None else self.best.intent


def mixed_tokenizer(stem: bool = True) -> Any:
    """BM25 tokens for English, Chinese and mixed text: each CJK character and adjacent pair, and
    the other words through the English tokenizer (lower-case, stop words out, stemmed)."""
    english = english_tokenizer(stem)

    def tokenize(text: str) -> list[str]:
        out: list[str] = []
        words: list[str] = []
        for run in _CJK_RUN.findall(text.lower()):
            if _CJK.match(run):
                out.extend(run)
                out.extend(run[i:i + 2] for i in range(len(run) - 1))
            else:
                words.append(run)
        if words:
            out.extend(english(" ".join(words)))
        return out

    return tokenize


class FaqAnswerer:
    """See the module docstring. `retrieval`: "hybrid" (BM25 + dense, RRF), "dense" or "bm25"
    (no encoder needed); `depth`: question wordings retrieved per channel; `reranker` re-scores
    the top `top_n` (blended with the first stage by `mix`)."""

    def __init__(self, encoder: TextEncoder | None = None, *,
                 retrieval: Literal["hybrid", "dense", "bm25"] = "hybrid", reranker: PairScorer | None = None,
                 top_n: int = 20, mix: float = 0.0, depth: int = 50, k_rrf: float = 60.0,
                 threshold: float | None = None, confidence: Literal["margin", "score"] = "margin",
                 tokenizer: Any = "mixed") -> None:
        if retrieval not in ("hybrid", "dense", "bm25"):
            raise ValueError(f"retrieval must be hybrid, dense or bm25, got {retrieval!r}")
        if retrieval != "bm25" and encoder is None:
            raise ValueError(f"retrieval {retrieval!r} needs an encoder")
        if confidence not in ("margin", "score"):
            raise ValueError(f"confidence must be 'margin' or 'score', got {confidence!r}")
        self.encoder, self.retrieval, self.reranker = encoder, retrieval, reranker
        self.top_n, self.depth, self.threshold, self.confidence = top_n, depth, threshold, confidence
        bm25 = BM25Retriever(mixed_tokenizer() if tokenizer == "mixed" else tokenizer)
        dense = DenseRetriever(encoder) if encoder is not None else None
        first: Retriever
        if retrieval == "hybrid":
            assert dense is not None
            first = HybridRetriever(bm25, dense, "rrf", k_rrf=k_rrf, depth=depth)
        else:
            first = dense if retrieval == "dense" else bm25  # type: ignore[assignment]
        # the stage whose score is the confidence: the re-ranker, else dense, else BM25
        self._confidence_stage = (reranker.name if reranker is not None
                                  else dense.name if dense is not None and retrieval != "bm25" else bm25.name)
        self.retriever: Retriever = (RerankRetriever(first, reranker, top_n, mix=mix) if reranker is not None
                                     else first)
        self.name = f"faq:{retrieval}" + (f"+{reranker.name}" if reranker is not None else "")
        self._entries: dict[str, FaqEntry] = {}
        self._units: dict[str, list[int]] = {}     # entry id -> indexed question units
        self._unit_entry: dict[int, str] = {}
        self._next_unit = 0
        self._lock = threading.RLock()

    # ---- the stored entries ---------------------------------------------------------------------
    def fit(self, entries: Iterable[FaqEntry]) -> FaqAnswerer:
        """Index `entries` (replacing what was stored); an id given twice: the last one wins."""
        with self._lock:
            self._entries = {e.entry_id: e for e in entries}
            self._units, self._unit_entry, self._next_unit = {}, {}, 0
            texts, ids = [], []
            for e in self._entries.values():
                units = self._new_units(e)
                texts += list(e.questions)
                ids += units
            self.retriever.fit(texts, np.asarray(ids, np.int64))
            return self

    def _new_units(self, e: FaqEntry) -> list[int]:
        units = list(range(self._next_unit, self._next_unit + len(e.questions)))
        self._next_unit += len(units)
        self._units[e.entry_id] = units
        self._unit_entry.update({u: e.entry_id for u in units})
        return units

    def upsert(self, entry: FaqEntry) -> None:
        """Add an entry, or replace the stored one with the same id: answered from the next question on."""
        with self._lock:
            self.remove(entry.entry_id, missing_ok=True)
            self._entries[entry.entry_id] = entry
            for u, q in zip(self._new_units(entry), entry.questions):
                self.retriever.add(u, q)

    def remove(self, entry_id: str, *, missing_ok: bool = False) -> bool:
        """Stop answering with an entry; False (or KeyError unless `missing_ok`) when it is not stored."""
        with self._lock:
            if entry_id not in self._entries:
                if missing_ok:
                    return False
                raise KeyError(f"FAQ entry {entry_id!r} is not stored")
            del self._entries[entry_id]
            for u in self._units.pop(entry_id):
                self.retriever.remove(u)
                del self._unit_entry[u]
            return True

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._entries

    def get(self, entry_id: str) -> FaqEntry | None:
        return self._entries.get(entry_id)

    @property
    def entries(self) -> list[FaqEntry]:
        with self._lock:
            return list(self._entries.values())

    # ---- answering --------------------------------------------------------------------------------
    def _matches(self, c: Candidates, k: int) -> list[FaqMatch]:
        sim = c.stage_scores.get(self._confidence_stage, c.scores)
        out: list[FaqMatch] = []
        seen: set[str] = set()
        for n, unit in enumerate(c.items):
            entry_id = self._unit_entry.get(int(unit))
            if entry_id is None or entry_id in seen:
                continue
            seen.add(entry_id)
            e = self._entries[entry_id]
            out.append(FaqMatch(entry_id, self.retriever.texts[int(unit)], e.answer, e.intent, float(c.scores[n]),
                                float(sim[n])))
            if len(out) >= k:
                break
        return out

    def rank_batch(self, queries: Sequence[str], k: int = 10) -> list[list[FaqMatch]]:
        """The top-k stored entries (best wording each) for each question, best first."""
        queries = [str(q)[:MAX_QUESTION_CHARS] for q in queries]
        with self._lock:
            if not self._entries:
                return [[] for _ in queries]
            want = max(k * 3, self.depth, self.top_n if self.reranker is not None else 0)
            found = self.retriever.batch(queries, want)
            return [self._matches(c, max(k, 1)) for c in found]

    def confidence_of(self, matches: Sequence[FaqMatch]) -> float:
        """The confidence of answering with `matches[0]` (see the module docstring); -inf when empty."""
        sims = [m.similarity for m in matches if np.isfinite(m.similarity)]
        if not matches or not np.isfinite(matches[0].similarity):
            return float("-inf")
        top = matches[0].similarity
        if self.confidence == "score":
            return float(top)
        key = self._entries[matches[0].entry_id].intent_key if matches[0].entry_id in self._entries else ""
        other = [m.similarity for m in matches[1:] if np.isfinite(m.similarity)
                 and (self._entries[m.entry_id].intent_key if m.entry_id in self._entries else "") != key]
        # no rival intent among the scored matches: measure against the lowest score seen
        rival = max(other) if other else (min(sims) if len(sims) > 1 else 0.0)
        return float(top - rival)

    def answer_batch(self, queries: Sequence[str], k: int = 5, *, depth: int = 20) -> list[FaqAnswer]:
        """`answer(q, k)` for each question (retrieval batched)."""
        out = []
        for q, matches in zip(queries, self.rank_batch(queries, max(k, depth))):
            conf = self.confidence_of(matches)
            abstain = not matches or (self.threshold is not None and conf < self.threshold)
            out.append(FaqAnswer(q, matches[0] if matches else None, conf, self.threshold, bool(abstain),
                                 matches[1:k]))
        return out

    def answer(self, query: str, k: int = 5) -> FaqAnswer:
        """The best stored answer for `query` with up to k - 1 alternatives; abstains (answer
        None) when the confidence is under `threshold`."""
        return self.answer_batch([query], k)[0]
