"""Hot user state: one conformance suite for the in-process and the Redis backend.

Redis tests use LMREC_TEST_REDIS_URL (default redis://127.0.0.1:6379/0) under a random key
prefix that is deleted afterwards; they skip with a message when Redis is unreachable.
"""

from __future__ import annotations

import math
import os
import threading
import uuid
from collections.abc import Iterator
from functools import cache

import pytest

from lmrec.stores.state import (HistoryEntry, MemoryUserState, RedisUserState, StateEvent, UserStateStore,
                                open_user_state)

REDIS_URL = os.environ.get("LMREC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@cache
def redis_unreachable() -> str | None:
    """Why Redis cannot be used (None when it can)."""
    try:
        import redis
    except ImportError:
        return "redis-py is not installed (pip install 'lmrec[serve]')"
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as e:
        return f"Redis unreachable at {REDIS_URL} (set LMREC_TEST_REDIS_URL): {e}"
    return None


def redis_state(**options: object) -> RedisUserState:
    reason = redis_unreachable()
    if reason:
        pytest.skip(reason)
    return RedisUserState(REDIS_URL, prefix=f"lmrec-test:{uuid.uuid4().hex[:12]}:", **options)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "redis"])
def state(request: pytest.FixtureRequest) -> Iterator[UserStateStore]:
    if request.param == "memory":
        s: UserStateStore = MemoryUserState()
        yield s
        s.close()
    else:
        r = redis_state()
        try:
            yield r
        finally:
            r.clear()
            r.close()


class TestUserStateConformance:
    def test_is_a_user_state_store(self, state: UserStateStore) -> None:
        assert isinstance(state, UserStateStore)
        assert state.history("nobody", 10) == []

    def test_history_is_most_recent_last(self, state: UserStateStore) -> None:
        for i in range(5):
            state.push("u1", f"i{i}", "click" if i % 2 else "view", float(i), 100.0 + i, maxlen=50)
        state.push("u2", "x", "purchase", 2.0, 7.0)
        hist = state.history("u1", 10)
        assert hist == [HistoryEntry(f"i{i}", "click" if i % 2 else "view", float(i), 100.0 + i) for i in range(5)]
        assert hist[0] == ("i0", "view", 0.0, 100.0)  # a plain tuple too
        assert [e.item_id for e in state.history("u1", 2)] == ["i3", "i4"]
        assert state.history("u1", 0) == []
        assert state.history("u2", 10) == [("x", "purchase", 2.0, 7.0)]

    def test_push_order_not_timestamp_order(self, state: UserStateStore) -> None:
        state.push("u", "late-arrival", "view", 1.0, 50.0)
        state.push("u", "earlier", "view", 1.0, 10.0)
        assert [e.item_id for e in state.history("u", 5)] == ["late-arrival", "earlier"]

    def test_maxlen_keeps_the_latest(self, state: UserStateStore) -> None:
        for i in range(10):
            state.push("u", f"i{i}", "view", 1.0, float(i), maxlen=3)
        assert [e.item_id for e in state.history("u", 10)] == ["i7", "i8", "i9"]
        state.push("u", "i10", "view", 1.0, 10.0, maxlen=2)  # a smaller maxlen trims further
        assert [e.item_id for e in state.history("u", 10)] == ["i9", "i10"]

    def test_push_many_in_order(self, state: UserStateStore) -> None:
        batch = [StateEvent("a", "i1", "view", 1.0, 1.0), ("b", "i2", "click", 1.0, 2.0),
                 ("a", "i3", "cart", 2.0, 3.0), ("a", "i4", "view", 1.0, 4.0)]
        state.push_many(batch, maxlen=2)
        assert state.history("a", 5) == [("i3", "cart", 2.0, 3.0), ("i4", "view", 1.0, 4.0)]
        assert state.history("b", 5) == [("i2", "click", 1.0, 2.0)]
        state.push_many([])
        assert len(state.history("a", 5)) == 2

    def test_bad_input_names_the_field_and_writes_nothing(self, state: UserStateStore) -> None:
        cases = [(("", "i", "view", 1.0, 1.0), "user_id"), (("u", " ", "view", 1.0, 1.0), "item_id"),
                 (("u", "i", "like", 1.0, 1.0), "kind"), (("u", "i", "view", math.nan, 1.0), "value"),
                 (("u", "i", "view", 1.0, "noon"), "timestamp"), (("u", "i", "view", 1.0, math.inf), "timestamp")]
        for event, field in cases:
            with pytest.raises(ValueError, match=rf"events\[1\]\.{field}"):
                state.push_many([("u", "ok", "view", 1.0, 1.0), event])
            with pytest.raises(ValueError, match=field):
                state.push(*event)
        with pytest.raises(ValueError, match=r"events\[0\]"):
            state.push_many([("u", "i", "view")])
        with pytest.raises(ValueError, match="maxlen"):
            state.push("u", "i", "view", 1.0, 1.0, maxlen=0)
        with pytest.raises(ValueError, match="n: "):
            state.history("u", -1)
        assert state.history("u", 10) == []

    def test_forget(self, state: UserStateStore) -> None:
        state.push("u", "i", "view", 1.0, 1.0)
        state.push("v", "i", "view", 1.0, 1.0)
        assert state.forget("u") is True and state.forget("u") is False
        assert state.history("u", 5) == [] and len(state.history("v", 5)) == 1

    def test_concurrent_pushes_lose_nothing(self, state: UserStateStore) -> None:
        n_threads, n_pushes = 4, 50
        errors: list[BaseException] = []

        def worker(t: int) -> None:
            try:
                for i in range(n_pushes):
                    state.push("shared", f"t{t}-{i}", "view", 1.0, float(i), maxlen=1000)
                    state.push(f"own{t}", f"{i}", "view", 1.0, float(i), maxlen=1000)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        shared = [e.item_id for e in state.history("shared", 10_000)]
        assert sorted(shared) == sorted(f"t{t}-{i}" for t in range(n_threads) for i in range(n_pushes))
        for t in range(n_threads):  # each thread's pushes keep their order
            assert [x for x in shared if x.startswith(f"t{t}-")] == [f"t{t}-{i}" for i in range(n_pushes)]
            assert [e.item_id for e in state.history(f"own{t}", 10_000)] == [str(i) for i in range(n_pushes)]


