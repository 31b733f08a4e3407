"""Re-rankers and explanations on hand-made catalogs whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from lmrec.data.dataset import Dataset, IdMap, Interactions, ItemTable
from lmrec.eval.metrics import intra_list_diversity
from lmrec.types import Event, Query
from lmrec.rank.history import UserHistory
from lmrec.component import RERANKERS
from lmrec.rerank.base import StageContext
from lmrec.rerank.diversity import MMR, CategoryRunLimit, SimilarityThreshold
from lmrec.rerank.explain import Explainer
from lmrec.rerank.exploration import UCB, GumbelTopK, ThompsonSampling
from lmrec.rerank.filters import AvailabilityFilter, BlockFilter, SeenFilter
from lmrec.types import Candidates, EventKind

# items 0-2 are near-duplicates (cluster A), 3-4 cluster B, 5 alone; categories follow
VECS = np.array([[1, 0, 0], [0.99, 0.14, 0], [0.98, 0, 0.2], [0, 1, 0], [0, 0.98, 0.2], [0, 0, 1]], np.float32)
VECS /= np.linalg.norm(VECS, axis=1, keepdims=True)
CATS = [["a"], ["a"], ["a"], ["b"], ["b"], ["c"]]


def _ctx(history: Interactions | None = None) -> StageContext:
    table = ItemTable(title=[f"item {i}" for i in range(6)], categories=CATS,
                      attributes={"brand": ["x", "x", "y", "y", "z", "z"]},
                      available=np.array([True, True, True, True, False, True]))
    inter = history if history is not None else Interactions(np.array([0, 0]), np.array([0, 3]), np.array([1, 2]))
    ds = Dataset("hand", IdMap(["u0", "u1"], sort=False), IdMap([f"i{i}" for i in range(6)], sort=False), inter,
                 item_table=table)
    return StageContext(ds, UserHistory().fit(inter, 2), item_vectors=VECS)


def _cands(items: list[int], scores: list[float] | None = None) -> Candidates:
    scores = scores if scores is not None else list(np.linspace(1.0, 0.5, len(items)))
    return Candidates(np.array(items), np.array(scores), [("ch",)] * len(items))


def _bound(r):  # noqa: ANN001, ANN202
    r.bind(_ctx())
    return r


def test_filters() -> None:
    q = Query(user=0, context={"blocked": [2]})
    c = _cands([0, 1, 2, 3, 4, 5])
    assert _bound(SeenFilter())(q, c, 10).items.tolist() == [1, 2, 4, 5]
    assert _bound(AvailabilityFilter())(q, c, 10).items.tolist() == [0, 1, 2, 3, 5]
    assert _bound(BlockFilter(items=["i5"]))(q, c, 10).items.tolist() == [0, 1, 3, 4]
    with pytest.raises(ValueError, match="unknown item id 'i9'"):
        _bound(BlockFilter(items=["i9"]))
    avail = _bound(AvailabilityFilter())
    avail.set_available(4, True)
    avail.set_available(0, False)
    assert avail(q, c, 10).items.tolist() == [1, 2, 3, 4, 5]
    assert _bound(SeenFilter())(Query(user=None), c, 3).items.tolist() == [0, 1, 2]


def test_mmr_lambda_knob() -> None:
    c = _cands([0, 1, 2, 3, 4, 5])  # relevance follows cluster A first
    assert _bound(MMR(**{"lambda": 1.0}))(Query(), c, 6).items.tolist() == [0, 1, 2, 3, 4, 5]
    diverse = _bound(MMR(**{"lambda": 0.3}))(Query(), c, 3).items.tolist()
    assert diverse == [0, 3, 5]  # one per cluster
    ild = [intra_list_diversity(_bound(MMR(**{"lambda": lam}))(Query(), c, 3).items[None, :], 3,
                                item_vectors=VECS)[0] for lam in (1.0, 0.7, 0.3)]
    assert ild[0] < ild[2] and ild == sorted(ild)
    assert MMR(**{"lambda": 0.4}).params == {"lambda": 0.4}
    with pytest.raises(ValueError):
        MMR(**{"lambda": 1.5})


def test_category_run_limit() -> None:
    c = _cands([0, 1, 2, 3, 4, 5])
    out = _bound(CategoryRunLimit(max_run=1))(Query(), c, 6).items.tolist()
    cats = [CATS[i][0] for i in out]
    assert all(a != b for a, b in zip(cats, cats[1:-1]))  # only the forced tail may repeat
    assert out[:4] == [0, 3, 1, 4]
    two = _bound(CategoryRunLimit(max_run=2))(Query(), _cands([0, 1, 2, 5]), 4).items.tolist()
    assert two == [0, 1, 5, 2]
    only_a = _bound(CategoryRunLimit(max_run=1))(Query(), _cands([0, 1, 2]), 3).items.tolist()
    assert only_a == [0, 1, 2]  # nothing else to place: the order is kept


def test_similarity_threshold() -> None:
    c = _cands([0, 1, 3, 2, 5])
    assert _bound(SimilarityThreshold(max_sim=0.9))(Query(), c, 5).items.tolist() == [0, 3, 5, 1, 2]
    assert _bound(SimilarityThreshold(max_sim=0.9, drop=True))(Query(), c, 5).items.tolist() == [0, 3, 5]


def test_thompson_learns_from_feedback() -> None:
    ts = _bound(ThompsonSampling(weight=1.0, seed=0))
    for _ in range(50):  # item 5 is clicked whenever shown, item 0 never
        for item, clicked in ((0, False), (5, True)):
            ts.update([Event(0, item, 0, EventKind.IMPRESSION)])
            if clicked:
                ts.update([Event(0, item, 0, EventKind.CLICK)])
    firsts = [ts(Query(user=1), _cands([0, 5]), 2).items[0] for _ in range(20)]
    assert firsts.count(5) == 20
    state = ts.state()
    assert state["shows"][5] == 50 and state["wins"][5] == 50
    again = _bound(ThompsonSampling(weight=1.0))
    again.set_state(state)
    assert again(Query(), _cands([0, 5]), 1).items.tolist() == [5]


def test_bandit_slots_keep_other_positions() -> None:
    ts = _bound(ThompsonSampling(slots=[1], seed=0))
    for _ in range(30):  # item 4 always bought when shown, the others never
        for item in range(5):
            ts.update([Event(0, item, 0, EventKind.IMPRESSION)])
        ts.update([Event(0, 4, 0, EventKind.PURCHASE)])
    out = ts(Query(), _cands([0, 1, 2, 3, 4]), 5).items.tolist()
    assert out[0] == 0 and out[1] == 4 and out[2:] == [1, 2, 3]


def test_ucb_prefers_unexplored_then_good() -> None:
    u = _bound(UCB(weight=1.0, c=1.0))
    for _ in range(100):
        u.update([Event(0, 0, 0, EventKind.IMPRESSION)])
    assert u(Query(), _cands([0, 1]), 2).items.tolist() == [1, 0]  # item 1 was never shown
    for _ in range(100):
        u.update([Event(0, 1, 0, EventKind.IMPRESSION)])
        u.update([Event(0, 0, 0, EventKind.CLICK)])
    assert u(Query(), _cands([0, 1]), 2).items.tolist() == [0, 1]


def test_gumbel_follows_plackett_luce() -> None:
    c = _cands([0, 1, 2], [2.0, 1.0, 0.0])
    assert _bound(GumbelTopK(temperature=0.0))(Query(), c, 3).items.tolist() == [0, 1, 2]
    g = _bound(GumbelTopK(temperature=1.0, seed=0))
    z = (c.scores - c.scores.mean()) / c.scores.std()
    expected = np.exp(z) / np.exp(z).sum()  # P(first = i) under Plackett-Luce
    firsts = np.bincount([g(Query(), c, 1).items[0] for _ in range(4000)], minlength=3) / 4000
    np.testing.assert_allclose(firsts, expected, atol=0.03)
    hot = _bound(GumbelTopK(temperature=100.0, seed=1))
    firsts = np.bincount([hot(Query(), c, 1).items[0] for _ in range(3000)], minlength=3) / 3000
    np.testing.assert_allclose(firsts, [1 / 3] * 3, atol=0.04)


def test_registry_builds_every_stage() -> None:
    for name in RERANKERS.names():
        r = RERANKERS.create(name)
        r.bind(_ctx())
        assert len(r(Query(user=0), _cands([0, 1, 2, 3, 5]), 3)) <= 3


def test_explanations_by_hand() -> None:
    ctx = _ctx()
    c = Candidates(np.array([1, 4, 5]), np.array([0.9, 0.5, 0.1]), [("ease",), ("ease", "lm"), ("popular",)],
                   {"ease": np.array([2.0, 1.0, np.nan])})
    ex = Explainer(ctx).explain(Query(user=0, text="Item 4 please"), c)
    assert [e["item_id"] for e in ex] == ["i1", "i4", "i5"] and [e["rank"] for e in ex] == [1, 2, 3]
    assert ex[0]["because"]["item_id"] == "i0"  # item 1 is closest to history item 0
    assert ex[1]["because"]["item_id"] == "i3"
    assert ex[0]["shared_categories"] == ["a"] and ex[2]["shared_categories"] == []
    assert ex[0]["shared_attributes"] == {"brand": "x"} and ex[1]["shared_attributes"] == {}
    assert ex[1]["channels"] == ["ease", "lm"]
    assert ex[2]["stage_scores"] == {}  # NaN stage scores are left out
    assert ex[1]["query_terms"] == ["4", "item"] and ex[0]["query_terms"] == ["item"]
    cold = Explainer(ctx).explain(Query(user=1), c)
    assert "because" not in cold[0] and cold[0]["shared_categories"] == []
