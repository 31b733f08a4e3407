"""Cursor pages over items, users and one user's events (what GET /items, /users and
/users/{id}/history read); PostgreSQL is covered through the API tests."""

from __future__ import annotations

from lmrec.stores.records import EventRecord, ItemRecord, UserRecord
from lmrec.stores.sql import open_store


def test_item_page_follows_the_cursor_and_skips_deleted() -> None:
    with open_store("sqlite://") as s:
        s.upsert_items([ItemRecord(i) for i in ["b", "a", "c", "é", "d"]])
        s.delete_item("c")
        assert [r.item_id for r in s.item_page(limit=2)] == ["a", "b"]
        assert [r.item_id for r in s.item_page(after="b", limit=2)] == ["d", "é"]   # byte order: é after d
        assert s.item_page(after="é") == [] and s.item_page(limit=0) == []


def test_user_page_merges_event_users_and_records() -> None:
    with open_store("sqlite://") as s:
        s.append_events([EventRecord("u3", "i"), EventRecord("u1", "i"), EventRecord("u3", "j")])
        s.upsert_user(UserRecord("u2", {"age": 3}, 1.0))
        s.upsert_user(UserRecord("u3", {"age": 4}, 2.0))
        s.upsert_user(UserRecord("u0", {}, 3.0))
        page = s.user_page(limit=3)
        assert [u for u, _ in page] == ["u0", "u1", "u2"]
        assert page[1][1] is None and page[2][1] == UserRecord("u2", {"age": 3}, 1.0)
        assert [(u, r.attributes if r else None) for u, r in s.user_page(after="u2")] == [("u3", {"age": 4})]


def test_latest_events_are_newest_first_per_user() -> None:
    with open_store("sqlite://") as s:
        seqs = s.append_events([EventRecord("u", f"i{n}", timestamp=float(n)) for n in range(5)]
                               + [EventRecord("v", "x")])
        assert [e.item_id for e in s.latest_events("u", limit=2)] == ["i4", "i3"]
        assert [e.seq for e in s.latest_events("u", before_seq=seqs[3], limit=10)] == seqs[2::-1]
        assert s.count_events("u") == 5 and s.count_events() == 6 and s.latest_events("nobody") == []
