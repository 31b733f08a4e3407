"""SASRec+: it learns a predictable next item, the mask is causal, padding and history
beyond max_len do not matter, save/load reproduces scores, FGM trains, bad config fails."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pydantic import ValidationError  # noqa: E402

from lmrec.component import DEFAULT_GRIDS, create, load_model  # noqa: E402
from lmrec.data.dataset import Dataset, build_dataset  # noqa: E402
from lmrec.data.splits import temporal_leave_one_out  # noqa: E402
from lmrec.eval.evaluator import evaluate  # noqa: E402
from lmrec.models.sasrec import IDItemEncoder, SASRec, SASRecConfig, SASRecNetwork  # noqa: E402

N_ITEMS = 24
FAST = {"hidden": 16, "n_blocks": 1, "max_len": 8, "batch_size": 16, "warmup_steps": 5, "lr": 5e-3,
        "dropout": 0.0, "threads": 1}


def cyclic_dataset(n_users: int = 60, length: int = 9, seed: int = 0) -> Dataset:
    """Each user walks the cycle 0 -> 1 -> ... -> 23 -> 0 from a random start: the next item
    is always (last + 1) mod 24, never seen before (length < 24). Two extra users share the
    last 8 items of their train + valid history but not the ones before ("same-a", "same-b")."""
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u in range(n_users):
        start = int(rng.integers(N_ITEMS))
        for j in range(length):
            users.append(f"u{u}")
            items.append((start + j) % N_ITEMS)
            ts.append(j)
    for name, head in (("same-a", [20, 21]), ("same-b", [14, 12])):
        for j, it in enumerate(head + list(range(2, 11))):  # 10 is their test item
            users.append(name)
            items.append(it)
            ts.append(j)
    return build_dataset("cyclic", users, items, ts, item_ids=list(range(N_ITEMS)))


@pytest.fixture(scope="module")
def cyclic() -> tuple[Dataset, SASRec]:
    ds = cyclic_dataset()
    split = temporal_leave_one_out(ds)
    model = SASRec(epochs=25, **FAST).fit(split.train_valid, ds)
    return ds, model


def test_learns_a_predictable_next_item(cyclic: tuple[Dataset, SASRec]) -> None:
    ds, model = cyclic
    losses = [e["loss"] for e in model.train_history.epochs]
    assert losses[-1] < 0.3 * losses[0], losses
    assert model.train_history.best_valid > 0.9
    res = evaluate(model, temporal_leave_one_out(ds), stage="test")
    assert res.metrics["NDCG@10"] > 0.9 and res.metrics["HR@10"] == 1.0


def test_validation_holds_out_every_users_last_event(cyclic: tuple[Dataset, SASRec]) -> None:
    ds, model = cyclic
    # every user has 2+ events in train + valid and never repeats an item
    assert model.train_history.valid_users == ds.n_users
    assert 1 <= model.train_history.best_epoch <= len(model.train_history.epochs)


def test_only_the_last_max_len_items_count(cyclic: tuple[Dataset, SASRec]) -> None:
    ds, model = cyclic
    a, b = ds.users.index("same-a"), ds.users.index("same-b")
    scores = model.score([a, b])
    np.testing.assert_array_equal(scores[0], scores[1])


def test_user_without_history_gets_popularity(cyclic: tuple[Dataset, SASRec]) -> None:
    ds, _ = cyclic
    split = temporal_leave_one_out(ds)
    cold = split.train_valid.user != 0
    model = SASRec(epochs=1, **FAST).fit(split.train_valid.select(cold), ds)
    counts = np.bincount(split.train_valid.select(cold).item, minlength=ds.n_items)
    scores = model.score([0])[0]
    assert np.array_equal(np.argsort(-scores, kind="stable"), np.argsort(-counts, kind="stable"))


def _network(**params) -> SASRecNetwork:
    torch.manual_seed(0)
    cfg = SASRecConfig(hidden=16, n_blocks=2, n_heads=2, max_len=12, dropout=0.3, **params)
    return SASRecNetwork(IDItemEncoder(30, 16), cfg).eval()


def test_future_items_do_not_change_earlier_outputs() -> None:
    net = _network()
    tokens = torch.tensor([[3, 5, 7, 9, 2, 11, 4]])
    later = tokens.clone()
    later[0, 4:] = torch.tensor([20, 21, 22])
    with torch.no_grad():
        h, h2 = net.hidden_states(tokens, net.table()), net.hidden_states(later, net.table())
    torch.testing.assert_close(h[:, :4], h2[:, :4])
    assert not torch.allclose(h[:, 4], h2[:, 4])


def test_padding_does_not_change_outputs() -> None:
    net = _network()
    tokens = torch.tensor([[3, 5, 7, 9, 2]])
    padded = torch.tensor([[3, 5, 7, 9, 2, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6, 7, 8, 9]])
    with torch.no_grad():
        table = net.table()
        alone = net.user_states(tokens, torch.tensor([5]), table)
        batched = net.user_states(padded, torch.tensor([5, 9]), table)
        h, hp = net.hidden_states(tokens, table), net.hidden_states(padded, table)
    torch.testing.assert_close(alone[0], batched[0])
    torch.testing.assert_close(h[0], hp[0, :5])


def test_padding_row_stays_zero_and_gets_no_gradient() -> None:
    enc = IDItemEncoder(5, 4)
    table = enc()
    assert table.shape == (6, 4) and float(table[0].detach().abs().sum()) == 0.0
    table[torch.tensor([0, 0, 2])].sum().backward()
    assert float(enc.weight.grad.abs().sum(dim=1)[1]) > 0 and float(enc.weight.grad[[0, 2, 3, 4]].abs().sum()) == 0


def test_save_load_reproduces_scores_and_checks_the_hash(cyclic: tuple[Dataset, SASRec], tmp_path: Path) -> None:
    ds, model = cyclic
    path = model.save(tmp_path / "m")
    assert {p.name for p in path.iterdir()} >= {"config.json", "model.safetensors", "state.npz", "training.json"}
    loaded = load_model(path)
    assert isinstance(loaded, SASRec) and loaded.params == model.params
    users = np.arange(ds.n_users)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))
    assert loaded.training_summary()["best_epoch"] == model.train_history.best_epoch

    edited = tmp_path / "edited"
    shutil.copytree(path, edited)
    cfg = json.loads((edited / "config.json").read_text())
    cfg["params"]["dropout"] = 0.5
    (edited / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="config_hash"):
        SASRec.load(edited)

    other = SASRec(epochs=1, **{**FAST, "lr": 1e-3}).fit(model_train(ds), ds).save(tmp_path / "other")
    shutil.copy(other / "model.safetensors", tmp_path / "m" / "model.safetensors")
    with pytest.raises(ValueError, match="weights were saved for config"):
        SASRec.load(path)


def model_train(ds: Dataset):
    return temporal_leave_one_out(ds).train_valid


def test_fgm_trains_differently_but_finitely() -> None:
    ds = cyclic_dataset(n_users=20)
    train = model_train(ds)
    plain = SASRec(epochs=3, **FAST).fit(train, ds)
    adv = SASRec(epochs=3, fgm=True, fgm_epsilon=0.5, **FAST).fit(train, ds)
    s_plain, s_adv = plain.score(np.arange(ds.n_users)), adv.score(np.arange(ds.n_users))
    assert np.isfinite(s_adv).all() and not np.allclose(s_plain, s_adv)
    assert all(np.isfinite(e["loss"]) for e in adv.train_history.epochs)


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ValidationError, match="n_heads"):
        SASRec(hidden=10, n_heads=3)
    with pytest.raises(ValidationError, match="windows"):
        SASRec(windows="middle")
    with pytest.raises(ValidationError, match="dropout"):
        SASRec(dropout=1.0)
    with pytest.raises(ValidationError, match="max_len"):
        SASRec(max_len=0)


def test_too_short_histories_are_an_error() -> None:
    ds = build_dataset("short", ["a", "a", "b"], [1, 2, 3], [0, 1, 0])
    with pytest.raises(ValueError, match="3 or more training events"):
        SASRec(epochs=1, **FAST).fit(ds.interactions, ds)


def test_registered_with_a_small_grid() -> None:
    assert isinstance(create("sasrec", {"max_len": 200}), SASRec)
    grid = DEFAULT_GRIDS["sasrec"]
    assert 1 < len(grid) <= 12
    for point in grid:
        create("sasrec", point)
