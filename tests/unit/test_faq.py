"""The FAQ answerer (lmrec.faq): answers, intents, abstaining, live upsert/remove, English, Chinese
and mixed questions; the evaluation protocol's threshold and metrics; the Bitext loader's split."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lmrec.faq import (FaqAnswerer, FaqEntry, at_threshold, choose_threshold, intent_metrics, precision_coverage,
                       score_questions)
from lmrec.faq.training import intent_groups, intent_triples
from lmrec.text.base import FakeEncoder

ENTRIES = [
    FaqEntry("ship-en", ("how long does shipping take", "when will my parcel arrive"), "Orders arrive in 3-5 days.",
             "delivery", "en"),
    FaqEntry("ret-en", ("how do I return an item", "can I send a product back for a refund"),
             "Return within 30 days for a full refund.", "returns", "en"),
    FaqEntry("pay-en", ("which payment methods do you accept", "can I pay with a credit card"),
             "We accept cards, PayPal and Alipay.", "payment", "en"),
    FaqEntry("ship-zh", ("发货要多久", "快递几天能到"), "下单后3到5天送达。", "delivery", "zh"),
    FaqEntry("ret-zh", ("怎么退货", "可以退款吗"), "30天内可无理由退货退款。", "returns", "zh"),
]


@pytest.fixture(params=["hybrid", "dense", "bm25"])
def faq(request: pytest.FixtureRequest) -> FaqAnswerer:
    enc = None if request.param == "bm25" else FakeEncoder(128)
    return FaqAnswerer(enc, retrieval=request.param).fit(ENTRIES)


def test_answers_english_and_chinese(faq: FaqAnswerer) -> None:
    a = faq.answer("when will my parcel arrive please")
    assert (a.best.entry_id, a.intent, a.answer, a.abstained) == ("ship-en", "delivery", ENTRIES[0].answer, False)
    assert a.best.question == "when will my parcel arrive"
    zh = faq.answer("我想退货")
    assert zh.best.entry_id == "ret-zh" and zh.intent == "returns"
    mixed = faq.answer("快递几天能到 parcel")
    assert mixed.best.entry_id == "ship-zh"
    assert all(m.entry_id != a.best.entry_id for m in a.alternatives)       # one match per entry
    assert len(faq.answer("refund", k=3).alternatives) <= 2


def test_live_upsert_and_remove(faq: FaqAnswerer) -> None:
    faq.upsert(FaqEntry("gift", ("do you sell gift cards",), "Yes, from 50 to 500.", "gift-cards"))
    assert faq.answer("do you sell gift cards").best.entry_id == "gift" and "gift" in faq and len(faq) == 6
    faq.upsert(FaqEntry("gift", ("can I buy a voucher",), "Vouchers: yes.", "gift-cards"))
    a = faq.answer("can I buy a voucher")
    assert (a.best.entry_id, a.answer) == ("gift", "Vouchers: yes.") and len(faq) == 6
    assert faq.remove("gift") and "gift" not in faq
    assert all(m.entry_id != "gift" for m in [faq.answer("can I buy a voucher").best] + faq.answer("voucher").alternatives
               if m is not None)
    assert faq.remove("gift", missing_ok=True) is False
    with pytest.raises(KeyError):
        faq.remove("gift")


def test_threshold_abstains() -> None:
    faq = FaqAnswerer(FakeEncoder(128), threshold=math.inf).fit(ENTRIES)
    a = faq.answer("how long does shipping take")
    assert a.abstained and a.answer is None and a.best is not None and a.intent == "delivery"
    faq.threshold = -math.inf
    assert not faq.answer("how long does shipping take").abstained
    # margin confidence: an exact stored wording is more confident than a vague question
    faq.threshold = None
    exact = faq.answer("which payment methods do you accept").confidence
    vague = faq.answer("do you").confidence
    assert exact > vague


def test_empty_and_bad_configuration() -> None:
    empty = FaqAnswerer(FakeEncoder()).fit([])
    a = empty.answer("anything")
    assert a.best is None and a.abstained and a.answer is None and math.isinf(a.confidence)
    with pytest.raises(ValueError, match="needs an encoder"):
        FaqAnswerer(None, retrieval="dense")
    with pytest.raises(ValueError, match="retrieval"):
        FaqAnswerer(FakeEncoder(), retrieval="sparse")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="question"):
        FaqEntry("x", ("  ",), "answer")
    with pytest.raises(ValueError, match="answer"):
        FaqEntry("x", ("q",), " ")
    e = FaqEntry.from_json({"entry_id": "a", "question": "one wording", "answer": "yes"})
    assert e.questions == ("one wording",) and e.intent_key == "entry:a"
    assert FaqEntry.from_json(e.to_json()) == e


def test_reranker_reorders_the_top() -> None:
    class Prefer:
        name = "prefer"

        def __call__(self, query: str, texts: list[str]) -> np.ndarray:
            return np.array([1.0 if "credit card" in t else 0.0 for t in texts], np.float32)

    faq = FaqAnswerer(FakeEncoder(128), reranker=Prefer(), top_n=10).fit(ENTRIES)
    a = faq.answer("how long does shipping take")
    assert a.best.entry_id == "pay-en" and a.best.similarity == 1.0


def test_precision_coverage_and_threshold() -> None:
    conf = np.array([0.9, 0.8, 0.8, 0.5, 0.2])
    ok = np.array([1, 1, 0, 1, 0])
    th, cov, prec = precision_coverage(conf, ok)
    assert th.tolist() == [0.9, 0.8, 0.5, 0.2]         # tied confidences form one cut-off
    assert cov.tolist() == [0.2, 0.6, 0.8, 1.0]
    assert np.allclose(prec, [1.0, 2 / 3, 0.75, 0.6])
    c = choose_threshold(conf, ok, target=0.7)
    assert (c.threshold, c.coverage, c.answered) == (0.5, 0.8, 4)
    assert choose_threshold(conf, ok, target=1.0).threshold == 0.9
    none = choose_threshold(np.array([0.3]), np.array([0]), target=0.5)
    assert math.isinf(none.threshold) and none.coverage == 0.0
    t = at_threshold(conf, ok, 0.8)
    assert (t.answered, round(t.precision, 4), t.coverage) == (3, 0.6667, 0.6)


def test_intent_metrics() -> None:
    m = intent_metrics([["a", "b"], ["b", "a"], ["c", "c"]], ["a", "a", "a"], k=10)
    assert m["Recall@1"] == pytest.approx(1 / 3) and m["Recall@5"] == pytest.approx(2 / 3)
    assert m["MRR@10"] == pytest.approx((1 + 0.5 + 0) / 3) and m["intent_accuracy"] == m["Recall@1"]


def test_score_questions_on_a_toy_faq() -> None:
    faq = FaqAnswerer(FakeEncoder(128)).fit(ENTRIES)
    matches, conf = score_questions(faq, ["when will my parcel arrive", "怎么退货"], k=5)
    assert [m[0].intent for m in matches] == ["delivery", "returns"] and conf.shape == (2,)


def test_training_data_from_intents() -> None:
    qs = ["where is my order", "track my parcel", "locate my package", "cancel my order", "stop my order"]
    it = ["t", "t", "t", "c", "c"]
    triples = intent_triples(qs, it, positives=2, negatives=2, hard=[[3, 4], [3], [4], [0], [1]], seed=0)
    assert all((it[qs.index(a)] == it[qs.index(b)]) == (y == 1.0) for a, b, y in triples)
    assert all(a != b for a, b, _ in triples)
    groups = intent_groups(qs, it, qs, it, [[0, 1, 3, 2, 4]] * 5, positives=2, negatives=2, exclude_self=True)
    assert len(groups) == 5
    g = groups[0]
    assert g.query == "where is my order" and "where is my order" not in g.texts
    assert g.labels == [1.0, 1.0, 0.0, 0.0] and set(g.texts[:2]) == {"track my parcel", "locate my package"}


def test_faq_split_is_within_each_intent() -> None:
    from lmrec.data.loaders.faq import FaqSet

    intents = [f"i{n % 4}" for n in range(200)]
    s = FaqSet("toy", [f"q{n}" for n in range(200)], intents, ["C"] * 200, [f"a{n}" for n in range(200)])
    sp = s.split((0.7, 0.1, 0.2), seed=3)
    allrows = np.concatenate([sp.stored, sp.val, sp.test])
    assert sorted(allrows.tolist()) == list(range(200))
    for part, share in ((sp.stored, 0.7), (sp.val, 0.1), (sp.test, 0.2)):
        per_intent = {i: sum(intents[r] == i for r in part) for i in set(intents)}
        assert all(v == round(share * 50) for v in per_intent.values()), per_intent
    assert np.array_equal(s.split(seed=3).test, sp.test) and not np.array_equal(s.split(seed=4).test, sp.test)
    with pytest.raises(ValueError, match="fractions"):
        s.split((0.5, 0.5, 0.5))


@pytest.mark.shared_data("bitext-faq")
def test_bitext_loader(shared_data_dir: Path) -> None:
    from lmrec.data.loaders import load_faq

    s = load_faq("bitext-faq", shared_data_dir)
    assert len(s) == 4514 and s.n_intents == 27 and len(set(s.categories)) == 11
    assert all(q.strip() for q in s.questions) and all(a.strip() for a in s.answers)
    sp = s.split()
    assert (len(sp.stored), len(sp.val), len(sp.test)) == (3159, 453, 902)
    assert not set(s.questions[i] for i in sp.test) & set(s.questions[i] for i in sp.stored)


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    from lmrec.data.loaders import load_dataset, load_faq

    with pytest.raises(FileNotFoundError, match="bitext-faq"):
        load_faq("bitext-faq", tmp_path)
    (tmp_path / "bitext-customer-support").mkdir()
    with pytest.raises(FileNotFoundError, match="customer_support_qa.csv"):
        load_faq("bitext-faq", tmp_path)
    with pytest.raises(ValueError, match="load_faq"):
        load_dataset("bitext-faq", tmp_path)
