"""Every metric against numbers worked out by hand (the arithmetic is in the comments)."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from lmrec.eval import metrics as M

L3 = math.log2(3)  # discount denominator of rank 2
# three users, lists of length 3
RECS = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
TRUTH = [np.array([3]), np.array([10]), np.array([7, 9])]


def test_hit_rate():
    # user 0: item 3 at rank 3; user 1: no hit; user 2: item 7 at rank 1
    assert M.hit_rate(RECS, TRUTH, 3).tolist() == [1, 0, 1]
    assert M.hit_rate(RECS, TRUTH, 2).tolist() == [0, 0, 1]


def test_ndcg_binary():
    # user 0: hit at rank 3, |truth| = 1 -> (1/log2(4)) / 1 = 0.5
    # user 2: hits at ranks 1 and 3, |truth| = 2 -> (1 + 1/log2(4)) / (1 + 1/log2(3)) = 1.5 / 1.6309
    expected = [0.5, 0.0, 1.5 / (1 + 1 / L3)]
    np.testing.assert_allclose(M.ndcg(RECS, TRUTH, 3), expected)


def test_ndcg_hit_at_rank_3_with_two_relevant():
    # (1/log2(4)) / (1 + 1/log2(3)) = 0.5 / 1.6309 = 0.30657
    v = M.ndcg(np.array([[5, 3, 1]]), [np.array([1, 7])], 3)
    np.testing.assert_allclose(v, [0.5 / (1 + 1 / L3)])
    assert v[0] == pytest.approx(0.30657, abs=1e-5)


def test_ndcg_ideal_is_capped_at_k():
    # |truth| = 5 > K = 2; both ranks hit -> DCG = IDCG = 1 + 1/log2(3) -> 1.0
    assert M.ndcg(np.array([[0, 1]]), [np.arange(5)], 2)[0] == pytest.approx(1.0)


def test_mrr():
    # user 0: first hit at rank 3 -> 1/3; user 1: none -> 0; user 2: rank 1 -> 1
    np.testing.assert_allclose(M.mrr(RECS, TRUTH, 3), [1 / 3, 0, 1])
    # cut at k=2, user 0's hit at rank 3 no longer counts
    np.testing.assert_allclose(M.mrr(RECS, TRUTH, 2), [0, 0, 1])


def test_recall_and_precision():
    # recall: hits / |truth| = 1/1, 0/1, 2/2; precision: hits / K = 1/3, 0/3, 2/3
    np.testing.assert_allclose(M.recall(RECS, TRUTH, 3), [1, 0, 1])
    np.testing.assert_allclose(M.precision(RECS, TRUTH, 3), [1 / 3, 0, 2 / 3])
    # one hit out of four relevant items -> 1/4
    assert M.recall(np.array([[0, 9]]), [np.array([0, 1, 2, 3])], 2)[0] == pytest.approx(0.25)


def test_padding_is_never_a_hit():
    # list [2, pad, pad], truth {2, 5}: HR 1, NDCG 1 / (1 + 1/log2(3)), MRR 1, Recall 1/2, Precision 1/3
    recs, truth = np.array([[2, -1, -1]]), [np.array([2, 5])]
    out = M.ranking_metrics(recs, truth, [3])
    assert out["HR@3"][0] == 1
    assert out["NDCG@3"][0] == pytest.approx(1 / (1 + 1 / L3))
    assert out["MRR@3"][0] == 1
    assert out["Recall@3"][0] == pytest.approx(0.5)
    assert out["Precision@3"][0] == pytest.approx(1 / 3)
    # an all-padding list scores 0 everywhere
    empty = M.ranking_metrics(np.full((1, 3), -1), truth, [3])
    assert all(v[0] == 0 for v in empty.values())


def test_repeated_item_counts_once():
    # [4, 4, 4] with truth {4, 9}: one hit at rank 1 -> Recall 1/2 (not 3/2), Precision 1/3
    recs, truth = np.array([[4, 4, 4]]), [np.array([4, 9])]
    assert M.recall(recs, truth)[0] == pytest.approx(0.5)
    assert M.precision(recs, truth)[0] == pytest.approx(1 / 3)
    assert M.ndcg(recs, truth)[0] == pytest.approx(1 / (1 + 1 / L3))


def test_truth_forms_agree():
    dense = np.zeros((3, 11), dtype=bool)
    for r, t in enumerate(TRUTH):
        dense[r, t] = True
    a = M.ranking_metrics(RECS, TRUTH, [2, 3])
    b = M.ranking_metrics(RECS, dense, [2, 3])
    c = M.ranking_metrics(RECS, sp.csr_matrix(dense), [2, 3])
    assert sorted(a) == sorted(f"{m}@{k}" for m in ["HR", "NDCG", "MRR", "Recall", "Precision"] for k in (2, 3))
    for key in a:
        np.testing.assert_allclose(a[key], b[key])
        np.testing.assert_allclose(a[key], c[key])
    with pytest.raises(ValueError, match="rows"):
        M.ranking_metrics(RECS, dense[:2], [3])


def test_empty_truth_scores_zero():
    out = M.ranking_metrics(np.array([[1, 2]]), [np.array([], dtype=np.int64)], [2])
    assert all(v[0] == 0 for v in out.values())


def test_graded_ndcg_exponential_and_linear():
    # grades: item0 = 3, item1 = 2, item2 = 0 (judged, irrelevant), item3 = 1; list [1, 5, 0]
    gains = M.gains_matrix([{0: 3, 1: 2, 2: 0, 3: 1}], n_items=6)
    recs = np.array([[1, 5, 0]])
    # exp: DCG = (2^2-1)/1 + 0 + (2^3-1)/log2(4) = 3 + 3.5 = 6.5
    #      IDCG = 7/1 + 3/log2(3) + 1/log2(4) = 7 + 1.8928 + 0.5
    exp = 6.5 / (7 + 3 / L3 + 0.5)
    assert M.graded_ndcg(recs, gains, 3)[0] == pytest.approx(exp)
    assert exp == pytest.approx(0.69202, abs=1e-5)
    # linear: DCG = 2 + 3/2 = 3.5; IDCG = 3 + 2/log2(3) + 1/2
    lin = 3.5 / (3 + 2 / L3 + 0.5)
    assert M.graded_ndcg(recs, gains, 3, gain="linear")[0] == pytest.approx(lin)
    # perfect order -> 1; no positive judgment -> 0
    assert M.graded_ndcg(np.array([[0, 1, 3]]), gains, 3)[0] == pytest.approx(1.0)
    assert M.graded_ndcg(recs, M.gains_matrix([{2: 0}], 6), 3)[0] == 0
    with pytest.raises(ValueError, match="gain"):
        M.graded_ndcg(recs, gains, 3, gain="log")


def test_graded_ndcg_ideal_cut_at_k_and_dense_gains():
    # k = 1: ideal is the single best grade 3 -> 7; list starts with item1 (grade 2) -> 3/7
    dense = np.array([[3.0, 2.0, 0.0, 1.0, 0.0, 0.0]])
    assert M.graded_ndcg(np.array([[1, 0]]), dense, 1)[0] == pytest.approx(3 / 7)


def test_gains_from_arrays_keeps_the_highest_grade():
    # query 0 judges item 2 twice (grades 1 and 3) -> 3 is kept; query 1 judges item 0 with 2
    g = M.gains_from_arrays(np.array([0, 0, 1]), np.array([2, 2, 0]), np.array([1, 3, 2]), (2, 4))
    assert g.toarray().tolist() == [[0, 0, 3, 0], [2, 0, 0, 0]]
    # exp gain of grade 3 at rank 1 is the ideal -> 1
    assert M.graded_ndcg(np.array([[2], [0]]), g, 1).tolist() == [1.0, 1.0]


def test_coverage():
    recs = np.array([[0, 1, -1], [1, 2, 3]])
    # top-2 lists hold {0, 1, 2} of 10 candidates -> 0.3; top-3 add item 3 -> 0.4
    assert M.coverage(recs, 10, 2) == pytest.approx(0.3)
    assert M.coverage(recs, 10, 3) == pytest.approx(0.4)


def test_ild_with_vectors():
    vecs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # pairs (0,1): 1 - 0 = 1; (0,2) and (1,2): 1 - 1/sqrt(2) = 0.2929 -> mean (1 + 2 * 0.2929) / 3
    expected = (1 + 2 * (1 - 1 / math.sqrt(2))) / 3
    recs = np.array([[0, 1, 2], [0, 1, -1], [0, -1, -1]])
    np.testing.assert_allclose(M.intra_list_diversity(recs, item_vectors=vecs), [expected, 1.0, 0.0], atol=1e-6)


def test_ild_with_categories():
    cats = [["a"], ["a", "b"], ["c"], []]
    # Jaccard distance: (0,1) = 1 - 1/2 = 0.5; (0,2) = 1; (1,2) = 1 -> mean 2.5 / 3
    recs = np.array([[0, 1, 2]])
    assert M.intra_list_diversity(recs, item_categories=cats)[0] == pytest.approx(2.5 / 3)
    assert M.intra_list_diversity(recs, item_categories=M.category_matrix(cats))[0] == pytest.approx(2.5 / 3)
    # the same item twice is at distance 0; two items without categories too
    assert M.intra_list_diversity(np.array([[3, 3]]), item_categories=cats)[0] == 0
    with pytest.raises(ValueError, match="item_vectors or item_categories"):
        M.intra_list_diversity(recs)


def test_novelty():
    # 4 training users: item0 seen by all 4 (p = 1 -> 0 bits), item1 by 2 (p = 1/2 -> 1 bit),
    # item2 by 1 (p = 1/4 -> 2 bits), item3 by none (floor 1/4 -> 2 bits)
    train = sp.csr_matrix(np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]]))
    si = M.self_information(train)
    np.testing.assert_allclose(si, [0, 1, 2, 2])
    recs = np.array([[0, 1], [2, 3], [1, -1]])
    # means: (0 + 1)/2, (2 + 2)/2, 1/1 (padding ignored)
    np.testing.assert_allclose(M.novelty(recs, si), [0.5, 2.0, 1.0])


def test_bad_inputs():
    with pytest.raises(ValueError, match="2-d"):
        M.hit_rate(np.array([1, 2]), TRUTH)
    with pytest.raises(ValueError, match="positive"):
        M.hit_rate(RECS, TRUTH, 0)
