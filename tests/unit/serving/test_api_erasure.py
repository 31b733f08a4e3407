"""DELETE /users/{user_id} (issue 14, item 3): the store and the served version forget the
user at once, their events leave the decayed popularity, a later training never sees them,
and a restart serving a version fitted before the erasure does not bring them back."""

from __future__ import annotations

import time
from pathlib import Path

from test_api_helpers import Api, api, ease_config, engine_config, item_ids, store_url, toy_items  # noqa: F401

from lmrec.serving.engine import Engine
from lmrec.stores.records import EventRecord


def _events(user: str, items: list[str], t0: float) -> list[dict]:
    return [{"user_id": user, "item_id": i, "kind": "view", "timestamp": t0 + n} for n, i in enumerate(items)]


def _top(api: Api, user: str) -> list[str]:
    r = api.client.get(f"/recommend/{user}", params={"k": 5}, headers=api.read)
    assert r.status_code == 200, r.text
    return item_ids(r.json())


def test_delete_user_forgets_them_everywhere(api: Api, tmp_path: Path) -> None:
    t0 = time.time() - 3600
    body = _events("eraseme", ["7"] * 6 + ["8"], t0) + _events("bob", ["3"] * 3 + ["4"], t0) + \
        _events("carol", ["5", "5", "3"], t0)
    assert api.client.post("/events", json=body, headers=api.write).json()["accepted"] == len(body)
    assert api.client.put("/users/eraseme", json={"attributes": {"age_band": "25-34"}},
                          headers=api.write).status_code == 200
    assert _top(api, "fresh")[0] == "7"          # the erased user's item leads the popular fallback
    assert _top(api, "eraseme") != _top(api, "nobody")
    api.engine.flush_rankings()
    assert any(r.user_id == "eraseme" for r in api.engine.store.rankings())

    assert api.client.delete("/users/eraseme", headers=api.write).status_code == 403
    r = api.client.delete("/users/eraseme", headers=api.admin)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["user_id"] == "eraseme"
    assert out["store"]["events"] == 7 and out["store"]["record"] == 1 and out["store"]["rankings"] == 1
    assert out["served"]["events"] == 7 and "channel:popular" in out["served"]["recounted"]

    assert not any(r.user_id == "eraseme" for r in api.engine.store.rankings())
    assert api.engine.store.get_user("eraseme") is None

    # the very next request: a new user's answer, and popularity without their events
    assert _top(api, "eraseme") == _top(api, "nobody")
    assert _top(api, "fresh")[0] == "3"
    assert "7" not in _top(api, "fresh")[:3]
    assert "eraseme" not in api.engine.pipeline.dataset.users
    assert api.client.get("/users/eraseme/history", headers=api.read).status_code == 404
    listed = api.client.get("/users", headers=api.read).json()["users"]
    assert "eraseme" not in [u["user_id"] for u in listed]
    r = api.client.delete("/users/eraseme", headers=api.admin)   # the rankings just served were logged: erase again
    assert r.status_code == 200 and r.json()["store"]["events"] == 0
    assert api.client.delete("/users/eraseme", headers=api.admin).status_code == 404
    assert api.client.delete("/users/never-seen", headers=api.admin).status_code == 404

    # a later training does not see the user
    trained = api.client.post("/admin/train", json={"config": ease_config(tmp_path / "cfg")}, headers=api.admin)
    assert trained.status_code == 200, trained.text
    ds = api.engine.pipeline.dataset
    assert "eraseme" not in ds.users and "bob" in ds.users
    assert not any(u.startswith("\x00") for u in ds.users.ids)
    assert len(ds.interactions) == 7


def test_an_erased_user_stays_erased_after_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/lmrec.db"
    cfg = ease_config(tmp_path / "cfg")
    t0 = time.time() - 3600
    with Engine.open(engine_config(tmp_path / "home", url)) as eng:
        eng.upsert_items(toy_items())
        eng.ingest([EventRecord("eraseme", i, "view", timestamp=t0 + n) for n, i in enumerate(["1", "2", "3", "9"])]
                   + [EventRecord("bob", i, "view", timestamp=t0 + n) for n, i in enumerate(["2", "3", "4"])])
        eng.train(cfg)                                # a version fitted with the user in it, served
        assert "eraseme" in eng.pipeline.dataset.users
        version = eng.model_version
        out = eng.delete_user("eraseme")
        assert out is not None and out["store"]["events"] == 4 and out["served"]["events"] == 4
        assert eng.delete_user("eraseme") is None
        nobody = [i.item_id for i in eng.recommend("nobody", k=5).items]
        assert [i.item_id for i in eng.recommend("eraseme", k=5).items] == nobody
    text = (tmp_path / "home" / "erasures.json").read_text()
    assert "eraseme" not in text
    with Engine.open(engine_config(tmp_path / "home", url)) as eng:   # serves that version again
        assert eng.model_version == version
        assert "eraseme" not in eng.pipeline.dataset.users and "bob" in eng.pipeline.dataset.users
        assert [i.item_id for i in eng.recommend("eraseme", k=5).items] == nobody
        # the user comes back: a new user with only the new events
        eng.ingest([EventRecord("eraseme", "20", "view", timestamp=time.time())])
        assert eng.pipeline.history.items(eng.pipeline.dataset.users.index("eraseme")).tolist() == \
            [eng.pipeline.dataset.items.index("20")]


