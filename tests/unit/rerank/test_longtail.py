"""The long-tail re-ranker: head definition shared with the evaluator, strength moves the
tail share, online counts, and the pipeline option end to end."""

import numpy as np
import pytest

from lmrec.data.splits import temporal_leave_one_out
from lmrec.eval.evaluator import evaluate
from lmrec.eval.fairness import head_items, item_popularity
from lmrec.pipeline import RecPipeline
from lmrec.rank.history import UserHistory
from lmrec.rerank.base import StageContext
from lmrec.rerank.longtail import LongTailReranker
from lmrec.testing.toy import toy_dataset
from lmrec.types import Candidates, Event, Query


@pytest.fixture(scope="module")
def ctx():
    ds = toy_dataset(n_users=80, n_items=60, events_per_user=10, seed=1)
    return StageContext(ds, UserHistory().fit(ds.interactions, ds.n_users), encoder="fake")


def _pools(ctx, n=20, size=30, seed=0):
    """Candidate lists whose scores follow popularity (head items first, as CF rankings do)."""
    rng = np.random.default_rng(seed)
    pop = np.bincount(ctx.history.seen_matrix(ctx.n_items).indices, minlength=ctx.n_items)
    head = np.argsort(-pop, kind="stable")[:12]
    tail = np.setdiff1d(np.arange(ctx.n_items), head)
    out = []
    for _ in range(n):
        items = np.r_[rng.choice(head, 10, replace=False), rng.choice(tail, size - 10, replace=False)]
        s = np.log1p(pop[items]) + 0.3 * rng.normal(size=size)
        order = np.argsort(-s)
        out.append(Candidates(items[order], s[order]))
    return out


def _tail_share(r, ctx, pools, k=10):
    head = r.head()
    return np.mean([(~head[r(Query(user=u), c, k).items]).mean() for u, c in enumerate(pools)])


def test_head_is_the_evaluators_head(ctx):
    r = LongTailReranker()
    r.bind(ctx)
    pop = item_popularity(ctx.history.seen_matrix(ctx.n_items), ctx.n_items)
    np.testing.assert_array_equal(r.head(), head_items(pop, 0.2))
    assert r.head().sum() == 12


@pytest.mark.parametrize("method", ["xquad", "penalty"])
def test_strength_zero_keeps_the_order_and_more_strength_more_tail(ctx, method):
    pools = _pools(ctx)
    r0 = LongTailReranker(strength=0.0, method=method)
    r0.bind(ctx)
    for c in pools:
        assert r0(Query(user=0), c, 10).items.tolist() == c.items[:10].tolist()
    shares = []
    for s in (0.0, 0.3, 0.6, 0.9):
        r = LongTailReranker(strength=s, method=method)
        r.bind(ctx)
        shares.append(_tail_share(r, ctx, pools))
    assert shares == sorted(shares) and shares[-1] > shares[0] + 0.1, shares


def test_xquad_balances_head_and_tail_at_full_strength(ctx):
    r = LongTailReranker(strength=1.0)
    r.bind(ctx)
    head = r.head()
    items = np.r_[np.flatnonzero(head)[:8], np.flatnonzero(~head)[:8]]  # head items ranked first
    out = r(Query(user=0), Candidates(items, np.linspace(1, 0, 16)), 8)
    assert (~head[out.items]).sum() == 4  # P(tail) = 0.5: half of the list
    assert out.stage_scores["longtail"].shape == (8,)


def test_penalty_at_full_strength_orders_by_popularity(ctx):
    r = LongTailReranker(strength=1.0, method="penalty")
    r.bind(ctx)
    c = _pools(ctx, n=1)[0]
    out = r(Query(user=0), c, 30)
    pop = r.popularity[out.items]
    assert (np.diff(pop) >= 0).all()


def test_user_target_follows_the_users_history(ctx):
    r = LongTailReranker(strength=0.8, target="user")
    r.bind(ctx)
    head = r.head()
    users = range(ctx.dataset.n_users)
    tail_share = np.array([(~head[ctx.history.seen(u)]).mean() for u in users])
    lo, hi = int(np.argmin(tail_share)), int(np.argmax(tail_share))
    assert r._tail_target(Query(user=lo)) < r._tail_target(Query(user=hi))
    pools = _pools(ctx, n=1)
    a = (~head[r(Query(user=lo), pools[0], 10).items]).sum()
    b = (~head[r(Query(user=hi), pools[0], 10).items]).sum()
    assert a <= b
    assert r._tail_target(Query(user=None)) == 0.5


def test_update_counts_each_new_user_item_pair_once():
    ds = toy_dataset(n_users=10, n_items=20, events_per_user=4, seed=0)
    hist = UserHistory().fit(ds.interactions, ds.n_users)
    r = LongTailReranker()
    r.bind(StageContext(ds, hist, encoder="fake"))
    before = r.popularity.copy()
    item = int(np.flatnonzero(before == 0)[0])
    new = [Event(1, item, 2_000_000), Event(1, item, 2_000_001), Event(2, item, 2_000_002)]
    old = int(ds.interactions.item[ds.interactions.user == 3][0])
    again = [Event(3, old, 2_000_003)]  # user 3 had this item already
    for batch in (new, again):
        hist.update(batch)  # the pipeline updates the shared history first
        r.update(batch)
    assert r.popularity[item] == 2  # users 1 and 2, user 1's repeat not counted
    assert r.popularity[old] == before[old]
    r.update([Event(4, 25, 2_000_004)])  # an item beyond the table grows it
    assert len(r.popularity) == 26


def test_pipeline_option_raises_the_evaluated_long_tail_share():
    # users here saw most of the small head, so their lists are mostly tail already: xquad
    # (which aims at a 50/50 list) would not raise it, the penalty does
    split = temporal_leave_one_out(toy_dataset(n_users=150, n_items=80, events_per_user=12, seed=3))
    shares = []
    for s in (0.0, 0.7):
        pipe = RecPipeline(spec={
            "encoder": "fake",
            "channels": [{"name": "ease", "model": "ease", "params": {"lam": 10.0}, "quota": 40}],
            "rank": {"ranker": "none"},
            "rerank": {"stages": [{"name": "seen"}, {"name": "longtail", "params": {"strength": s, "method": "penalty"}}]}})
        pipe.fit(split.train_valid, split.dataset)
        res = evaluate(pipe, split, stage="test")
        shares.append(res.metrics["longtail@10"])
    assert shares[1] > shares[0] + 0.1, shares
