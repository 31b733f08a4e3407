"""The service's FAQ: `GET /faq?q=...` answers a customer question from stored entries, or abstains
("hand over to a person"); `PUT` / `DELETE /admin/faq/{entry_id}` edit the entries live.

The entries live in `<home>/faq.json` (`{"threshold": float | null, "confidence": "margin" |
"score", "entries": [{"entry_id", "questions", "answer", "intent", "language"}]}`), written
atomically on every edit, and are answered by a `lmrec.faq.FaqAnswerer` (BM25 + dense hybrid over
the stored question wordings) built on the engine's own encoder, on first use. `lmrec demo` seeds
the file with the demo shop's bilingual FAQ (`lmrec/serving/data/demo_faq.json`).
"""

# no `from __future__ import annotations`: the routes' annotations name local types FastAPI must resolve
import json
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Annotated

import numpy as np

from lmrec.faq import FaqAnswer, FaqAnswerer, FaqEntry

__all__ = ["ServedFaq", "served_faq", "seed_demo_faq", "DEMO_FAQ_PATH", "FAQ_FILE", "add_faq_routes"]

FAQ_FILE = "faq.json"
DEMO_FAQ_PATH = Path(__file__).parent / "data" / "demo_faq.json"


class _EngineEncoder:
    """The engine's encoders (`EngineEncoders`) as a `TextEncoder` (its query LRU and locks apply)."""

    def __init__(self, encoders: Any) -> None:
        self._enc = encoders
        self.name, self.dim = f"engine:{encoders.name}", int(encoders.dim)

    def encode_queries(self, texts: Any, *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._enc.encode_query(t) for t in texts])

    def encode_items(self, texts: Any, *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self._enc.encode_items(list(texts))


class ServedFaq:
    """The FAQ of one engine home: entries from `<home>/faq.json`, answered by a hybrid answerer."""

    def __init__(self, engine: Any, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else Path(engine.config.home) / FAQ_FILE
        doc = read_faq_file(self.path) if self.path.is_file() else {}
        self.answerer = FaqAnswerer(_EngineEncoder(engine.encoders), retrieval="hybrid",
                                    threshold=doc.get("threshold"), confidence=doc.get("confidence", "margin"))
        self.answerer.fit(FaqEntry.from_json(e) for e in doc.get("entries", []))
        self._lock = threading.Lock()

    def answer(self, query: str, k: int = 3) -> tuple[FaqAnswer, dict[str, float]]:
        t0 = time.perf_counter()
        a = self.answerer.answer(query, k)
        return a, {"total": round((time.perf_counter() - t0) * 1000, 3)}

    def upsert(self, entry: FaqEntry) -> None:
        with self._lock:
            self.answerer.upsert(entry)
            self._save()

    def delete(self, entry_id: str) -> bool:
        with self._lock:
            found = self.answerer.remove(entry_id, missing_ok=True)
            if found:
                self._save()
            return found

    def _save(self) -> None:
        doc = {"threshold": self.answerer.threshold, "confidence": self.answerer.confidence,
               "entries": [e.to_json() for e in self.answerer.entries]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)


def read_faq_file(path: Path) -> dict[str, Any]:
    """A faq.json document, checked: ValueError naming the file and the problem."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or not isinstance(doc.get("entries", []), list):
            raise ValueError("expected an object with an 'entries' list")
        for e in doc.get("entries", []):
            FaqEntry.from_json(e)
        th = doc.get("threshold")
        if th is not None and not isinstance(th, (int, float)):
            raise ValueError(f"threshold must be a number or null, got {th!r}")
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a valid FAQ file ({type(e).__name__}: {e})") from None
    return doc


_SERVED: weakref.WeakKeyDictionary[Any, ServedFaq] = weakref.WeakKeyDictionary()
_SERVED_LOCK = threading.Lock()


def served_faq(engine: Any) -> ServedFaq:
    """The engine's FAQ, loaded on first use (one per engine)."""
    with _SERVED_LOCK:
        faq = _SERVED.get(engine)
        if faq is None:
            faq = _SERVED[engine] = ServedFaq(engine)
        return faq


def seed_demo_faq(home: Path) -> bool:
    """Copy the demo shop's FAQ to `<home>/faq.json` unless the home has one; True when copied."""
    target = Path(home) / FAQ_FILE
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(DEMO_FAQ_PATH.read_bytes())
    return True


# ---- routes ----------------------------------------------------------------------------------------
def add_faq_routes(app: Any, st: Any) -> None:
    """GET /faq (read scope); GET /admin/faq, PUT and DELETE /admin/faq/{entry_id} (admin scope)."""
    from fastapi import Path as PathParam
    from fastapi import Query, Response
    from pydantic import AfterValidator

    from lmrec.serving import schemas as s
    from lmrec.serving.app import _ERRORS, _BODY_ERRORS, Admin, ApiError, Engine, Read, _invalid, _ranked

    EntryId = Annotated[str, PathParam(min_length=1, max_length=s.MAX_ID_LEN, json_schema_extra={"pattern": s.ID_PATTERN}),
                        AfterValidator(s.check_id_text)]

    def _match(m: Any) -> s.FaqMatchOut:
        return s.FaqMatchOut(entry_id=m.entry_id, question=m.question, answer=m.answer, intent=m.intent or None,
                             score=float(m.score))

    @app.get("/faq", response_model=s.FaqOut, tags=["faq"], dependencies=[Read], responses=_ERRORS)
    async def faq(engine: Engine,
                  q: Annotated[str, Query(min_length=1, max_length=s.MAX_FAQ_QUESTION_LEN,
                                          json_schema_extra={"pattern": s.FAQ_TEXT_PATTERN},
                                          description="the customer's question (any language the encoder knows)")],
                  k: Annotated[int, Query(ge=1, le=s.MAX_FAQ_K, description="the answer and up to k - 1 "
                                          "alternatives")] = 3) -> Response:
        """Answer a customer question from the stored FAQ entries: the best entry's answer and
        intent, the matched stored question and alternatives; `abstained: true` and no answer
        when the confidence is under the threshold (hand the question to a person)."""
        if not q.strip():
            raise _invalid(["query", "q"], "the question is blank")
        if "\x00" in q:
            raise _invalid(["query", "q"], "must not contain NUL characters (U+0000)")
        served = served_faq(engine)
        a, timings = await _ranked(st, served.answer, q, k)
        st.metrics.observe_stages("faq", timings)
        best = a.best
        conf = float(a.confidence) if np.isfinite(a.confidence) else None
        body = s.FaqOut(query=q, abstained=a.abstained, answer=a.answer, intent=(a.intent or None),
                        entry_id=best.entry_id if best else None, matched_question=best.question if best else None,
                        score=conf, threshold=a.threshold, alternatives=[_match(m) for m in a.alternatives],
                        timings_ms=timings)
        return Response(body.model_dump_json(), media_type="application/json")

    @app.get("/admin/faq", response_model=s.FaqListOut, tags=["faq"], dependencies=[Admin], responses=_ERRORS)
    def list_faq(engine: Engine) -> s.FaqListOut:
        """Every stored FAQ entry and the abstain threshold."""
        served = served_faq(engine)
        entries = [s.FaqEntryOut(**e.to_json()) for e in served.answerer.entries]
        return s.FaqListOut(entries=entries, threshold=served.answerer.threshold, total=len(entries))

    @app.put("/admin/faq/{entry_id}", response_model=s.FaqEntryOut, tags=["faq"], dependencies=[Admin],
             responses=_BODY_ERRORS)
    def put_faq(entry_id: EntryId, entry: s.FaqEntryIn, engine: Engine) -> s.FaqEntryOut:
        """Create or replace an FAQ entry: answered from the next question on."""
        e = FaqEntry(entry_id, tuple(entry.questions), entry.answer, entry.intent, entry.language)
        served_faq(engine).upsert(e)
        return s.FaqEntryOut(**e.to_json())

    @app.delete("/admin/faq/{entry_id}", response_model=s.Deleted, tags=["faq"], dependencies=[Admin],
                responses={**_ERRORS, 404: {"model": s.ErrorOut}})
    def delete_faq(entry_id: EntryId, engine: Engine) -> s.Deleted:
        """Remove an FAQ entry (404 when it is not stored)."""
        if not served_faq(engine).delete(entry_id):
            raise ApiError(404, "not_found", f"FAQ entry {entry_id!r} is not stored")
        return s.Deleted(deleted=True)
