"""Sessions: `RecPipeline.recommend_for_history` scores an anonymous history through the same
stages as a stored user, touching no stored state; `evaluate_sessions` scores "history -> next
item" test rows without stand-in users."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import scipy.sparse as sp

from lmrec.eval.sessions import evaluate_sessions
from lmrec.pipeline import RecPipeline
from lmrec.testing.toy import toy_dataset
from lmrec.types import SESSION_KEY, Query

CHANNELS = [{"name": "ease", "model": "ease", "params": {"lam": 10.0}, "quota": 25},
            {"name": "lm", "model": "lm-recency", "params": {"encoder": "fake", "half_life": 3.0}, "quota": 25},
            {"name": "trans", "model": "transitions", "quota": 25},
            {"name": "popular", "model": "popular", "quota": 10, "min_history": 0, "weight": 0.0,
             "fallback_only": True}]
USER_FEATURES = ["user", "lm", "category", "sequence", "kg"]


@pytest.fixture(scope="module")
def ds():  # noqa: ANN201
    return toy_dataset(n_users=80, n_items=50, events_per_user=12)


@pytest.fixture(scope="module")
def pipe(ds) -> RecPipeline:  # noqa: ANN001
    spec = {"encoder": "fake", "channels": CHANNELS, "fallback": {"chain": ["popular"], "min_candidates": 5},
            "rank": {"ranker": "none"}, "rerank": {"n": 20}}
    return RecPipeline(spec=spec).fit(ds.interactions, ds)


@pytest.fixture(scope="module")
def ranked(ds) -> RecPipeline:  # noqa: ANN001
    """A learned ranker over features, some of them keyed by the stored user."""
    spec = {"encoder": "fake", "channels": CHANNELS, "fallback": {"chain": ["popular"], "min_candidates": 5},
            "rank": {"ranker": "lambdarank", "params": {"lambdarank": {"n_estimators": 10}},
                     "features": [{"name": n} for n in ["channels", "popularity", *USER_FEATURES]]},
            "rerank": {"n": 20}}
    return RecPipeline(spec=spec).fit(ds.interactions, ds)


def _walk(obj: object, out: list, seen: set, depth: int = 0) -> None:
    """Every array, number and string reachable from `obj` (lmrec objects, containers)."""
    if isinstance(obj, (int, float, str, bool, type(None), np.generic)):
        out.append(repr(obj))
        return
    if id(obj) in seen or depth > 12:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        out.append((obj.dtype.str, obj.shape, hashlib.sha1(np.ascontiguousarray(obj).tobytes()).hexdigest()))
    elif sp.issparse(obj):
        for part in (obj.data, getattr(obj, "indices", None), getattr(obj, "indptr", None)):
            if part is not None:
                _walk(part, out, seen, depth + 1)
    elif isinstance(obj, dict):
        for key in sorted(obj, key=repr):
            out.append(repr(key))
            _walk(obj[key], out, seen, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in (sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj):
            _walk(v, out, seen, depth + 1)
    elif type(obj).__module__.startswith("lmrec") and hasattr(obj, "__dict__"):
        out.append(type(obj).__name__)
        _walk(vars(obj), out, seen, depth + 1)


def _state(p: RecPipeline) -> str:
    out: list = []
    _walk((p.history, [c.model for c in p.recall.channels.values()], p.features, p.rerankers, p.n_users),
          out, set())
    assert len(out) > 50  # the walk reached the stages' arrays
    return hashlib.sha1(repr(out).encode()).hexdigest()


@pytest.mark.parametrize("u", [0, 7, 33])
def test_session_equals_the_stored_user_with_that_history(pipe: RecPipeline, u: int) -> None:
    items, times, values = pipe.history.events(u)
    stored = pipe.recommend(u, 10, explain=True)
    session = pipe.recommend_for_history(items, 10, times=times, values=values, explain=True)
    assert session.items.tolist() == stored.items.tolist()
    np.testing.assert_allclose(session.scores, stored.scores, rtol=1e-6)
    assert session.sources == stored.sources
    assert [e.get("closest") for e in session.explanations] == [e.get("closest") for e in stored.explanations]
    assert not set(session.items.tolist()) & set(items.tolist())  # the seen filter reads the session


def test_session_touches_no_stored_state(pipe: RecPipeline, ranked: RecPipeline, ds) -> None:  # noqa: ANN001
    for p in (pipe, ranked):
        p.recommend(3, 5, explain=True)  # fill the caches any request fills (catalog embeddings)
        before = _state(p)
        items = np.array([4, 9, 9, 17], np.int64)
        for _ in range(2):
            p.recommend_for_history(items, 10, explain=True)
            p.recommend_for_history(items, 10, times=[5, 6, 7, 8], kinds=["view", "click", "cart", "purchase"])
        assert _state(p) == before
        assert p.n_users == ds.n_users and p.history.n_users == ds.n_users


def test_session_without_times_or_history(pipe: RecPipeline) -> None:
    recent = pipe.recommend_for_history([4, 9, 17], 8)
    assert len(recent) == 8 and not {4, 9, 17} & set(recent.items.tolist())
    # the order of an untimed history counts: the transitions channel reads the latest item
    assert pipe.recommend_for_history([17, 9, 4], 8).items.tolist() != recent.items.tolist()
    empty = pipe.recommend_for_history([], 5)  # nothing yet: the fallback (popularity) serves it
    assert empty.items.tolist() == pipe.recommend(10_000, 5).items.tolist()


def test_keep_kinds_drops_other_kinds(pipe: RecPipeline) -> None:
    base = pipe.recommend_for_history([4, 9], 8, times=[1, 2], kinds=["view", "click"], keep_kinds=["view", "click"])
    more = pipe.recommend_for_history([4, 30, 9], 8, times=[1, 2, 3], kinds=["view", "impression", "click"],
                                      keep_kinds=["view", "click"])
    assert more.items.tolist() == base.items.tolist()
    kept = pipe.recommend_for_history([4, 30, 9], 8, times=[1, 2, 3], kinds=["view", "impression", "click"])
    assert 30 not in kept.items.tolist()  # kept as history: the seen filter drops it


@pytest.mark.parametrize("kwargs, match", [
    ({"items": [1, 50]}, r"items\[1\]: 50 is not an item index"),
    ({"items": [-1]}, r"items\[0\]"),
    ({"items": [1.5]}, "integers"),
    ({"items": [1, 2], "times": [1]}, "times: 1 entries for 2 items"),
    ({"items": [1, 2], "kinds": ["view", "glance"]}, r"kinds\[1\]: unknown event kind 'glance'"),
    ({"items": [1], "values": [float("nan")]}, r"values\[0\]"),
])
def test_bad_sessions_name_the_argument(pipe: RecPipeline, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pipe.recommend_for_history(k=5, **kwargs)


def test_session_features(ranked: RecPipeline) -> None:
    """The user-keyed features `user`, `lm`, `category`, `sequence` and `kg` are computed from the
    session: equal to a stored user's with the same history and request time."""
    for u in (5, 17):
        items, times, values = ranked.history.events(u)
        q = ranked.session_query(items, times=times, values=values)
        assert q.user is None and q.context[SESSION_KEY][0].tolist() == items.tolist()
        stored = ranked._resolve(Query(user=u))
        assert q.time == stored.time
        pool = ranked.candidates([stored])
        got, want = ranked._features([q], pool), ranked._features([stored], pool)
        cols = got.columns
        keyed = [j for j, c in enumerate(cols) if c.startswith(("user:", "seq:", "cat:"))
                 or c in ("lm:profile_cos", "lm:recent_max_cos", "lm:last_cos")]
        assert len(keyed) == 11
        assert np.isfinite(want.X[:, keyed]).any(axis=0).all()  # the stored user has every column
        kg = [j for j, c in enumerate(cols) if c in ("kg:mean", "kg:max")]
        assert len(kg) == 2 and np.isfinite(got.X[:, kg]).all() and (got.X[:, kg] > 0).any()
        np.testing.assert_allclose(got.X, want.X, rtol=1e-5, atol=1e-6)
        # a session of other items: other values (the columns read the session, not a default)
        other = ranked.session_query(np.setdiff1d(np.arange(50), items)[:6])
        diff = ranked._features([other], pool).X[:, keyed]
        assert not np.allclose(np.nan_to_num(diff, nan=-9), np.nan_to_num(want.X[:, keyed], nan=-9))
    out = ranked.recommend_for_history([4, 9, 17], 10, explain=True)
    assert len(out) == 10 and np.isfinite(out.scores).all()