class TestMemoryUserState:
    def test_least_recently_active_user_is_evicted(self) -> None:
        s = MemoryUserState(max_users=2)
        s.push("a", "i", "view", 1.0, 1.0)
        s.push("b", "i", "view", 1.0, 2.0)
        s.push("a", "j", "view", 1.0, 3.0)  # a is now the most recently active
        s.push("c", "i", "view", 1.0, 4.0)
        assert len(s) == 2 and s.history("b", 5) == [] and len(s.history("a", 5)) == 2

    def test_bad_max_users(self) -> None:
        with pytest.raises(ValueError, match="max_users"):
            MemoryUserState(max_users=0)


class TestRedisUserState:
    def test_prefixes_isolate_stores(self) -> None:
        a, b = redis_state(), redis_state()
        try:
            a.push("u", "from-a", "view", 1.0, 1.0)
            assert b.history("u", 5) == [] and a.history("u", 5)[0].item_id == "from-a"
            assert b.clear() == 0 and a.clear() == 1
            assert a.history("u", 5) == []
        finally:
            a.clear()
            b.clear()

    def test_ttl_expires_idle_users(self) -> None:
        s = redis_state(ttl_s=30)
        try:
            s.push("u", "i", "view", 1.0, 1.0)
            ttl = s._client.ttl(f"{s.prefix}u")
            assert 0 < ttl <= 30
        finally:
            s.clear()

    def test_url_options(self) -> None:
        if redis_unreachable():
            pytest.skip(redis_unreachable())
        s = open_user_state(f"{REDIS_URL}?prefix=lmrec-test-url:&ttl_s=5")
        try:
            assert isinstance(s, RedisUserState) and s.prefix == "lmrec-test-url:" and s.ttl_s == 5.0
        finally:
            s.close()


class TestOpenUserState:
    def test_dispatch(self) -> None:
        assert isinstance(open_user_state(None), MemoryUserState)
        assert isinstance(open_user_state("memory://"), MemoryUserState)
        assert open_user_state(None, max_users=3).max_users == 3  # type: ignore[attr-defined]

    def test_unknown_scheme(self) -> None:
        with pytest.raises(ValueError) as info:
            open_user_state("memcached://u:pw@h:11211")
        text = str(info.value)
        assert "memcached://u:***@h:11211" in text and "redis://" in text and "pw@" not in text