def test_history_forget_keeps_the_other_users() -> None:
    import numpy as np

    from lmrec.data.dataset import Interactions
    from lmrec.rank.history import UserHistory
    from lmrec.types import Event

    h = UserHistory().fit(Interactions(np.array([0, 1, 1, 2]), np.array([5, 1, 2, 3]), np.array([1, 2, 3, 4])), 3)
    h.update([Event(1, 7, 9), Event(2, 8, 9)])
    assert h.forget(1) == 3 and h.forget(1) == 0 and h.forget(99) == 0
    assert h.items(1).tolist() == [] and h.items(0).tolist() == [5] and h.items(2).tolist() == [3, 8]
    h.update([Event(1, 4, 10)])
    assert h.items(1).tolist() == [4] and h.lengths().tolist() == [1, 1, 2]


def test_popular_forget_equals_a_fit_without_the_user() -> None:
    import numpy as np

    from lmrec.data.dataset import Dataset, IdMap, Interactions
    from lmrec.recall.popular import MostPopular
    from lmrec.types import Event

    now = int(time.time())
    user = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    item = np.array([3, 3, 1, 3, 2, 1, 0, 2])
    ts = now - 86_400 * np.array([9, 5, 4, 8, 2, 7, 3, 1])
    full = Interactions(user, item, ts)
    ds = Dataset("t", IdMap(["a", "b", "c"]), IdMap(["0", "1", "2", "3"]), full, has_timestamps=True)
    pop = MostPopular(half_life_days=3.0).fit(full, ds)
    pop.update([Event(0, 1, now)])   # an online event of the user too
    keep = user != 0
    ref = MostPopular(half_life_days=3.0).fit(full.select(keep), ds)
    ref.update([Event(1, 0, now)])   # the same clock movement, by someone else ...
    ref.forget([Event(1, 0, now)])   # ... taken back
    gone = [Event(0, int(i), int(t)) for i, t in zip(item[~keep], ts[~keep])] + [Event(0, 1, now)]
    assert pop.forget(gone) is True
    np.testing.assert_allclose(pop.popularity, ref.popularity, atol=1e-9)
    assert MostPopular(dp_epsilon=1.0, half_life_days=0.0).fit(full, ds).forget(gone) is False


def test_users_delete_cli_and_the_erasure_log(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lmrec.cli.main import app

    home = tmp_path / "home"
    url = f"sqlite:///{home}/lmrec.db"
    with Engine.open(engine_config(home, url)) as eng:
        eng.upsert_items(toy_items())
        eng.ingest([EventRecord("eraseme", i, "view", timestamp=time.time() - 60) for i in ["1", "2"]]
                   + [EventRecord("bob", "3", "view", timestamp=time.time() - 60)])
        eng.train()                                   # a saved version fitted with the user
        assert "eraseme" in eng.pipeline.dataset.users
    runner = CliRunner()
    r = runner.invoke(app, ["users", "delete", "eraseme", "--home", str(home)])
    assert r.exit_code == 0 and "erased: 2 events" in r.output, r.output
    r = runner.invoke(app, ["users", "delete", "eraseme", "--home", str(home)])
    assert r.exit_code == 1 and "no events" in r.output
    with Engine.open(engine_config(home, url)) as eng:   # the saved version had the user: forgotten on load
        assert "eraseme" not in eng.pipeline.dataset.users and "bob" in eng.pipeline.dataset.users
        eng.ingest([EventRecord("carol", "4", "view", timestamp=time.time())])
        assert eng.delete_user("carol") is not None   # the service's own erasure keeps the CLI's entry
    assert len(__import__("json").loads((home / "erasures.json").read_text())["entries"]) == 2
