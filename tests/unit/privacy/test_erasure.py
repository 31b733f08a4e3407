"""Erasing a user from the record store: events, attribute record and logged rankings go in
one transaction, other users stay, a redelivered event id cannot bring the events back, and a
later training data set (the one the service fits on) no longer holds the user."""

from __future__ import annotations

import pytest

from lmrec.serving.versions import store_dataset
from lmrec.stores.records import EventRecord, RankingRecord, UserRecord
from lmrec.stores.sql import open_store


@pytest.fixture(params=["memory", "file"])
def store(request, tmp_path):
    url = "sqlite://" if request.param == "memory" else f"sqlite:///{tmp_path}/s.db"
    with open_store(url) as s:
        yield s


def test_delete_user_removes_everything_of_theirs(store) -> None:
    store.append_events([EventRecord("alice", "i1", "view", timestamp=1000.0),
                         EventRecord("bob", "i1", "view", timestamp=1001.0),
                         EventRecord("alice", "i2", "purchase", timestamp=1002.0)])
    store.append_events_once([EventRecord("alice", "i3", "view", timestamp=1003.0)], ["evt-7"])
    store.upsert_user(UserRecord("alice", {"age_band": "25-34"}, 1.0))
    store.upsert_user(UserRecord("bob", {"age_band": "45-54"}, 1.0))
    store.log_ranking(RankingRecord("r1", "alice", "recommend", ("i1", "i2"), 1.0))
    store.log_ranking(RankingRecord("r2", "bob", "recommend", ("i2",), 1.0))

    before, _ = store_dataset(store, kinds=("view", "purchase"), template="{title}")
    assert "alice" in before.users

    assert store.delete_user("alice") == {"events": 3, "record": 1, "rankings": 1}
    assert [e.user_id for e in store.events(after_seq=0)] == ["bob"]
    assert store.get_user("alice") is None and store.get_user("bob") is not None
    assert store.get_ranking("r1") is None and store.get_ranking("r2") is not None
    assert "alice" not in [uid for uid, _ in store.user_page(limit=10)]
    # a stream redelivering the deleted event: its id is still claimed, nothing comes back
    assert store.append_events_once([EventRecord("alice", "i3", "view", timestamp=1003.0)], ["evt-7"]) == [None]

    after, _ = store_dataset(store, kinds=("view", "purchase"), template="{title}")
    assert "alice" not in after.users and "bob" in after.users
    assert len(after.interactions) == 1

    assert store.delete_user("alice") == {"events": 0, "record": 0, "rankings": 0}
    with pytest.raises(ValueError, match="user_id"):
        store.delete_user("")
