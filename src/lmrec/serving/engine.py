"""The in-process serving engine: recommendations, search and similar items in milliseconds,
real-time updates from events and item changes, versioned CF models with hot swap.

One `Engine` owns a record store (the durable truth: events, items, users, rankings), a hot
user-state store (recent history per user), the live catalog (item vectors in a vector index,
BM25 over item texts) and the online state folded in from events (LM profile vectors, seen
sets, decayed popularity). `Engine.open` rebuilds the online state by replaying the store's
event log through the very code `ingest` runs, so a restart serves what the engine served
before it stopped.

Requests:
- `recommend`: channels "lm" (the user's recency-weighted profile vector -> vector index),
  "cf" (the loaded model version, when there is one) and "popular" (time-decayed popularity;
  for new users and histories shorter than `fallback_min_history`), fused with weighted
  reciprocal rank fusion (`lmrec.serving.merge`), consumed and unavailable items filtered,
  topped up with popular then newest items so a list is never short while items remain.
- `search`: BM25 (`lmrec.serving.keyword`) and dense retrieval fused with RRF; with a user,
  each candidate gains `personal_weight * cos(profile, item) / (k_rrf + 1)`, i.e. a perfect
  profile match is worth `personal_weight` times a first place in one channel (0.3 by
  default: a nudge between close candidates, never enough to override a clear text match).
- `similar`: the item's vector -> vector index neighbours, without the item itself.

Concurrency: reads hold the shared side of a readers-writer lock and never wait for each
other; writes are serialised by a writer mutex and do their slow parts (store commit, text
encoding, training) before taking the exclusive side for the in-memory update, which is
short. Models are swapped by replacing one reference: a request reads it once and keeps the
version it started with. Rankings are logged to the store by a background thread so that
serving never waits for a commit (a crash can lose the last few ranking logs, never events).

Example:
    >>> import tempfile
    >>> from lmrec.stores.records import EventRecord, ItemRecord
    >>> eng = Engine.open(EngineConfig(home=tempfile.mkdtemp(), encoder="fake", index="flat", gc_freeze=False))
    >>> eng.upsert_items([ItemRecord("1", title="trail running shoes"), ItemRecord("2", title="chef knife"),
    ...                   ItemRecord("3", title="road running shoes")])
    >>> eng.search("running shoes", k=1).items[0].item_id
    '1'
    >>> eng.ingest([EventRecord("u1", "1", "purchase")])
    [1]
    >>> [(i.item_id, i.sources) for i in eng.recommend("u1", k=2).items]
    [('3', ('lm',)), ('2', ('lm',))]
    >>> eng.close()
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from lmrec.serving import explain as _explain
from lmrec.serving.catalog import Catalog, PreparedItems, item_texts, load_saved
from lmrec.serving.cf import CFModel, events_dataset, list_versions, load_version, train_version
from lmrec.serving.encoders import EngineEncoders
from lmrec.serving.engine_config import CHANNELS, EngineConfig
from lmrec.serving.merge import Fused, rrf_merge
from lmrec.serving.profiles import Popularity, UserProfiles
from lmrec.serving.ranking import RankedItem, Ranking, RankingLog, StageTimer
from lmrec.serving.rwlock import RWLock
from lmrec.stores.base import blas_threads
from lmrec.stores.records import (EventRecord, ItemRecord, RankingRecord, UserRecord, check_event,
                                  check_item, check_user)

__all__ = ["BASE_VERSION", "CHANNELS", "Engine", "EngineConfig", "RankedItem", "Ranking"]

log = logging.getLogger(__name__)

#: `Ranking.model_version` while no CF model version is loaded (LM and popularity channels only)
BASE_VERSION = "lm-only"


class _BlasLimit:
    """BLAS capped at n threads while any engine is open. The cap is process-wide (so it is set
    once at open, not per request: threadpoolctl costs ~0.2 ms a call) and reference-counted,
    so engines closing in any order restore the original setting exactly once, at the last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._ctx: AbstractContextManager[Any] | None = None

    def acquire(self, n: int | None) -> bool:
        if n is None:
            return False
        with self._lock:
            if self._users == 0:
                self._ctx = blas_threads(n)
                self._ctx.__enter__()
            self._users += 1
        return True

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._ctx is not None:
                self._ctx.__exit__(None, None, None)
                self._ctx = None


