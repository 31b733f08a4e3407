"""Ray batch jobs against the single-process path (lmrec.distributed, `lmrec ray`).

One local Ray cluster per test process (module fixture, its own temporary folder: the two
xdist workers of CI may each start one at the same time), shut down after the module.
Skipped with a message when Ray is not installed (`pip install -e '.[ray]'`; CI installs it).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")
torch = pytest.importorskip("torch")

from lmrec.component import create  # noqa: E402
from lmrec.data.splits import temporal_leave_one_out  # noqa: E402
from lmrec.distributed import embed_catalog, evaluate_sharded, shard_split, train_sasrec_ddp  # noqa: E402
from lmrec.eval.evaluator import evaluate  # noqa: E402
from lmrec.eval.experiment import item_categories  # noqa: E402
from lmrec.recall.item2item import dataset_item_texts, encode_texts_cached  # noqa: E402
from lmrec.testing.ray_cluster import local_ray_cluster  # noqa: E402
from lmrec.testing.toy import toy_dataset  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with local_ray_cluster("lmrec-ray-test-") as r:
        assert r.cluster_resources().get("CPU") == 2
        yield r


@pytest.fixture(scope="module")
def toy():
    return toy_dataset()


def test_embed_catalog_equals_single_process_and_fills_the_cache(cluster, toy, tmp_path):
    from lmrec.text.base import FakeEncoder
    from lmrec.text.cache import CachedEncoder

    texts = dataset_item_texts(toy)
    res = embed_catalog(toy, "fake", num_workers=2, cache=tmp_path, batch_size=8)
    expected = encode_texts_cached("fake", texts)
    assert res.vectors.shape == expected.shape == (toy.n_items, 64)
    np.testing.assert_allclose(res.vectors, expected, rtol=1e-6, atol=1e-7)
    assert (res.encoded, res.reused) == (len(set(texts)), 0)

    # the single-process cached encoder now finds every vector: it encodes nothing
    class Counting(FakeEncoder):
        calls = 0

        def encode_items(self, texts, **kw):
            Counting.calls += len(texts)
            return super().encode_items(texts, **kw)

    cached = CachedEncoder(Counting(dim=64), tmp_path)
    np.testing.assert_allclose(cached.encode_items(texts), FakeEncoder(64).encode_items(texts), atol=1e-7)
    assert Counting.calls == 0
    assert cached.cache.count("fake-64") == len(set(texts))
    cached.cache.close()

    # a second run reuses the cache; a list with repeats and new texts encodes only the new ones once
    again = embed_catalog(toy, "fake", num_workers=2, cache=tmp_path)
    assert (again.encoded, again.reused) == (0, len(texts))
    np.testing.assert_array_equal(again.vectors, res.vectors)
    more = [texts[0], "a brand new item", "a brand new item", texts[1], "another new one"]
    part = embed_catalog(more, "fake", num_workers=2, cache=tmp_path)
    assert (part.encoded, part.reused) == (2, 2)
    np.testing.assert_allclose(part.vectors, encode_texts_cached("fake", more), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("model,params,fit", [("ease", {"lam": 50.0}, "once"), ("popular", {}, "each")])
def test_evaluate_sharded_equals_evaluate(cluster, toy, model, params, fit):
    split = temporal_leave_one_out(toy)
    single = evaluate(create(model, params).fit(split.train_valid, toy), split,
                      item_categories=item_categories(toy))
    sharded = evaluate_sharded(model, params, split, num_shards=3, fit=fit)
    assert sharded.info["shards"] == 3 and sum(sharded.info["shard_users"]) == len(single.users)
    assert sharded.metrics == single.metrics  # exactly: same lists, same protocol
    assert sharded.groups == single.groups
    np.testing.assert_array_equal(sharded.users, single.users)
    np.testing.assert_array_equal(sharded.recs, single.recs)
    for name, values in single.per_user.items():
        np.testing.assert_array_equal(sharded.per_user[name], values, err_msg=name)


def test_shard_split_keeps_only_its_users(toy):
    split = temporal_leave_one_out(toy)
    part = shard_split(split, np.array([3, 5]))
    assert set(part.test.user.tolist()) == {3, 5}
    assert len(part.train) == len(split.train) and len(part.valid) == len(split.valid)


SASREC = dict(hidden=16, n_blocks=1, n_heads=2, max_len=10, epochs=2, batch_size=24, dropout=0.0, threads=1,
              warmup_steps=2, patience=5, lr=0.003, seed=7)


@pytest.fixture(scope="module")
def single_sasrec(toy):
    """Single-process SASRec on the whole global batches, and its initial weights."""
    from lmrec.models.sasrec import SASRec
    from lmrec.models.training import seed_everything, torch_threads

    single = SASRec(**SASREC).fit(toy.interactions, toy)
    fresh = SASRec(**SASREC)
    fresh.n_items = toy.n_items
    with torch_threads(1):
        seed_everything(SASREC["seed"])  # what fit does before building the network
        init = fresh._build_network(toy, None).state_dict()
    return single, init


def _compare_with_single_process(trained, single_sasrec):
    single, init = single_sasrec
    a, b = single.network.state_dict(), trained.network.state_dict()
    h = SASREC["hidden"]
    for name in a:
        moved = float((a[name] - init[name]).abs().max())
        assert moved > 1e-3, f"{name} hardly trained ({moved})"  # so the comparison below means something
        x, y = a[name], b[name]
        if name.endswith("in_proj_bias"):
            # the key bias adds a constant to every attention logit of a query: softmax ignores it, so
            # its gradient is 0 up to rounding noise, which Adam scales up; compare query and value bias
            x, y = torch.cat([x[:h], x[2 * h:]]), torch.cat([y[:h], y[2 * h:]])
        torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    assert [round(e["loss"], 5) for e in trained.train_history.epochs] == \
        [round(e["loss"], 5) for e in single.train_history.epochs]
    # the trained model is an ordinary SASRec whose scores match the single-process model's
    users = np.arange(10)
    np.testing.assert_allclose(trained.score(users), single.score(users), rtol=1e-4, atol=1e-5)


def test_ddp_sasrec_in_ray_train_equals_single_process(cluster, toy, single_sasrec, tmp_path):
    trained = train_sasrec_ddp(toy.interactions, toy, SASREC, num_workers=2, launcher="ray", out=tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file()
    _compare_with_single_process(trained, single_sasrec)


def test_ddp_sasrec_in_processes_equals_single_process(toy, single_sasrec):
    trained = train_sasrec_ddp(toy.interactions, toy, SASREC, num_workers=2, launcher="processes")
    _compare_with_single_process(trained, single_sasrec)


def test_ddp_rejects_fgm(toy):
    with pytest.raises(ValueError, match="fgm"):
        train_sasrec_ddp(toy.interactions, toy, {**SASREC, "fgm": True}, launcher="processes")


@pytest.mark.shared_data("ml-100k")
def test_cli_ray_eval_and_embed(cluster, shared_data_dir, tmp_path):
    """`lmrec ray eval` / `embed` inside the module's cluster (ray_session joins it), on ml-100k."""
    from typer.testing import CliRunner

    from lmrec.cli.main import app
    from lmrec.data.loaders import load_dataset
    from lmrec.eval.experiment import make_split

    ds = load_dataset("ml-100k", shared_data_dir)
    runner = CliRunner()
    out = tmp_path / "row.json"
    res = runner.invoke(app, ["ray", "eval", "--dataset", "ml-100k", "--model", "popular", "--shards", "2",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "shard 2/2" in res.output and "merged 943 users" in " ".join(res.output.split())
    row = json.loads(out.read_text())["rows"][0]
    split = make_split(ds)
    single = evaluate(create("popular").fit(split.train_valid, ds), split, item_categories=item_categories(ds))
    assert row["NDCG@10"] == round(single.metrics["NDCG@10"], 6) and row["users"] == len(single.users)
    assert row["shards"] == 2

    res = runner.invoke(app, ["ray", "embed", "--dataset", "ml-100k", "--encoder", "fake", "--workers", "2",
                              "--cache", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    distinct = len(set(dataset_item_texts(ds)))
    assert f"{distinct} texts encoded, 0 reused" in " ".join(res.output.split()), res.output
    res = runner.invoke(app, ["ray", "embed", "--dataset", "ml-100k", "--encoder", "fake", "--workers", "2",
                              "--cache", str(tmp_path / "cache")])
    assert res.exit_code == 0 and f"0 texts encoded, {ds.n_items} reused" in " ".join(res.output.split()), res.output


def test_ray_train_with_more_workers_than_cpus_is_refused(cluster, toy):
    with pytest.raises(ValueError, match="3 DDP workers need 3 CPUs; the Ray cluster has 2"):
        train_sasrec_ddp(toy.interactions, toy, SASREC, num_workers=3, launcher="ray")


@pytest.mark.parametrize("args,needle", [
    (["eval", "--dataset", "ml-100k", "--model", "nope"], "unknown model 'nope'"),
    (["eval", "--dataset", "ml-100k", "--model", "ease", "--params", "lamb=3"], "bad --params for ease"),
    (["embed", "--dataset", "ml-100k", "--encoder", "nope"], "unknown encoder 'nope'"),
    (["train", "--dataset", "ml-100k", "--out", "x", "--launcher", "mpi"], "--launcher must be"),
    (["train", "--dataset", "ml-100k", "--out", "x", "--params", "fgm=true"], "fgm"),
])
def test_cli_bad_arguments_fail_before_starting_ray(args, needle):
    from typer.testing import CliRunner

    from lmrec.cli.main import app

    res = CliRunner().invoke(app, ["ray", *args])
    assert res.exit_code == 1, res.output
    assert needle in " ".join(res.output.split())
