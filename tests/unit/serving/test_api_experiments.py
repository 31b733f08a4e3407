"""A/B experiments through the HTTP API: two trained versions served to hashed user buckets,
rankings logged with their variant, clicks and purchases joined to them (by ranking_id, or by
user and item within the window) into CTR and conversion with intervals."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_api_helpers import (Api, api, ease_config, genre_ids, item_ids, running_api, store_url,  # noqa: F401
                              toy_items, views)

from lmrec.serving.experiments import Experiment, newcombe, report, wilson
from lmrec.stores.records import EventRecord, RankingRecord
from lmrec.testing.toy import toy_dataset

POPULAR_TOML = """encoder = "fake"
[[channels]]
name = "popular"
model = "popular"
min_history = 0
quota = 50
[rank]
ranker = "none"
features = [{ name = "channels" }]
"""


def _train_two(api: Api, tmp_path: Path) -> tuple[str, str]:
    ds = toy_dataset(n_items=48)
    events = [{"user_id": ds.users.ids[u], "item_id": str(i + 1), "kind": "view", "timestamp": 1_000_000.0 + t}
              for u, i, t in zip(ds.interactions.user.tolist(), ds.interactions.item.tolist(),
                                 ds.interactions.timestamp.tolist())]
    assert api.client.post("/events", json={"events": events}, headers=api.write).status_code == 200
    pop = tmp_path / "cfg" / "popular-only.toml"
    pop.parent.mkdir(parents=True, exist_ok=True)
    pop.write_text(POPULAR_TOML)
    versions = []
    for cfg in (ease_config(tmp_path / "cfg"), str(pop)):
        r = api.client.post("/admin/train", json={"config": cfg, "activate": False}, headers=api.admin)
        assert r.status_code == 200, r.text
        versions.append(r.json()["model_version"])
    return versions[0], versions[1]


def test_two_versions_side_by_side_and_the_report(api: Api, tmp_path: Path) -> None:
    a, b = _train_two(api, tmp_path)
    served = api.engine.model_version
    assert served not in (a, b)
    assert api.client.get("/admin/experiments", headers=api.admin).status_code == 404
    r = api.client.post("/admin/experiments", json={"name": "ease-vs-pop", "a": a, "b": b, "split": 0.5},
                        headers=api.admin)
    assert r.status_code == 200, r.text
    assert r.json()["a"] == a and r.json()["b"] == b and r.json()["stopped_at"] is None
    exp = Experiment("ease-vs-pop", a, b, 0.5)
    users = [f"shopper-{j}" for j in range(40)]
    want = {u: exp.variant(u) for u in users}
    assert 10 <= sum(v == "B" for v in want.values()) <= 30  # both buckets get users
    lists = {}
    for u in users:
        got = api.client.get("/recommend/" + u, params={"k": 5}, headers=api.read).json()
        assert got["model_version"] == (a if want[u] == "A" else b), u
        lists[u] = got
        again = api.client.get("/recommend/" + u, params={"k": 5}, headers=api.read).json()
        assert again["model_version"] == got["model_version"]  # the same bucket every time
    assert all(set(i["sources"]) <= {"popular"} for u in users if want[u] == "B" for i in lists[u]["items"])
    # feedback: every B user clicks (by ranking_id) and buys; a third of A users click without a
    # ranking_id (joined by user + item within the window); noise that must not count
    a_users = [u for u in users if want[u] == "A"]
    b_users = [u for u in users if want[u] == "B"]
    events = []
    for u in b_users:
        first = lists[u]["items"][0]["item_id"]
        events += [{"user_id": u, "item_id": first, "kind": "click", "ranking_id": lists[u]["ranking_id"]},
                   {"user_id": u, "item_id": first, "kind": "purchase", "ranking_id": lists[u]["ranking_id"]}]
    clicked_a = a_users[::3]
    for u in clicked_a:
        events.append({"user_id": u, "item_id": lists[u]["items"][1]["item_id"], "kind": "click"})
    unlisted = next(i for i in [str(n) for n in range(1, 49)] if i not in item_ids(lists[a_users[1]]))
    events.append({"user_id": a_users[1], "item_id": unlisted, "kind": "click"})        # not in its ranking
    events.append({"user_id": "stranger", "item_id": lists[a_users[1]]["items"][0]["item_id"], "kind": "click"})
    events.append({"user_id": a_users[1], "item_id": lists[a_users[1]]["items"][0]["item_id"], "kind": "view"})
    assert api.client.post("/events", json={"events": events}, headers=api.write).status_code == 200
    rep = api.client.get("/admin/experiments", headers=api.admin)
    assert rep.status_code == 200, rep.text
    body = rep.json()
    va, vb = body["variants"]["A"], body["variants"]["B"]
    assert (va["version"], vb["version"]) == (a, b) and body["running"] is True
    assert va["rankings"] == 2 * len(a_users) and vb["rankings"] == 2 * len(b_users)
    assert va["users"] == len(a_users) and vb["users"] == len(b_users)
    assert vb["clicks"] == vb["purchases"] == len(b_users) and va["clicks"] == len(clicked_a) and va["purchases"] == 0
    assert vb["ctr"]["rankings_with"] == len(b_users) and va["ctr"]["rankings_with"] == len(clicked_a)
    assert vb["ctr"]["value"] == pytest.approx(0.5)
    assert va["ctr"]["value"] == pytest.approx(len(clicked_a) / va["rankings"])
    assert va["conversion"]["value"] == 0.0 and va["conversion"]["ci_low"] == 0.0 < va["conversion"]["ci_high"]
    for rate in (va["ctr"], vb["ctr"], vb["conversion"]):
        assert 0.0 <= rate["ci_low"] < rate["value"] < rate["ci_high"] <= 1.0
    d = body["difference_b_minus_a"]["ctr"]
    assert d["value"] == pytest.approx(vb["ctr"]["value"] - va["ctr"]["value"], abs=1e-6)
    assert d["ci_low"] < d["value"] < d["ci_high"]
    assert body["joined_events"] == {"by_ranking_id": 2 * len(b_users), "by_user_and_window": len(clicked_a)}
    # the window: with 1 ms nothing posted later joins by user + item any more
    assert api.client.get("/admin/experiments", params={"window": 0.001},
                          headers=api.admin).json()["joined_events"]["by_user_and_window"] == 0
    # new events reach both variants: the items a user views leave their next list
    for u in (a_users[0], b_users[0]):
        seen = item_ids(lists[u])[:3]
        api.client.post("/events", json=views(u, seen, start=2_000_000.0), headers=api.write)
        nxt = api.client.get("/recommend/" + u, params={"k": 5}, headers=api.read).json()
        assert not set(item_ids(nxt)) & set(seen), u
    # stop: everyone back on the served version; the report stays
    stopped = api.client.delete("/admin/experiments", headers=api.admin)
    assert stopped.status_code == 200 and stopped.json()["stopped_at"] is not None
    assert api.client.get("/recommend/" + b_users[0], headers=api.read).json()["model_version"] == served
    after = api.client.get("/admin/experiments", headers=api.admin).json()
    assert after["running"] is False and after["variants"]["B"]["rankings"] == vb["rankings"] + 1
    again = api.client.delete("/admin/experiments", headers=api.admin)  # stopping twice: the same experiment
    assert again.json()["stopped_at"] == stopped.json()["stopped_at"]


def test_an_experiment_survives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/db.sqlite"
    with running_api(tmp_path / "home", url) as first:
        a, b = _train_two(first, tmp_path)
        assert first.client.post("/admin/experiments", json={"name": "x", "a": a, "b": b, "split": 0.3},
                                 headers=first.admin).status_code == 200
    exp = Experiment("x", a, b, 0.3)
    user = next(f"u{j}" for j in range(100) if exp.variant(f"u{j}") == "B")
    with running_api(tmp_path / "home", url) as second:
        assert second.client.get("/recommend/" + user, headers=second.read).json()["model_version"] == b
        assert second.engine.stats()["experiment"]["name"] == "x"


def test_bad_experiments_are_422_naming_the_field(api: Api, tmp_path: Path) -> None:
    def loc(body: dict) -> list:
        r = api.client.post("/admin/experiments", json=body, headers=api.admin)
        assert r.status_code == 422, r.text
        return r.json()["detail"][0]["loc"]

    served = api.engine.model_version
    missing = api.client.post("/admin/experiments", json={"name": "e", "a": "no-such-version", "b": served},
                              headers=api.admin)
    assert missing.status_code == 404 and missing.json()["detail"].startswith("a: model version 'no-such-version'")
    assert loc({"name": "e", "a": served, "b": served}) == ["body", "b"]
    assert loc({"name": "e", "a": served, "b": "x", "split": 1.5}) == ["body", "split"]
    assert loc({"name": "e", "a": served}) == ["body", "b"]
    assert api.client.post("/admin/experiments", json={"name": "e", "a": served, "b": "x"},
                           headers=api.write).status_code == 403
    assert api.client.delete("/admin/experiments", headers=api.admin).status_code == 404
    assert api.engine.stats()["experiment"] is None


# ---- units ----------------------------------------------------------------------------------
def test_wilson_and_newcombe_match_published_values() -> None:
    lo, hi = wilson(5, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.2366, 0.7634)
    assert wilson(0, 10)[0] == 0.0 and round(wilson(0, 10)[1], 4) == 0.2775
    # Newcombe (1998), example (a): 56/70 vs 48/80 -> 0.2000, interval 0.0524 to 0.3339
    d, lo, hi = newcombe(48, 80, 56, 70)
    assert (round(d, 4), round(lo, 4), round(hi, 4)) == (0.2, 0.0524, 0.3339)


def test_assignment_is_deterministic_and_follows_the_split() -> None:
    e = Experiment("hash-me", "v1", "v2", 0.2)
    users = [f"user-{j}" for j in range(5000)]
    share_b = sum(e.variant(u) == "B" for u in users) / len(users)
    assert 0.18 < share_b < 0.22
    assert [e.variant(u) for u in users[:50]] == [Experiment("hash-me", "v1", "v2", 0.2).variant(u) for u in users[:50]]
    other = Experiment("another", "v1", "v2", 0.2)  # another experiment: other buckets
    assert [e.variant(u) for u in users[:200]] != [other.variant(u) for u in users[:200]]


def test_report_joins_only_the_experiment_rankings_in_their_window() -> None:
    exp = Experiment("e", "v1", "v2", 0.5, started_at=100.0)
    rankings = [RankingRecord("r1", "u1", "recommend", ("i1", "i2"), 110.0, {"experiment": "e", "variant": "A"}),
                RankingRecord("r2", "u1", "recommend", ("i3",), 120.0, {"experiment": "e", "variant": "A"}),
                RankingRecord("r3", "u2", "recommend", ("i1",), 110.0, {"experiment": "e", "variant": "B"}),
                RankingRecord("r4", "u2", "recommend", ("i1",), 90.0, {"experiment": "e", "variant": "B"}),
                RankingRecord("r5", "u3", "recommend", ("i1",), 110.0, {"experiment": "old", "variant": "B"})]
    events = [EventRecord("u1", "i1", "click", 1.0, 125.0),                   # -> r1 (the latest listing i1)
              EventRecord("u1", "i3", "click", 1.0, 125.0, ranking_id="r2"),  # -> r2 by id
              EventRecord("u1", "i3", "purchase", 1.0, 9999.0),               # outside the window
              EventRecord("u2", "i1", "purchase", 1.0, 111.0, ranking_id="r4"),  # before the experiment
              EventRecord("u3", "i1", "click", 1.0, 111.0)]                   # another experiment's ranking
    rep = report(exp, rankings, events, window_s=60.0)
    assert rep["variants"]["A"]["rankings"] == 2 and rep["variants"]["B"]["rankings"] == 1
    va, vb = rep["variants"]["A"], rep["variants"]["B"]
    assert va["ctr"]["rankings_with"] == 2 and va["conversion"]["rankings_with"] == 0
    assert vb["ctr"]["rankings_with"] == 0 and vb["conversion"]["rankings_with"] == 0
    assert rep["joined_events"] == {"by_ranking_id": 1, "by_user_and_window": 1}