_BLAS = _BlasLimit()


class Engine:
    """See the module docstring. Create with `Engine.open(config)`; every method is safe to
    call from several threads at once."""

    def __init__(self, config: EngineConfig) -> None:  # use Engine.open
        self.config = config
        self.ready = False
        self._lock = RWLock()
        self._write = threading.Lock()     # one writer at a time: keeps store order = apply order
        self._train = threading.Lock()
        self._model: CFModel | None = None
        self._applied_seq = 0
        self._n_events = 0
        self._blas = False
        self._rankings: RankingLog | None = None
        self._closed = False
        self.index_source = ""  # "loaded" (saved index matched the catalog) or "built" at open

    # ==== lifecycle ===========================================================================
    @classmethod
    def open(cls, config: EngineConfig) -> Engine:
        """Open the store, load or build the catalog index, replay the event log, load the
        model version; `ready` is True when it returns."""
        from lmrec.stores.sql import open_store
        from lmrec.stores.state import open_user_state

        eng = cls(config)
        cfg = config
        cfg.home.mkdir(parents=True, exist_ok=True)
        eng._blas = _BLAS.acquire(cfg.blas_threads)
        try:
            eng.store = open_store(cfg.resolved_store_url())
            eng.user_state = open_user_state(cfg.user_state_url)
            eng.encoders = EngineEncoders(cfg.encoder, cfg.query_encoder, threads=cfg.encoder_threads,
                                          cache_dir=cfg.embedding_cache or cfg.home / "embeddings")
            eng.profiles = UserProfiles(eng.encoders.dim, cfg.half_life)
            eng.popularity = Popularity(cfg.popularity_half_life_s)
            eng.catalog = eng._new_catalog()
            eng._load_catalog()
            eng._replay()
            if cfg.load_model and (cfg.model_version or list_versions(eng.models_dir)):
                eng.reload(cfg.model_version)
            if cfg.log_rankings:
                eng._rankings = RankingLog(eng.store)
        except BaseException:
            eng._release()
            raise
        # the catalog, profiles and indexes are long-lived: keep the cyclic GC from re-scanning
        # them (a full collection over a 100k-item catalog is a latency spike of tens of ms)
        if cfg.gc_freeze:
            gc.collect()
            gc.freeze()
        eng.ready = True
        return eng

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def models_dir(self) -> Path:
        return self.config.home / "models"

    @property
    def index_dir(self) -> Path:
        return self.config.home / "index"

    def _new_catalog(self) -> Catalog:
        cfg = self.config
        params: dict[str, Any] = {"threads": 1}
        if cfg.index == "hnsw":
            params.update(M=cfg.hnsw_m, ef_construction=cfg.hnsw_ef_construction, ef_search=cfg.hnsw_ef_search)
        return Catalog(self.encoders.dim, index_kind=cfg.index, index_params=params, write_lock=self._lock.write,
                       bm25_rebuild_fraction=cfg.bm25_rebuild_fraction, bm25_rebuild_min=cfg.bm25_rebuild_min)

    def _index_extra(self) -> dict[str, Any]:
        """What the saved index depends on besides the items (ef_search is set after loading)."""
        cfg = self.config
        return {"encoder": self.encoders.name, "dim": self.encoders.dim, "index": cfg.index,
                "M": cfg.hnsw_m if cfg.index == "hnsw" else None,
                "ef_construction": cfg.hnsw_ef_construction if cfg.index == "hnsw" else None,
                "template": cfg.item_template}

    def _load_catalog(self) -> None:
        records = list(self.store.items())
        texts = item_texts(records, self.config.item_template)
        extra = self._index_extra()
        saved = load_saved(self.index_dir, records, texts, extra)
        if saved is not None:
            pos = {item_id: s for s, item_id in enumerate(saved.slots) if item_id is not None}
            vecs = saved.vectors[[pos[r.item_id] for r in records]] if records else saved.vectors[:0]
            if self.config.index == "hnsw":
                saved.index.ef_search = self.config.hnsw_ef_search  # type: ignore[attr-defined]
            self.catalog.build(PreparedItems(records, texts, vecs), slots=saved.slots, index=saved.index)
            self.index_source = "loaded"
            log.info("loaded the saved index of %d items from %s", len(records), self.index_dir)
            return
        self.index_source = "built"
        vecs = self.encoders.encode_items(texts, progress=self.config.progress)
        self.catalog.build(PreparedItems(records, texts, vecs), build_threads=self.config.index_build_threads)
        if records:
            self.catalog.save(self.index_dir, extra)

    def _replay(self) -> None:
        """Fold the whole event log into the online state (and the user-state store when it
        lives in this process)."""
        push = self.config.rebuild_user_state
        if push is None:
            push = self.config.user_state_url is None
        total = self.store.count_events()
        batch: list[EventRecord] = []
        bar = None
        if self.config.progress and total:
            from rich.progress import Progress

            bar = Progress(transient=True)
            bar.start()
            task = bar.add_task(f"replaying {total} events", total=total)
        try:
            for e in self.store.events(after_seq=0):
                batch.append(e)
                if len(batch) >= 10_000:
                    self._apply(batch, push)
                    if bar is not None:
                        bar.advance(task, len(batch))
                    batch = []
            self._apply(batch, push)
        finally:
            if bar is not None:
                bar.stop()

    def close(self) -> None:
        """Save the index if the catalog changed (and `save_index_on_close`), flush the ranking
        log, close the stores."""
        if self._closed:
            return
        self._closed = True
        self.ready = False
        self.catalog.keyword.wait()
        if self.config.save_index_on_close and self.catalog.dirty:
            with self._write, self._lock.read():
                try:
                    self.catalog.save(self.index_dir, self._index_extra())
                except OSError:
                    log.exception("could not save the index to %s; the next open rebuilds it", self.index_dir)
        self._release()

    def _release(self) -> None:
        if self._rankings is not None:
            self._rankings.close()
        for name in ("user_state", "store"):
            obj = getattr(self, name, None)
            closer = getattr(obj, "close", None)
            if closer is not None:
                try:
                    closer()
                except Exception:  # pragma: no cover - best effort at shutdown
                    log.exception("closing %s failed", name)
        if self._blas:
            _BLAS.release()
            self._blas = False

    # ==== writes ==============================================================================
    def ingest(self, events: Sequence[EventRecord]) -> list[int]:
        """Commit the events to the store, then fold them into the online state; returns their
        seqs. Events without a timestamp (0) get the current time. Invalid events raise
        ValueError naming `events[i].field` and nothing is committed."""
        now = time.time()
        checked = [_check_event(e, i, now) for i, e in enumerate(events)]
        if not checked:
            return []
        with self._write:
            seqs = list(self.store.append_events(checked))
            done = [dataclasses.replace(e, seq=s) for e, s in zip(checked, seqs)]
            if seqs and seqs[0] > self._applied_seq + 1:
                # another process wrote to the store: take its events first, in order
                done = [e for e in self.store.events(after_seq=self._applied_seq) if e.seq < seqs[0]] + done
            self._apply(done, push=True)
        return seqs

    def sync(self) -> int:
        """Fold in events other processes committed to a shared store; returns how many."""
        with self._write:
            new = list(self.store.events(after_seq=self._applied_seq))
            self._apply(new, push=True)
        return len(new)

    def _event_weight(self, e: EventRecord) -> float:
        if e.kind == "rating" and e.value < self.config.rating_threshold:
            return 0.0
        return float(self.config.kind_weights.get(e.kind, 0.0))

    def _apply(self, events: Sequence[EventRecord], push: bool) -> None:
        """Fold events into the user-state store and the in-memory state (writer lock held)."""
        if not events:
            return
        if push:
            n = self.config.history_len
            push_many = getattr(self.user_state, "push_many", None)
            rows = [(e.user_id, e.item_id, e.kind, float(e.value), float(e.timestamp)) for e in events]
            if push_many is not None:
                push_many(rows, maxlen=n)
            else:
                for r in rows:
                    self.user_state.push(*r, maxlen=n)
        seen_kinds = set(self.config.seen_kinds)
        with self._lock.write():
            for e in events:
                slot = self.catalog.slot(e.item_id)
                w = self._event_weight(e)
                vec = self.catalog.vector(slot) if slot is not None else None
                self.profiles.apply(e.user_id, slot, vec, weight=w, consumed=e.kind in seen_kinds)
                if slot is not None:
                    self.popularity.add(slot, w, e.timestamp)
                self._n_events += 1
                if e.seq is not None and e.seq > self._applied_seq:
                    self._applied_seq = e.seq

    def upsert_items(self, items: Sequence[ItemRecord]) -> None:
        """Embed, commit and index items: searchable and recommendable when this returns."""
        now = time.time()
        checked = [_check_item(r, i, now) for i, r in enumerate(items)]
        if not checked:
            return
        last = {r.item_id: r for r in checked}  # one call, one id twice: the last one wins
        checked = list(last.values())
        texts = item_texts(checked, self.config.item_template)
        with self._write:
            # an update keeps the item's creation time (as the store does)
            checked = [dataclasses.replace(r, created_at=prev.created_at if (prev := self.catalog.get(r.item_id))
                                           else r.created_at or now) for r in checked]
            vecs = self.encoders.encode_items(texts)   # before the commit: a failure leaves no trace
            self.store.upsert_items(checked)
            with self._lock.write():
                self.catalog.apply_upsert(PreparedItems(checked, texts, vecs))

    def delete_item(self, item_id: str) -> bool:
        """Delete from the store and everywhere in memory; True when the item existed."""
        _check_id(item_id, "item_id")
        with self._write:
            existed = bool(self.store.delete_item(item_id))
            with self._lock.write():
                slot = self.catalog.apply_delete(item_id)
                if slot is not None:
                    self.popularity.remove_item(slot)
        return existed or slot is not None

    def upsert_user(self, user: UserRecord) -> None:
        check_user(user)
        with self._write:
            self.store.upsert_user(user)
            with self._lock.write():
                self.profiles.touch(user.user_id)

    def get_item(self, item_id: str) -> ItemRecord | None:
        with self._lock.read():
            return self.catalog.get(item_id)

    # ==== models ==============================================================================
    def train_model(self, name: str = "ease", params: dict[str, Any] | None = None, *,
                    activate: bool = False) -> str:
        """Fit model `name` (`lmrec.component`) on the stored events of `train_kinds` and save
        it as a new version under `<home>/models/`; returns the version (`activate` also loads
        it). Runs without blocking requests; one training at a time."""
        with self._train:
            last_seq = self.store.last_seq()
            ds = events_dataset(self.store.events(after_seq=0), self.config.train_kinds)
            version = train_version(ds, self.models_dir, name, params, meta={"last_seq": last_seq})
        if activate:
            self.reload(version)
        return version

    def reload(self, version: str | None = None) -> str:
        """Swap to a saved model version (the latest when None). The new model is loaded fully
        before one reference is replaced: requests in flight finish with the old one."""
        model = load_version(self.models_dir, version)
        _ = model.item_item  # prepared before the swap, so no request pays for it
        self._model = model
        return model.version

    def model_versions(self) -> list[str]:
        return list_versions(self.models_dir)

    @property
    def model_version(self) -> str:
        m = self._model
        return m.version if m is not None else BASE_VERSION

    # ==== reads ===============================================================================
    def recommend(self, user_id: str, k: int = 10, *, explain: bool = False) -> Ranking:
        """Top-k items for a user; an unknown user gets the fallback (popular, then newest)."""
        _check_id(user_id, "user_id")
        _check_k(k)
        cfg = self.config
        model = self._model
        t = StageTimer()
        history = self.user_state.history(user_id, cfg.explain_history) if explain else []
        with self._lock.read():
            profile = self.profiles.profile(user_id)
            seen = self.profiles.seen(user_id)
            live = self.catalog.live
            depth = max(cfg.recall_depth, k)
            channels: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            if profile is not None and cfg.channel_weights.get("lm", 1.0) > 0 and len(self.catalog.index):
                ids, scores = self.catalog.index.search(profile[None, :], depth, exclude=seen)
                keep = ids[0] >= 0
                channels["lm"] = (ids[0][keep], scores[0][keep])
            t.lap("recall_lm")
            if model is not None and cfg.channel_weights.get("cf", 1.0) > 0:
                channels["cf"] = self._cf_candidates(model, user_id, seen, depth)
            t.lap("recall_cf")
            if (profile is None or self.profiles.n_events(user_id) < cfg.fallback_min_history) \
                    and cfg.channel_weights.get("popular", 1.0) > 0:
                channels["popular"] = self.popularity.top(depth, exclude=seen, allowed=live)
            t.lap("recall_popular")
            is_live = self.catalog.is_live
            picked = rrf_merge(channels, cfg.channel_weights, k_rrf=cfg.rrf_k,
                               keep=lambda s: s not in seen and is_live(s), limit=k)
            t.lap("merge")
            if len(picked) < k:
                picked += self._fill(k - len(picked), seen | {f.slot for f in picked})
            t.lap("filter")
            items = [RankedItem(self.catalog.item_id(f.slot), round(f.score, 6), f.sources) for f in picked]
            if explain:
                for it, f in zip(items, picked):
                    it.explanation = _explain.recommendation(self.catalog, f, history, profile)
                t.lap("explain")
        return self._ranking("recommend", user_id, items, model, t, {"k": k})

    def _cf_candidates(self, model: CFModel, user_id: str, seen: set[int], depth: int
                       ) -> tuple[np.ndarray, np.ndarray]:
        # consumed items are excluded by the model; ask a little deeper for items it knows that
        # were deleted or made unavailable since it was trained
        ids, scores = model.candidates(user_id, self.catalog.ids_of(seen), 2 * depth)
        slots, kept = [], []
        for item_id, s in zip(ids, scores.tolist()):
            slot = self.catalog.slot(item_id)
            if slot is not None and self.catalog.is_live(slot):
                slots.append(slot)
                kept.append(s)
                if len(slots) == depth:
                    break
        return np.asarray(slots, dtype=np.int64), np.asarray(kept, dtype=np.float32)

    def _fill(self, n: int, exclude: set[int]) -> list[Fused]:
        """Top-up when the channels ran dry: popular items, then the newest live items."""
        slots, scores = self.popularity.top(n, exclude=exclude, allowed=self.catalog.live)
        out = [Fused(int(s), 0.0, ("popular",), {"popular": float(p)}) for s, p in zip(slots, scores)]
        if len(out) < n:
            taken = exclude | {f.slot for f in out}
            live = np.flatnonzero(self.catalog.live)[::-1]
            for s in live.tolist():
                if s not in taken:
                    out.append(Fused(s, 0.0, ("newest",)))
                    if len(out) == n:
                        break
        return out

    def search(self, query: str, k: int = 10, *, user_id: str | None = None, explain: bool = False) -> Ranking:
        """Hybrid BM25 + dense search over the live catalog, optionally personalised."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query must be a non-empty string")
        _check_k(k)
        if user_id is not None:
            _check_id(user_id, "user_id")
        cfg = self.config
        model = self._model
        t = StageTimer()
        qvec = self.encoders.encode_query(query)
        t.lap("encode")
        with self._lock.read():
            depth = max(cfg.search_depth, k)
            channels: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            if len(self.catalog.index) and float(np.abs(qvec).sum()) > 0:
                ids, scores = self.catalog.index.search(qvec[None, :], depth)
                keep = ids[0] >= 0
                channels["dense"] = (ids[0][keep], scores[0][keep])
            t.lap("recall_dense")
            bm = self.catalog.keyword.search(query, depth)
            channels["bm25"] = (bm.items, bm.scores)
            t.lap("recall_bm25")
            profile = self.profiles.profile(user_id) if user_id is not None and cfg.personal_weight > 0 else None
            # personalisation re-sorts the whole union; otherwise only the top k are needed
            fused = rrf_merge(channels, {}, k_rrf=cfg.rrf_k, keep=self.catalog.is_live,
                              limit=None if profile is not None else k)
            t.lap("merge")
            personal: dict[int, float] = {}
            if profile is not None and fused:
                sims = self.catalog.vectors([f.slot for f in fused]) @ profile
                for f, s in zip(fused, sims.tolist()):
                    personal[f.slot] = s
                    f.score += cfg.personal_weight * s / (cfg.rrf_k + 1.0)
                fused.sort(key=lambda f: (-f.score, f.slot))
                t.lap("personalise")
            picked = fused[:k]
            items = [RankedItem(self.catalog.item_id(f.slot), round(f.score, 6), f.sources) for f in picked]
            if explain:
                for it, f in zip(items, picked):
                    it.explanation = _explain.search_hit(self.catalog, f, query, personal.get(f.slot))
                t.lap("explain")
        return self._ranking("search", user_id, items, model, t, {"k": k, "query_sha": _explain.digest(query)})

    def similar(self, item_id: str, k: int = 10, *, explain: bool = False) -> Ranking:
        """Items nearest to `item_id` by text embedding; KeyError for an unknown item."""
        _check_id(item_id, "item_id")
        _check_k(k)
        model = self._model
        t = StageTimer()
        with self._lock.read():
            slot = self.catalog.slot(item_id)
            if slot is None:
                raise KeyError(f"unknown item {item_id!r}")
            vec = self.catalog.vector(slot)
            hits: list[Fused] = []
            if len(self.catalog.index):
                ids, scores = self.catalog.index.search(vec[None, :], k, exclude=[slot])
                found = [(s, c) for s, c in zip(ids[0].tolist(), scores[0].tolist()) if s >= 0 and s != slot]
                hits = [Fused(s, c, ("similar",), {"similar": c}, {"similar": r}) for r, (s, c) in enumerate(found, 1)]
            t.lap("recall_similar")
            items = [RankedItem(self.catalog.item_id(f.slot), round(f.score, 6), f.sources) for f in hits]
            if explain:
                src = self.catalog.record(slot)
                for it, f in zip(items, hits):
                    it.explanation = _explain.similar_hit(self.catalog, f, src)
                t.lap("explain")
        return self._ranking("similar", None, items, model, t, {"k": k, "item_id": item_id})

    def _ranking(self, endpoint: str, user_id: str | None, items: list[RankedItem], model: CFModel | None,
                 t: StageTimer, context: dict[str, Any]) -> Ranking:
        version = model.version if model is not None else BASE_VERSION
        ranking = Ranking(uuid.uuid4().hex, items, version, {})
        if self._rankings is not None:
            self._rankings.put(RankingRecord(ranking.ranking_id, user_id, endpoint, tuple(i.item_id for i in items),
                                             created_at=time.time(),
                                             context={"model_version": version, **context}))
        ranking.timings_ms = t.done()
        return ranking

    def flush_rankings(self, timeout: float = 10.0) -> bool:
        """Wait until every ranking served so far is in the store (tests, shutdown)."""
        return self._rankings.flush(timeout) if self._rankings is not None else True

    def stats(self) -> dict[str, Any]:
        with self._lock.read():
            return {"n_items": len(self.catalog), "n_available": self.catalog.n_live,
                    "n_users": len(self.profiles), "n_events": self._n_events,
                    "index_size": len(self.catalog.index), "model_version": self.model_version,
                    "encoder": self.encoders.name, "query_encoder": self.encoders.queries.name,
                    "index": self.config.index, "index_source": self.index_source,
                    "bm25_delta": self.catalog.keyword.delta_size,
                    "applied_seq": self._applied_seq, "ready": self.ready}


# ==== validation =================================================================================
def _check_id(value: Any, field: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field} must be a non-empty string, got {value!r}")


def _check_k(k: Any) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def _check_event(e: Any, i: int, now: float) -> EventRecord:
    """The event ready to commit (no timestamp -> now); ValueError naming `events[i].field`."""
    check_event(e, f"events[{i}]")
    return dataclasses.replace(e, timestamp=float(e.timestamp) or now, value=float(e.value), seq=None)


def _check_item(r: Any, i: int, now: float) -> ItemRecord:
    """The item ready to commit (categories as a tuple, update time now); ValueError naming
    `items[i].field`."""
    check_item(r, f"items[{i}]")
    return dataclasses.replace(r, categories=tuple(r.categories), updated_at=now)