def test_session_with_items_added_later(ranked: RecPipeline, ds) -> None:  # noqa: ANN001
    """A session may name an item added after the fit (every stage knows it from add_items)."""
    import copy

    p = copy.deepcopy(ranked)
    p.upsert_items(["brand-new"], [{"title": "brand new item", "categories": ["comedy"]}])
    new = p.dataset.items.index("brand-new")
    out = p.recommend_for_history([4, new, 9], 10, explain=True)
    assert len(out) == 10 and new not in out.items.tolist()


def test_evaluate_sessions(pipe: RecPipeline, ds) -> None:  # noqa: ANN001
    sessions, targets = [], []
    for u in range(20):
        items = pipe.history.items(u)
        sessions.append(items[:-1])
        targets.append(int(items[-1]))
    got = evaluate_sessions(pipe, sessions, targets, k=10)
    assert got["n_sessions"] == 20
    # by hand: the same lists, scored as HR / MRR
    lists = [pipe.recommend_for_history(s, 10, exclude_seen=False).items.tolist() for s in sessions]
    hits = [t in lst for t, lst in zip(targets, lists)]
    assert got["HR@10"] == pytest.approx(np.mean(hits))
    mrr = np.mean([1.0 / (lst.index(t) + 1) if t in lst else 0.0 for t, lst in zip(targets, lists)])
    assert got["MRR@10"] == pytest.approx(mrr)
    ndcg = np.mean([1.0 / np.log2(lst.index(t) + 2) if t in lst else 0.0 for t, lst in zip(targets, lists)])
    assert got["NDCG@10"] == pytest.approx(ndcg)
    # several targets per session (a set of next items) and seen items excluded
    multi = evaluate_sessions(pipe, sessions[:5], [[t, 0] for t in targets[:5]], k=10, exclude_seen=True)
    assert multi["n_sessions"] == 5 and 0.0 <= multi["Recall@10"] <= 1.0
    with pytest.raises(ValueError, match="targets: 2 entries for 3 sessions"):
        evaluate_sessions(pipe, sessions[:3], targets[:2])


