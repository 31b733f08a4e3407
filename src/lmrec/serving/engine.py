"""The serving engine: the pipeline `lmrec eval` measures, served live.

One `Engine` owns a record store (the durable truth: events, items, users, rankings), the
live catalog (item records, their vectors in a vector index and BM25 over their texts, for
search and similar items) and the served pipeline version (`lmrec.pipeline.RecPipeline`,
wrapped with its version metadata). There is no second recommender here:

- `recommend` maps the user id to the pipeline's user index and returns
  `RecPipeline.recommend(user, k)`: recall channels -> merge -> ranker -> re-rankers ->
  explanations, the same code and the same lists as offline.
- `recommend_session` ranks a history given with the request (`RecPipeline.recommend_for_history`,
  `lmrec.serving.sessions`): no stored user, nothing stored changes.
- `start_experiment` serves two saved versions to hashed user buckets, each ranking logged with
  its variant; `experiment_report` joins the log with later clicks and purchases
  (`lmrec.serving.experiments`).
- `ingest` commits events to the store, then folds them into the pipeline
  (`RecPipeline.update`): the user's history (what the channels read per request), the
  channels' and features' global state, the re-rankers' feedback. The next request sees them.
- `upsert_items` embeds and indexes items for search, and adds them to the pipeline
  (`RecPipeline.upsert_items`): text-aware channels recommend a new item at once.
- `train` fits the configured pipeline on the store's events and catalog (in the background
  when asked, or on a schedule), saves it as a version folder (`lmrec.serving.versions`),
  folds in what arrived during the fit and swaps it in; requests never wait for a fit.
- `open` serves the version served last (or the newest of the pipeline config the settings
  name), replaying the events that arrived after it was fitted; without one it fits the
  configured pipeline first (the shipped default needs no training: its channels learn online).

Search is hybrid BM25 + dense retrieval over the catalog fused by reciprocal rank fusion,
nudged towards the user's language-model profile (computed from the pipeline's history with
the same function the LM channels use).

Concurrency: reads hold the shared side of a readers-writer lock and never wait for each
other; writes are serialised by a writer mutex and do their slow parts (store commit, text
encoding, training, catching a new version up) before taking the exclusive side for the
in-memory update, which is short. A request reads the served version once and keeps it.

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
    >>> [i.item_id for i in eng.recommend("u1", k=2).items]
    ['3', '2']
    >>> eng.close()
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from lmrec.serving import explain as _explain
from lmrec.serving.catalog import Catalog, PreparedItems, item_texts, load_saved, replay_journal
from lmrec.serving.drift import DriftMonitor
from lmrec.serving.encoders import EngineEncoders, resolve_encoder
from lmrec.serving.erasure import ErasureLog, forget_user
from lmrec.serving.engine_config import DEFAULT_PIPELINE, EngineConfig
from lmrec.serving.experiments import Experiment, RunningExperiment, load_experiment, save_experiment
from lmrec.serving.experiments import report as experiment_report
from lmrec.serving.follower import Follower, HomeLock
from lmrec.serving.live import fold_events, sync_items
from lmrec.serving.ranking import RankedItem, Ranking, RankingLog, StageTimer
from lmrec.serving.rwlock import RWLock
from lmrec.serving.search import fuse
from lmrec.serving.sessions import SessionEvent, SessionRanking, session_ranking
from lmrec.serving.versions import (Version, active_version, item_row, list_versions, load_version, mark_active,
                                    store_dataset, train_version)
from lmrec.stores import build_index
from lmrec.stores.base import blas_threads
from lmrec.stores.records import (EventRecord, ItemRecord, RankingRecord, UserRecord, check_event,
                                  check_item, check_user)

__all__ = ["Engine", "EngineConfig", "RankedItem", "Ranking", "TrainingBusy", "PipelineConfigError"]

log = logging.getLogger(__name__)


class TrainingBusy(RuntimeError):
    """A training is already running (one at a time)."""


class PipelineConfigError(ValueError):
    """The pipeline config (or its overrides) asked to train is not valid."""


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
#: the index is saved (and its journal started afresh) once the journal holds this many bytes
JOURNAL_SAVE_BYTES = 256 << 20


class Engine:
    """See the module docstring. Create with `Engine.open(config)`; every method is safe to
    call from several threads at once."""

    def __init__(self, config: EngineConfig) -> None:  # use Engine.open
        self.config = config
        self.ready = False
        self._lock = RWLock()
        self._write = threading.Lock()     # one writer at a time: keeps store order = apply order
        self._train = threading.Lock()     # one training at a time
        self._live: Version | None = None
        self._applied_seq = 0
        self._n_events = 0
        self._events_since_train = 0
        self._last_train = time.time()
        self._blas = False
        self._rankings: RankingLog | None = None
        self._closed = False
        self._stop = threading.Event()
        self._scheduler: threading.Thread | None = None
        self._jobs: list[threading.Thread] = []
        self.training: dict[str, Any] = {"state": "idle"}
        self._batch_cond = threading.Condition()
        self._batch_queue: list[_Pending] = []
        self._batch_busy = False
        self.index_source = ""  # at open: "loaded" (the saved index), "replayed" (it + the journal) or "built"
        self._experiment: RunningExperiment | None = None  # two versions served to user buckets
        self.cross_encoder: Any = None  # the /search re-ranker (lmrec.text.cross_encoder), when configured
        self.erasures = ErasureLog(config.home)  # users erased since the saved versions were fitted
        # several workers over one store (lmrec.serving.follower): this engine's name in the change
        # feed, the feed position it has applied, and the thread following the other workers
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._change_seq = 0
        self._follower: Follower | None = None
        self._train_lock = HomeLock(config.home, ".lmrec-train.lock")  # one training across workers
        self.drift = DriftMonitor(config.drift_window_events, config.train_kinds)  # recent events vs training

    # ==== lifecycle ===========================================================================
    @classmethod
    def open(cls, config: EngineConfig) -> Engine:
        """Open the store, load or build the catalog index, then serve the newest pipeline
        version (caught up with the events since its fit) or fit the configured pipeline;
        `ready` is True when it returns."""
        from lmrec.stores.sql import open_store

        eng = cls(config)
        cfg = config
        cfg.home.mkdir(parents=True, exist_ok=True)
        eng._blas = _BLAS.acquire(cfg.blas_threads)
        try:
            eng.store = open_store(cfg.resolved_store_url())
            eng.store.origin = eng.worker_id
            eng.store.prune_changes(time.time() - 86_400.0)   # the feed only serves workers already running
            eng._change_seq = eng.store.last_change_seq()   # what the catalog read below includes
            name, why = resolve_encoder(cfg.home, cfg.encoder, eng.store)
            if name != cfg.encoder:
                eng.config = cfg = cfg.model_copy(update={"encoder": name})
            log.info("catalog encoder %s (%s)", name, why)
            eng.encoders = EngineEncoders(cfg.encoder, cfg.query_encoder, threads=cfg.encoder_threads,
                                          cache_dir=cfg.embedding_cache or cfg.home / "embeddings")
            eng.cross_encoder = eng._open_cross_encoder()
            eng.catalog = eng._new_catalog()
            # workers opening together: the first builds and saves the index (and fits the first
            # version); the others then load them
            with HomeLock(cfg.home, ".lmrec-open.lock"):
                eng._load_catalog()
                eng._n_events = eng.store.count_events()
                eng._open_pipeline()
            eng._restore_experiment()
            if cfg.drift_window_events:   # the drift window survives a restart: the latest events
                last = eng.store.last_seq()
                eng.drift.observe((e.kind, e.item_id, eng.catalog.get(e.item_id) is not None)
                                  for e in eng.store.events(after_seq=max(0, last - cfg.drift_window_events)))
            if cfg.log_rankings:
                eng._rankings = RankingLog(eng.store)
        except BaseException:
            eng._release()
            raise
        # the catalog, pipeline and indexes are long-lived: keep the cyclic GC from re-scanning
        # them (a full collection over a 100k-item catalog is a latency spike of tens of ms)
        if cfg.gc_freeze:
            gc.collect()
            gc.freeze()
        if cfg.retrain_every_events or cfg.retrain_every_minutes:
            eng._scheduler = threading.Thread(target=eng._schedule, name="lmrec-retrain", daemon=True)
            eng._scheduler.start()
        if cfg.follow_interval_s > 0:
            eng._follower = Follower(eng, cfg.follow_interval_s).start()
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
            self.catalog.saved_as = saved.saved_as
            self.index_source = "loaded"
            log.info("loaded the saved index of %d items from %s", len(records), self.index_dir)
            self._start_journal()
            return
        vecs = self.encoders.encode_items(texts, progress=self.config.progress)
        if self._replay_catalog(records, texts, vecs, extra):
            self.index_source = "replayed"
            log.info("rebuilt the index of %d items from %s and the changes journaled since", len(records),
                     self.index_dir)
        else:
            self.index_source = "built"
            self.catalog.build(PreparedItems(records, texts, vecs), build_threads=self.config.index_build_threads)
        if records:
            self.catalog.save(self.index_dir, extra)
        self._start_journal()

    @property
    def _journal_path(self) -> Path:
        return self.config.home / "index.journal"

    def _start_journal(self) -> None:
        # one writer per home: workers following a shared store each apply changes their own way
        if self.config.follow_interval_s <= 0:
            self.catalog.start_journal(self._journal_path)

    def _replay_catalog(self, records: list[ItemRecord], texts: list[str], vecs: np.ndarray,
                        extra: dict[str, Any]) -> bool:
        """After a crash: the saved index with the journaled changes applied (the graph that was
        served), when it holds exactly the store's catalog; False otherwise."""
        if self.config.follow_interval_s > 0 or not self._journal_path.exists():
            return False
        params = {**self.catalog.index_params}
        replayed = replay_journal(self._journal_path, self.index_dir, extra,
                                  lambda: build_index(self.config.index, self.encoders.dim, **params))
        if replayed is None:
            return False
        slots, index = replayed
        pos = {item_id: s for s, item_id in enumerate(slots) if item_id is not None}
        if len(pos) != len(records) or any(r.item_id not in pos for r in records):
            return False
        live = [(pos[r.item_id], j) for j, r in enumerate(records) if r.available]
        live_slots = np.asarray(sorted(s for s, _ in live), dtype=np.int64)
        if not np.array_equal(np.sort(index.ids()), live_slots):
            return False
        if live:   # each indexed vector is the current text's
            got = index.get([s for s, _ in live])
            want = vecs[[j for _, j in live]]
            want = want / np.maximum(np.linalg.norm(want, axis=1, keepdims=True), 1e-12)
            if not np.allclose(got, want, atol=1e-5):
                return False
        if self.config.index == "hnsw":
            index.ef_search = self.config.hnsw_ef_search  # type: ignore[attr-defined]
        self.catalog.build(PreparedItems(records, texts, vecs), slots=slots, index=index)
        return True

    def _open_pipeline(self) -> None:
        """Serve, in this order: the pinned `model_version`; with a pipeline config chosen in
        the settings, the newest version of it; with the shipped default, the version served
        last (a pipeline trained through the API stays served after a restart), else the
        newest default one. Fit the configured pipeline when there is none."""
        cfg = self.config
        if cfg.model_version is not None:
            self._activate(load_version(self.models_dir, cfg.model_version), announce=False)
            return
        versions = self._matching_versions()
        if cfg.config == DEFAULT_PIPELINE:
            active = active_version(self.models_dir)
            if active is not None:
                versions = [active]
        if versions:
            self._activate(load_version(self.models_dir, versions[-1]), announce=False)
            return
        log.info("no saved version of %s: fitting it on %d stored events", cfg.config, self._n_events)
        self.train(activate=True)

    def _matching_versions(self) -> list[str]:
        """Saved versions built from the configured pipeline config and overrides, oldest first."""
        import json

        out = []
        want = (self.config.config, self.config.pipeline_overrides())
        for v in list_versions(self.models_dir):
            try:
                meta = json.loads((self.models_dir / v / "meta.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if (meta.get("config"), meta.get("overrides", {})) == want:
                out.append(v)
        return out

    def close(self) -> None:
        """Stop the scheduler, save the index if the catalog changed (and
        `save_index_on_close`), flush the ranking log, close the store."""
        if self._closed:
            return
        self._closed = True
        self.ready = False
        self._stop.set()
        if self._scheduler is not None:
            self._scheduler.join()
        if self._follower is not None:
            self._follower.stop()
        # a background training is not waited for (a fit can take many minutes): it stops being
        # served (see _train_now), and its version folder appears whole or not at all
        self.catalog.keyword.wait()
        if self.config.save_index_on_close and self.catalog.dirty:
            with HomeLock(self.config.home, ".lmrec-open.lock"), self._write, self._lock.read():
                try:
                    self.catalog.save(self.index_dir, self._index_extra())
                except OSError:
                    log.exception("could not save the index to %s; the next open rebuilds it", self.index_dir)
        self._release()

    def _release(self) -> None:
        journal = getattr(getattr(self, "catalog", None), "journal", None)
        if journal is not None:
            journal.close()
        if self._rankings is not None:
            self._rankings.close()
        closer = getattr(getattr(self, "store", None), "close", None)
        if closer is not None:
            try:
                closer()
            except Exception:  # pragma: no cover - best effort at shutdown
                log.exception("closing the store failed")
        if self._blas:
            _BLAS.release()
            self._blas = False

    # ==== writes ==============================================================================
    def ingest(self, events: Sequence[EventRecord], event_ids: Sequence[str] | None = None) -> list[int]:
        """Commit the events to the store, then fold them into the served pipeline; returns
        their seqs. Events without a timestamp (0) get the current time. Invalid events raise
        ValueError naming `events[i].field` and nothing is committed.

        With `event_ids` (an event stream's at-least-once delivery) an event whose id was
        committed before is skipped, in the store and the pipeline alike: its seq is None."""
        now = time.time()
        checked = [_check_event(e, i, now) for i, e in enumerate(events)]
        if not checked:
            return []
        with self._write:
            if event_ids is None:
                seqs: list[Any] = list(self.store.append_events(checked))
            else:
                seqs = list(self.store.append_events_once(checked, event_ids))
            done = [dataclasses.replace(e, seq=s) for e, s in zip(checked, seqs) if s is not None]
            if done and done[0].seq > self._applied_seq + 1:
                # another process wrote to the store: take its events first, in order
                done = [e for e in self.store.events(after_seq=self._applied_seq) if e.seq < done[0].seq] + done
            self._apply(done)
        return seqs

    def sync(self) -> int:
        """Fold in events other processes committed to a shared store; returns how many."""
        with self._write:
            new = list(self.store.events(after_seq=self._applied_seq))
            self._apply(new)
        return len(new)

    def _apply(self, events: Sequence[EventRecord]) -> None:
        """Fold committed events into the served pipeline (writer mutex held)."""
        if not events:
            return
        live = self._live
        self.drift.observe((e.kind, e.item_id, self.catalog.get(e.item_id) is not None) for e in events)
        with self._lock.write():
            if live is not None:
                fold_events(live, events, self.config.train_kinds, self.catalog)
            for version in self._variant_versions():
                fold_events(version, events, self.config.train_kinds, self.catalog)
            self._n_events += len(events)
            self._events_since_train += len(events)
            self._applied_seq = max(self._applied_seq, max(e.seq or 0 for e in events))

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
            # an item keeps the creation time it was first stored with (as the store does)
            checked = [dataclasses.replace(r, created_at=prev.created_at if (prev := self.catalog.get(r.item_id))
                                           else r.created_at or now) for r in checked]
            vecs = self.encoders.encode_items(texts)   # before the commit: a failure leaves no trace
            self.store.upsert_items(checked)
            self._apply_upsert(checked, texts, vecs)

    def _apply_upsert(self, records: list[ItemRecord], texts: list[str], vecs: np.ndarray) -> None:
        """Committed items into the catalog and the served version(s) (writer mutex held)."""
        live = self._live
        with self._lock.write():
            self.catalog.apply_upsert(PreparedItems(records, texts, vecs))
            for version in ([live] if live is not None else []) + self._variant_versions():
                version.pipeline.upsert_items([r.item_id for r in records], [item_row(r) for r in records])
        self._save_long_journal()

    def delete_item(self, item_id: str) -> bool:
        """Delete from the store and everywhere in memory; True when the item existed."""
        _check_id(item_id, "item_id")
        with self._write:
            existed = bool(self.store.delete_item(item_id))
            slot = self._apply_delete(item_id)
        return existed or slot is not None

    def _apply_delete(self, item_id: str) -> int | None:
        """A deleted item out of the catalog, and in the served version(s) unavailable and
        without content, as a restart will know it (`RecPipeline.remove_items`; writer mutex held)."""
        live = self._live
        with self._lock.write():
            slot = self.catalog.apply_delete(item_id)
            for version in ([live] if live is not None else []) + self._variant_versions():
                version.pipeline.remove_items([item_id])
        self._save_long_journal()
        return slot

    def _save_long_journal(self) -> None:
        """Save the index once its journal is long (writer mutex held; reads go on)."""
        journal = self.catalog.journal
        if journal is not None and journal.bytes > JOURNAL_SAVE_BYTES:
            with self._lock.read():
                self.catalog.save(self.index_dir, self._index_extra())

    def delete_user(self, user_id: str) -> dict[str, Any] | None:
        """Erase a user (`lmrec.serving.erasure`): their events, attribute record and logged
        rankings leave the store, and the served version(s) forget them in memory, so the next
        request for them is a new user's and stages that can un-count their events (decayed
        popularity, the long-tail re-ranker's counts) do. Returns what was removed (None: the
        user is unknown to the store and the served versions)."""
        _check_id(user_id, "user_id")
        self.flush_rankings(timeout=10.0)   # rankings still queued for the log are erased too
        with self._write:
            removed = self.store.delete_user(user_id)
            memory = self._forget(user_id, removed.get("events", 0))
            if not any(removed.values()) and memory is None:
                return None
            self.erasures.add(user_id, max(self._applied_seq, self.store.last_seq()))
        return {"user_id": user_id, "store": removed,
                "served": memory if memory is not None else {"events": 0, "recounted": [], "kept": []}}

    def _forget(self, user_id: str, n_events: int) -> dict[str, Any] | None:
        """An erased user out of the served version(s) in memory (writer mutex held); what the
        served one forgot."""
        live = self._live
        memory = None
        with self._lock.write():
            for version in ([live] if live is not None else []) + self._variant_versions():
                out = forget_user(version, user_id)
                if version is live:
                    memory = out
            self._n_events = max(0, self._n_events - n_events)
        return memory

    # ==== several workers over one store (lmrec.serving.follower) ===========================
    def follow(self) -> dict[str, int]:
        """Fold in what other processes wrote to the shared store since the last call: item
        upserts / deletions and user erasures from the change feed (re-read from the store and
        applied as a local write applies them; this engine's own changes are skipped), then
        their events (`sync`), then an A/B experiment started or stopped and the version another
        worker activated (both from the shared home folder). Returns the counts."""
        done = {"events": 0, "items": 0, "users": 0, "versions": 0, "experiments": 0}
        changes = self.store.changes(after_seq=self._change_seq)
        items: dict[str, None] = {}
        users: dict[str, None] = {}
        version = None
        experiment = False
        for _, kind, key, origin in changes:
            if origin == self.worker_id:
                continue
            if kind == "item":
                items[key] = None
            elif kind == "user":
                users[key] = None
            elif kind == "version":
                version = key
            elif kind == "experiment":
                experiment = True
        if items:
            with self._write:   # read under the writer mutex: a local write cannot slip in between
                records = [r for r in (self.store.get_item(i) for i in items) if r is not None]
                if records:
                    texts = item_texts(records, self.config.item_template)
                    self._apply_upsert(records, texts, self.encoders.encode_items(texts))
                for item_id in set(items) - {r.item_id for r in records}:
                    self._apply_delete(item_id)
            done["items"] = len(items)
        for user_id in users:
            with self._write:
                self._forget(user_id, 0)
            done["users"] += 1
        if changes:
            self._change_seq = max(self._change_seq, changes[-1][0])
        done["events"] = self.sync()
        if experiment:   # started or stopped elsewhere: the home's experiment file says which
            with self._write:
                exp = load_experiment(self.config.home)
                running = self._load_variants(exp) if exp is not None and exp.running else None
                with self._lock.write():
                    self._experiment = running
            done["experiments"] = 1
        if version is not None and version != self.model_version:
            try:
                self._activate(load_version(self.models_dir, version), announce=False)
                done["versions"] = 1
                log.info("now serving %s (activated by another worker)", version)
            except FileNotFoundError:
                log.warning("another worker activated %s, which is not in %s (is the home folder shared?)",
                            version, self.models_dir)
        return done

    def upsert_user(self, user: UserRecord) -> None:
        check_user(user)
        with self._write:
            self.store.upsert_user(user)

    def get_item(self, item_id: str) -> ItemRecord | None:
        with self._lock.read():
            return self.catalog.get(item_id)

    # ==== training and versions =============================================================
    def train(self, config: str | None = None, overrides: dict[str, Any] | None = None, *,
              activate: bool = True, wait: bool = True) -> str | None:
        """Fit a pipeline (`config` + `overrides`; default: the engine's own) on the stored
        events and catalog, save it as a version and, with `activate`, serve it (after folding
        in the events that arrived during the fit). With `wait=False` the fit runs in a
        background thread and this returns None at once (see `training` for its progress).
        Raises TrainingBusy when a training is running, ValueError for a bad config."""
        from lmrec.pipeline.spec import load_spec

        cfg = self.config
        if config is None:
            config, overrides = cfg.config, cfg.pipeline_overrides() if overrides is None else overrides
        overrides = dict(overrides or {})
        try:
            load_spec(config, overrides)  # a bad config fails here, before any work
        except (ValueError, FileNotFoundError) as e:
            raise PipelineConfigError(str(e)) from None
        if not self._train.acquire(blocking=False):
            raise TrainingBusy(f"a training is already running: {self.training.get('stage', '')}")
        if not self._train_lock.acquire(blocking=False):
            self._train.release()
            raise TrainingBusy(f"another worker is training in {self.config.home}")
        if wait:
            try:
                return self._train_now(config, overrides, activate)
            finally:
                self._train_lock.release()
                self._train.release()
        job = threading.Thread(target=self._train_job, args=(config, overrides, activate), name="lmrec-train",
                               daemon=True)
        self._jobs = [j for j in self._jobs if j.is_alive()] + [job]
        job.start()
        return None

    def _train_job(self, config: str, overrides: dict[str, Any], activate: bool) -> None:
        try:
            self._train_now(config, overrides, activate)
        except Exception:  # noqa: BLE001 - reported in `training` and the log, the service keeps serving
            log.exception("background training of %s failed", config)
        finally:
            self._train_lock.release()
            self._train.release()

    def _train_now(self, config: str, overrides: dict[str, Any], activate: bool) -> str:
        started = time.time()
        self.training = {"state": "running", "config": config, "started_at": started, "stage": "reading the store"}

        def progress(message: str) -> None:
            self.training = {**self.training, "stage": message, "elapsed_s": round(time.time() - started, 1)}
            log.info("training %s: %s", config, message)

        try:
            cfg = self.config
            dataset, last_seq = store_dataset(self.store, kinds=cfg.train_kinds, template=cfg.item_template,
                                              has_timestamps=cfg.has_timestamps, home=cfg.home)
            progress(f"fitting on {len(dataset.interactions)} events, {dataset.n_items} items, "
                     f"{dataset.n_users} users")
            self._events_since_train = 0
            self._last_train = time.time()
            version = train_version(self.models_dir, dataset, config=config, overrides=overrides, last_seq=last_seq,
                                    progress=progress)
            if activate and not self._closed:
                progress(f"catching {version.name} up with the events since the fit")
                self._activate(version)
        except Exception as exc:
            self.training = {**self.training, "state": "failed", "error": f"{type(exc).__name__}: {exc}",
                             "finished_at": time.time()}
            raise
        self.training = {"state": "idle", "last_version": version.name, "last_config": config,
                         "last_fit_s": version.meta.get("fit_s"), "finished_at": time.time(),
                         "last_duration_s": round(time.time() - started, 1)}
        log.info("trained %s as %s in %.1f s%s", config, version.name, time.time() - started,
                 " (now serving it)" if activate else "")
        return version.name

    def _activate(self, version: Version, *, announce: bool = True) -> None:
        """Bring a loaded or fitted version up to date with the catalog and the events after
        its fit, then serve it. Writes wait while it catches up; reads go on. With `announce`,
        it becomes the active version of the home and of the other workers (change feed)."""
        with self._write:
            pipe = version.pipeline
            self._sync_items(pipe)
            self.erasures.apply(version)   # users erased after its fit stay erased
            new = [e for e in self.store.events(after_seq=version.last_seq)]
            fold_events(version, new, self.config.train_kinds, self.catalog)
            with self._lock.write():
                self._live = version
                # the events folded in, not the store's last seq: another process may have
                # committed more since, which `sync` folds in next
                self._applied_seq = max(self._applied_seq, version.last_seq, *(e.seq or 0 for e in new))
                if not announce:
                    self._events_since_train = len(new)
        if announce:
            mark_active(self.models_dir, version.name)
            self.store.log_change("version", version.name)

    def _sync_items(self, pipe: Any) -> None:
        """A loaded pipeline's catalog made the live one (`sync_items`); the items deleted since
        its fit lose their content, as they did in the version that served the deletion
        (`RecPipeline.remove_items`), so both hold the same items."""
        sync_items(pipe, self.catalog)
        pipe.remove_items([i for i in pipe.dataset.items.ids if self.catalog.get(i) is None])

    def reload(self, version: str | None = None) -> str:
        """Serve a saved version (the newest when None), caught up with the catalog and the
        events since its fit. Requests in flight finish with the old one."""
        v = load_version(self.models_dir, version)
        self._activate(v)
        return v.name

    def model_versions(self) -> list[str]:
        return list_versions(self.models_dir)

    @property
    def model_version(self) -> str:
        live = self._live
        return live.name if live is not None else ""

    @property
    def pipeline(self) -> Any:
        """The served `RecPipeline` (read-only use: the engine owns it)."""
        live = self._live
        return live.pipeline if live is not None else None

    def _schedule(self) -> None:
        """Retrain in the background every N events / T minutes (when events arrived)."""
        cfg = self.config
        while not self._stop.wait(1.0):
            due = (cfg.retrain_every_events and self._events_since_train >= cfg.retrain_every_events) or \
                (cfg.retrain_every_minutes and self._events_since_train > 0
                 and time.time() - self._last_train >= 60.0 * cfg.retrain_every_minutes)
            if not due or self._train.locked():
                continue
            try:
                self.train(wait=False)
            except TrainingBusy:
                continue
            except Exception:  # noqa: BLE001 - logged; the schedule goes on
                log.exception("scheduled training could not start")

    # ==== reads ===============================================================================
    def recommend(self, user_id: str, k: int = 10, *, explain: bool = False) -> Ranking:
        """The served pipeline's top-k for a user; an unknown user is a user without history
        (the pipeline's fallback channels serve them).

        Concurrent calls are coalesced: while one batch is being computed, the calls that
        arrive wait, and the next free caller computes all of them (up to `recommend_batch`)
        as one pipeline batch. The lists are those of separate calls (every stage works per
        user); the cost per request falls as load rises, because the pipeline is vectorised
        across the users of a batch."""
        _check_id(user_id, "user_id")
        _check_k(k)
        req = _Pending(user_id, k, explain)
        if self.config.recommend_batch <= 1:
            self._compute_batch([req])
        else:
            self._coalesced(req)
        if req.error is not None:
            raise req.error
        assert req.ranking is not None
        return req.ranking

    def _coalesced(self, req: _Pending) -> None:
        cond = self._batch_cond
        with cond:
            self._batch_queue.append(req)
            while not req.done:
                if self._batch_busy:
                    cond.wait()
                    continue
                self._batch_busy = True
                batch = self._batch_queue[:self.config.recommend_batch]
                del self._batch_queue[:len(batch)]
                cond.release()
                try:
                    self._compute_batch(batch)
                finally:
                    cond.acquire()
                    self._batch_busy = False
                    cond.notify_all()

    def _compute_batch(self, batch: list[_Pending]) -> None:
        """Compute pending requests as few pipeline calls (one per explain flag and variant); each gets
        its own list (the first k of the batch's longest list: every stage is prefix-stable)."""
        try:
            exp = self._experiment  # with an experiment, each user's variant serves them
            routes = [exp.assign(r.user_id) if exp is not None else (None, self._live) for r in batch]
            for explain, vid in dict.fromkeys((r.explain, id(v)) for r, (_, v) in zip(batch, routes)):
                chosen = [(r, var, v) for r, (var, v) in zip(batch, routes) if r.explain == explain and id(v) == vid]
                group, variant, live = [c[0] for c in chosen], chosen[0][1], chosen[0][2]
                extra = {"experiment": exp.experiment.name, "variant": variant} if exp is not None else {}
                t = StageTimer()
                timings: dict[str, float] = {}
                with self._lock.read():
                    pipe = live.pipeline
                    ds = pipe.dataset
                    users = [u if (u := ds.users.get(r.user_id)) >= 0 else ds.n_users for r in group]
                    lists = pipe.recommend(users, max(r.k for r in group), explain=explain, timings=timings)
                    ids = ds.items.ids
                    rankings = []
                    for r, c in zip(group, lists):
                        c = c.top(r.k)
                        items = [RankedItem(ids[i], round(float(sc), 6), tuple(src)) for i, sc, src in
                                 zip(c.items.tolist(), c.scores.tolist(), c.sources or [()] * len(c))]
                        if explain and c.explanations is not None:
                            for it, e in zip(items, c.explanations):
                                it.explanation = e
                        rankings.append(items)
                t.ms.update({k_: round(v, 3) for k_, v in timings.items()})
                if len(group) > 1:
                    t.ms["batch_size"] = float(len(group))
                for r, items in zip(group, rankings):
                    r.ranking = self._ranking("recommend", r.user_id, items, live.name, _copy_timer(t),
                                              {"k": r.k, **extra})
        except Exception as exc:  # noqa: BLE001 - every waiting caller gets the error, none hangs
            for r in batch:
                if r.ranking is None:
                    r.error = exc
        finally:
            for r in batch:
                r.done = True

    def recommend_session(self, history: Sequence[SessionEvent], k: int = 10, *, explain: bool = False,
                          max_future_seconds: float = 86_400.0) -> SessionRanking:
        """The served pipeline's top-k for a history given with the request (no stored user;
        nothing stored changes), with the history's unknown item ids; see
        `lmrec.serving.sessions`. ValueError names `history[j].field`."""
        _check_k(k)
        return session_ranking(self, history, k, explain=explain, max_future_seconds=max_future_seconds)

    # ==== experiments (lmrec.serving.experiments) =============================================
    def _variant_versions(self) -> list[Version]:
        exp = self._experiment
        return list(exp.versions.values()) if exp is not None else []

    def _load_variants(self, exp: Experiment) -> RunningExperiment:
        """Both versions loaded and caught up with the catalog and events (writer mutex held)."""
        versions = {}
        for variant, name in (("A", exp.a), ("B", exp.b)):
            try:
                v = load_version(self.models_dir, name)
            except FileNotFoundError as e:
                raise FileNotFoundError(f"{variant.lower()}: {e}") from None
            self._sync_items(v.pipeline)
            self.erasures.apply(v)
            fold_events(v, list(self.store.events(after_seq=v.last_seq)), self.config.train_kinds, self.catalog)
            versions[variant] = v
        return RunningExperiment(exp, versions)

    def start_experiment(self, name: str, a: str, b: str, split: float = 0.5) -> Experiment:
        """Serve saved versions `a` and `b` to hashed user buckets (`split`: B's share), from
        now on and after restarts, until `stop_experiment`. ValueError (a bad value) and
        FileNotFoundError (no such version) name the field."""
        with self._write:
            exp = Experiment(name, a, b, split, started_at=time.time(), start_seq=self.store.last_seq())
            running = self._load_variants(exp)
            save_experiment(self.config.home, exp)
            with self._lock.write():
                self._experiment = running
            self.store.log_change("experiment", name)
        return exp

    def stop_experiment(self) -> Experiment | None:
        """Serve everyone the served version again; the experiment stays for its report."""
        with self._write:
            exp = load_experiment(self.config.home)
            if exp is None or not exp.running:
                return exp
            exp.stopped_at = time.time()
            save_experiment(self.config.home, exp)
            with self._lock.write():
                self._experiment = None
            self.store.log_change("experiment", exp.name)
        return exp

    def experiment_report(self, window_s: float = 3600.0) -> dict[str, Any] | None:
        """CTR and conversion per variant of the current (or last) experiment; None without one."""
        exp = load_experiment(self.config.home)
        if exp is None:
            return None
        self.flush_rankings(timeout=10.0)
        return experiment_report(exp, self.store.rankings(since=exp.started_at),
                                 self.store.events(after_seq=exp.start_seq), window_s=window_s)

    def _restore_experiment(self) -> None:
        try:
            exp = load_experiment(self.config.home)
            if exp is not None and exp.running:
                with self._write:
                    self._experiment = self._load_variants(exp)
        except (OSError, ValueError, TypeError):
            log.exception("the experiment in %s could not be restored; serving the served version to everyone",
                          self.config.home)

    def _profile(self, live: Version, user_id: str) -> np.ndarray | None:
        """The user's language-model profile in the catalog's vector space (recency-weighted
        mean of the vectors of their history's items), for search personalisation."""
        from lmrec.recall.lm_user import history_vector

        ds = live.pipeline.dataset
        u = ds.users.get(user_id)
        if u < 0:
            return None
        items = live.pipeline.history.items(u)[-200:]
        slots = [s for s in (self.catalog.slot(ds.items.ids[i]) for i in items.tolist()) if s is not None]
        if not slots:
            return None
        return history_vector(self.catalog.vectors(slots), np.arange(len(slots)), half_life=self.config.half_life)

    def _open_cross_encoder(self) -> Any:
        """The configured cross-encoder re-ranker of /search (None when there is none)."""
        cfg = self.config
        if cfg.cross_encoder is None:
            return None
        from lmrec.text.cross_encoder import CrossEncoderModel

        return CrossEncoderModel(cfg.cross_encoder, backend=cfg.cross_encoder_backend,
                                 threads=cfg.encoder_threads or 1, batch_size=max(cfg.rerank_top, 1))

    def _rerank(self, query: str, hits: list[dict[str, Any]]) -> None:
        """Re-score the top `rerank_top` hits with the cross-encoder, in place: score = mix x the
        min-max normalised fused score + (1 - mix) x the normalised cross-encoder logit; the rest
        stay below in their order. Each re-scored hit keeps the logit as channel "cross_encoder"."""
        from lmrec.recall.normalise import normalise

        n = min(self.config.rerank_top, len(hits))
        if n == 0:
            return
        head = hits[:n]
        logits = np.asarray(self.cross_encoder(query, [self.catalog.text(h["slot"]) for h in head]), np.float64)
        fused = np.array([h["score"] for h in head])
        mix = self.config.rerank_mix
        final = mix * normalise(fused) + (1 - mix) * normalise(logits) if mix > 0 else normalise(logits)
        for h, f, logit in zip(head, final.tolist(), logits.tolist()):
            h["first_stage_score"] = h["score"]
            h["score"] = 1.0 + f  # above every hit that was not re-scored (fused RRF scores are < 1)
            h["channel_scores"]["cross_encoder"] = logit
            h["sources"] = tuple(h["sources"]) + ("cross_encoder",)
        head.sort(key=lambda h: (-h["score"], h["slot"]))
        hits[:n] = head

    def search(self, query: str, k: int = 10, *, user_id: str | None = None, explain: bool = False) -> Ranking:
        """Hybrid BM25 + dense search over the live catalog, optionally personalised."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query must be a non-empty string")
        _check_k(k)
        if user_id is not None:
            _check_id(user_id, "user_id")
        cfg = self.config
        live = self._live
        t = StageTimer()
        qvec = self.encoders.encode_query(query)
        t.lap("encode")
        with self._lock.read():
            depth = max(cfg.search_depth, k)
            lists: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            if len(self.catalog.index) and float(np.abs(qvec).sum()) > 0:
                ids, scores = self.catalog.index.search(qvec[None, :], depth)
                keep = ids[0] >= 0
                lists["dense"] = (ids[0][keep], scores[0][keep])
            t.lap("recall_dense")
            bm = self.catalog.keyword.search(query, depth)
            lists["bm25"] = (bm.items, bm.scores)
            t.lap("recall_bm25")
            hits = fuse(lists, cfg.rrf_k, self.catalog.is_live)
            t.lap("merge")
            profile = self._profile(live, user_id) if user_id is not None and cfg.personal_weight > 0 else None
            if profile is not None and hits:
                sims = self.catalog.vectors([h["slot"] for h in hits]) @ profile
                for h, sim in zip(hits, sims.tolist()):
                    h["profile_cosine"] = sim
                    h["score"] += cfg.personal_weight * sim / (cfg.rrf_k + 1.0)
                hits.sort(key=lambda h: (-h["score"], h["slot"]))
                t.lap("personalise")
            if self.cross_encoder is not None and hits:
                self._rerank(query, hits)
                t.lap("rerank")
            hits = hits[:k]
            items = [RankedItem(self.catalog.item_id(h["slot"]), round(h["score"], 6), h["sources"]) for h in hits]
            if explain:
                for it, h in zip(items, hits):
                    it.explanation = _explain.search_hit(self.catalog, h, query)
                t.lap("explain")
        return self._ranking("search", user_id, items, live.name if live else "", t,
                             {"k": k, "query_sha": _explain.digest(query)})

    def similar(self, item_id: str, k: int = 10, *, explain: bool = False) -> Ranking:
        """Items nearest to `item_id` by text embedding; KeyError for an unknown item."""
        _check_id(item_id, "item_id")
        _check_k(k)
        live = self._live
        t = StageTimer()
        with self._lock.read():
            slot = self.catalog.slot(item_id)
            if slot is None:
                raise KeyError(f"unknown item {item_id!r}")
            vec = self.catalog.vector(slot)
            hits: list[dict[str, Any]] = []
            if len(self.catalog.index):
                ids, scores = self.catalog.index.search(vec[None, :], k, exclude=[slot])
                hits = [{"slot": s, "score": c, "sources": ("similar",), "channel_scores": {"similar": c},
                         "channel_ranks": {"similar": r}}
                        for r, (s, c) in enumerate(((s, c) for s, c in zip(ids[0].tolist(), scores[0].tolist())
                                                    if s >= 0 and s != slot), 1)]
            t.lap("recall_similar")
            items = [RankedItem(self.catalog.item_id(h["slot"]), round(h["score"], 6), h["sources"]) for h in hits]
            if explain:
                src = self.catalog.record(slot)
                for it, h in zip(items, hits):
                    it.explanation = _explain.similar_hit(self.catalog, h, src)
                t.lap("explain")
        return self._ranking("similar", None, items, live.name if live else "", t, {"k": k, "item_id": item_id})

    def _ranking(self, endpoint: str, user_id: str | None, items: list[RankedItem], version: str,
                 t: StageTimer, context: dict[str, Any]) -> Ranking:
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
        live = self._live
        with self._lock.read():
            pipe = live.pipeline if live is not None else None
            return {"n_items": len(self.catalog), "n_available": self.catalog.n_live,
                    "n_users": pipe.dataset.n_users if pipe is not None else 0, "n_events": self._n_events,
                    "index_size": len(self.catalog.index), "model_version": self.model_version,
                    "pipeline": {"config": live.meta.get("config") if live else None,
                                 "channels": list(pipe.recall.channels) if pipe is not None else [],
                                 "ranker": pipe.spec.rank.ranker if pipe is not None else None,
                                 "fitted_events": live.meta.get("n_events") if live else None,
                                 "fit_s": live.meta.get("fit_s") if live else None,
                                 "created_at": live.meta.get("created_at") if live else None},
                    "training": dict(self.training), "events_since_train": self._events_since_train,
                    "encoder": self.encoders.name, "query_encoder": self.encoders.queries.name,
                    "index": self.config.index, "index_source": self.index_source,
                    "search_reranker": ({"model": self.cross_encoder.name, "top": self.config.rerank_top,
                                         "mix": self.config.rerank_mix} if self.cross_encoder is not None else None),
                    "bm25_delta": self.catalog.keyword.delta_size,
                    "applied_seq": self._applied_seq, "ready": self.ready,
                    "drift": self.drift.report(live),
                    "worker": {"id": self.worker_id, "change_seq": self._change_seq,
                               "follower": self._follower.info() if self._follower is not None else None},
                    "experiment": self._experiment.experiment.to_json() if self._experiment else None}


@dataclasses.dataclass
class _Pending:
    """A recommend call waiting for (or in) a coalesced batch."""

    user_id: str
    k: int
    explain: bool
    ranking: Ranking | None = None
    error: BaseException | None = None
    done: bool = False


def _copy_timer(t: StageTimer) -> StageTimer:
    out = StageTimer()
    out.ms = dict(t.ms)
    out._t0 = t._t0
    return out


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
