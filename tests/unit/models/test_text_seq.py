"""Text-aware SASRec: cold items are scored from their text, the ID part is masked for
them and dropped at random in training, add_item works without refitting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pydantic import ValidationError  # noqa: E402

from lmrec.component import DEFAULT_GRIDS, create, load_model  # noqa: E402
from lmrec.data.dataset import Dataset, IdMap, ItemTable  # noqa: E402
from lmrec.models.text_seq import SASRecText, TextItemEncoder  # noqa: E402
from lmrec.testing.toy import GENRES, toy_dataset  # noqa: E402

FAST = {"encoder": "fake", "hidden": 16, "n_blocks": 1, "max_len": 10, "batch_size": 8, "warmup_steps": 5,
        "lr": 5e-3, "epochs": 12, "eval_every": 100, "threads": 1}


def with_cold_items(ds: Dataset, titles: list[str], genres: list[str]) -> Dataset:
    """`ds` plus items nobody interacted with, appended at the end of the catalog."""
    t = ds.item_table
    table = ItemTable(title=t.title + titles, categories=t.categories + [[g] for g in genres])
    ids = IdMap(ds.items.ids + [str(10_000 + i) for i in range(len(titles))], sort=False)
    return Dataset(ds.name, ds.users, ids, ds.interactions, item_table=table)


@pytest.fixture(scope="module")
def cold_ds() -> Dataset:
    ds = toy_dataset(n_users=60, n_items=36)
    # item 0 is "action movie 0"; the first cold item has exactly its text
    return with_cold_items(ds, [ds.item_table.title[0], "action movie new", "romance movie new"],
                           ["action", "action", "romance"])


@pytest.fixture(scope="module")
def text_only(cold_ds: Dataset) -> SASRecText:
    return SASRecText(id_fusion="none", **FAST).fit(cold_ds.interactions, cold_ds)


@pytest.fixture(scope="module")
def gated(cold_ds: Dataset) -> SASRecText:
    return SASRecText(id_fusion="gate", id_dropout=0.3, **FAST).fit(cold_ds.interactions, cold_ds)


def test_cold_item_with_a_warm_items_text_scores_like_it(cold_ds: Dataset, text_only: SASRecText,
                                                         gated: SASRecText) -> None:
    twin = cold_ds.n_items - 3
    users = np.arange(cold_ds.n_users)
    s = text_only.score(users)
    np.testing.assert_allclose(s[:, twin], s[:, 0], rtol=1e-5, atol=1e-5)
    # with an ID part the warm item also carries what its text cannot say (item 0 is the most
    # popular one), but the cold twin's score follows it from user to user
    g = gated.score(users)
    assert np.corrcoef(g[:, twin], g[:, 0])[0, 1] > 0.8


def test_cold_items_follow_the_users_genre(cold_ds: Dataset, gated: SASRecText) -> None:
    action_item, romance_item = cold_ds.n_items - 2, cold_ds.n_items - 1
    users = np.arange(cold_ds.n_users)
    genre = np.array([GENRES[u % len(GENRES)] for u in users])  # the toy data's preferred genre
    s = gated.score(users)
    margin = s[:, action_item] - s[:, romance_item]  # how much more the user likes the action one
    # (both groups may prefer it: the toy data's action items are the more popular ones)
    pairs = margin[genre == "action"][:, None] > margin[genre == "romance"][None, :]
    assert pairs.mean() > 0.75


def test_id_part_is_masked_for_cold_items_and_dropped_in_training() -> None:
    torch.manual_seed(0)
    enc = TextItemEncoder(torch.randn(4, 8), torch.tensor([1.0, 1.0, 0.0, 1.0]), hidden=6,
                          id_fusion="add", id_dropout=0.5)
    enc.eval()
    before = enc().detach().clone()
    with torch.no_grad():
        enc.ids[2] += 10.0  # the cold item's ID vector: must not matter
        enc.ids[0] += 10.0  # a warm item's: must
    after = enc().detach()
    assert torch.equal(before[3], after[3]) and not torch.equal(before[1], after[1])
    assert torch.equal(enc(), enc())  # no dropout in eval mode
    enc.train()
    torch.manual_seed(1)
    with torch.no_grad():
        draws = torch.stack([enc() for _ in range(20)])
    assert (draws.std(dim=0)[[1, 2, 4]] > 0).any(dim=1).all()  # warm items: ID part on or off
    assert float(draws.std(dim=0)[3].max()) == 0.0  # cold item: text only, always


def test_add_item_scores_a_new_item_from_text(cold_ds: Dataset, text_only: SASRecText, tmp_path: Path) -> None:
    model = load_model(text_only.save(tmp_path / "m"))
    n = model.n_items
    model.add_item(n, cold_ds.item_table.item_text(5))
    assert model.n_items == n + 1 and model.matrix.shape[1] == n + 1
    s = model.score(np.arange(5))
    assert s.shape == (5, n + 1)
    np.testing.assert_allclose(s[:, n], s[:, 5], rtol=1e-5, atol=1e-5)
    again = load_model(model.save(tmp_path / "grown"))
    np.testing.assert_array_equal(again.score(np.arange(5)), s)
    with pytest.raises(IndexError, match="item_index"):
        model.add_item(n + 5, "too far")


def test_save_load_reproduces_scores(gated: SASRecText, tmp_path: Path) -> None:
    loaded = load_model(gated.save(tmp_path / "g"))
    assert isinstance(loaded, SASRecText)
    np.testing.assert_array_equal(loaded.score(np.arange(10)), gated.score(np.arange(10)))


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ValidationError, match="encoder"):
        SASRecText(encoder="no-such-encoder")
    with pytest.raises(ValidationError, match="id_fusion"):
        SASRecText(id_fusion="concat")
    with pytest.raises(ValidationError, match="id_dropout"):
        SASRecText(id_dropout=1.5)


def test_registered_with_a_small_grid() -> None:
    assert isinstance(create("sasrec-text", {"encoder": "fake"}), SASRecText)
    grid = DEFAULT_GRIDS["sasrec-text"]
    assert 1 < len(grid) <= 12
    for point in grid:
        create("sasrec-text", {"encoder": "fake", **point})