def test_evaluate_sessions_with_a_model_equals_its_one_channel_pipeline(ds) -> None:  # noqa: ANN001
    from lmrec.component import create

    model = create("transitions").fit(ds.interactions, ds)
    spec = {"encoder": "fake", "channels": [{"name": "trans", "model": "transitions", "quota": 50}],
            "rank": {"ranker": "none"}, "rerank": {"n": 10, "stages": []}}
    one = RecPipeline(spec=spec).fit(ds.interactions, ds)
    sessions = [one.history.items(u)[:-1] for u in range(30)]
    targets = [int(one.history.items(u)[-1]) for u in range(30)]
    by_model = evaluate_sessions(model, sessions, targets, k=10)
    assert by_model == pytest.approx(evaluate_sessions(one, sessions, targets, k=10))
    assert by_model["HR@10"] > 0
    seen = evaluate_sessions(model, sessions, targets, k=10, exclude_seen=True)
    assert seen["HR@10"] != by_model["HR@10"] or seen["MRR@10"] != by_model["MRR@10"]
    id_based = create("bpr").fit(ds.interactions, ds)  # knows fit-time users only
    with pytest.raises(ValueError, match="cannot score a session"):
        evaluate_sessions(id_based, sessions[:2], targets[:2])


def test_numeric_feature_reads_the_session() -> None:
    from lmrec.rank.item_features import NumericAttributes
    from lmrec.rank.features import PairBatch
    from lmrec.types import Candidates

    data = toy_dataset(n_users=20, n_items=30, events_per_user=6)
    data.item_table.attributes["year"] = [1990 + i if i % 4 else None for i in range(30)]
    f = NumericAttributes(attributes=["year"]).fit(data.interactions, data)
    p = RecPipeline(spec={"encoder": "fake", "channels": CHANNELS[:1], "rank": {"ranker": "none"}}).fit(
        data.interactions, data)
    cands = Candidates(np.arange(30), np.zeros(30))
    for u in (0, 3):
        items, times, values = p.history.events(u)
        q = p.session_query(items, times=times, values=values)
        got = f.compute(PairBatch.build([q], [cands]))
        want = f.compute(PairBatch.build([Query(user=u)], [cands]))
        assert np.isfinite(want[:, 1]).sum() > 10
        np.testing.assert_allclose(got, want, rtol=1e-6)
    only_none = f.compute(PairBatch.build([p.session_query([0, 4])], [cands]))  # items without a year
    assert np.isnan(only_none[:, 1]).all() and np.isfinite(only_none[:, 0]).sum() > 10
