"""The near cache's store (``django_cacheaside.near``): bounds, TTL, tickets, fork, copies.

No Redis and no database: a ``NearCache`` is plain process memory, and the model instances here
are built in memory.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import threading
import warnings
from decimal import Decimal
from typing import Any

import pytest
from django.db import models
from django.test.utils import isolate_apps

from django_cacheaside.near import MAX_TTL, NearCache, clone, mutable_attnames
from tests.testapp.models import AllTypes, Org


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fill(near: NearCache, key: str, value: Any = "v", size: int = 1) -> bool:
    return near.put(key, value, size, near.ticket())


# -- bounds --------------------------------------------------------------------------------------


def test_lru_by_count_evicts_the_least_recently_used() -> None:
    near = NearCache(max_entries=3)
    for key in "abc":
        assert fill(near, key, key.upper())
    assert near.get("a") == "A"  # now b is the least recently used
    assert fill(near, "d")
    assert near.get("b") is None
    assert [near.get(key) for key in "acd"] == ["A", "C", "v"]
    assert len(near) == 3
    assert near.evictions == 1


def test_lru_by_bytes() -> None:
    near = NearCache(max_bytes=100)
    assert fill(near, "a", size=40)
    assert fill(near, "b", size=40)
    near.get("a")
    assert fill(near, "c", size=40)  # 120 > 100: b goes
    assert near.get("b") is None
    assert near.bytes == 80
    assert len(near) == 2
    assert fill(near, "a", size=10)  # a replaced: its old size no longer counts
    assert near.bytes == 50
    assert not fill(near, "huge", size=101)  # alone over the bound: refused, nothing evicted
    assert near.bytes == 50
    assert near.evictions == 1


def test_ttl_expiry_drops_the_entry_when_found() -> None:
    clock = FakeClock()
    near = NearCache(ttl=2.0, clock=clock)
    assert fill(near, "k")
    clock.now += 1.9
    assert near.get("k") == "v"
    clock.now += 0.2  # 2.1 s after the put
    assert near.get("k") is None
    assert len(near) == 0
    assert near.bytes == 0
    assert (near.hits, near.misses, near.expired) == (1, 1, 1)


def test_counters() -> None:
    near = NearCache()
    near.get("missing")
    fill(near, "k")
    near.get("k")
    near.get("k")
    assert (near.hits, near.misses, near.evictions, near.expired) == (2, 1, 0, 0)


# -- tickets -------------------------------------------------------------------------------------


def test_a_put_after_a_discard_of_its_key_is_refused() -> None:
    near = NearCache()
    ticket = near.ticket()
    near.discard("k")  # an invalidation arrived while the caller read Redis
    assert not near.put("k", "old", 1, ticket)
    assert near.get("k") is None
    assert near.put("other", "v", 1, ticket)  # another key's put with the same ticket is fine
    assert near.put("k", "new", 1, near.ticket())  # a ticket taken after the discard is fine
    assert near.get("k") == "new"


def test_discard_drops_entries() -> None:
    near = NearCache()
    for key in "abcd":
        fill(near, key, size=5)
    near.discard("a", "b")
    near.discard_many(iter(["c", "not there"]))
    assert [near.get(key) for key in "abcd"] == [None, None, None, "v"]
    assert near.bytes == 5


@pytest.mark.parametrize("event", ["clear", "disable", "enable"])
def test_a_put_with_a_ticket_from_before_a_clear_disable_or_enable_is_refused(event: str) -> None:
    near = NearCache()
    fill(near, "k")
    ticket = near.ticket()
    getattr(near, event)()
    assert len(near) == 0
    near.enable()
    assert not near.put("k", "old", 1, ticket)
    assert not near.put("never discarded", "old", 1, ticket)
    assert near.put("k", "new", 1, near.ticket())


def test_disabled_refuses_puts_and_misses() -> None:
    near = NearCache()
    fill(near, "k")
    near.disable()
    assert not near.enabled
    assert near.get("k") is None
    assert not fill(near, "k")  # even with a ticket taken while disabled
    near.enable()
    assert near.enabled
    assert near.get("k") is None  # emptied
    assert fill(near, "k")
    assert near.get("k") == "v"


def test_a_ticket_taken_while_disabled_is_refused_after_enable() -> None:
    """Reads made while no tracker watched (disabled) may be stale by the time it is enabled."""
    near = NearCache()
    near.disable()
    ticket = near.ticket()
    near.enable()
    assert not near.put("k", "read while unwatched", 1, ticket)


def test_the_memory_of_discarded_keys_stays_bounded_and_its_overflow_refuses() -> None:
    near = NearCache(remembered_discards=4)
    early = near.ticket()
    near.discard(*[f"key{i}" for i in range(10)])
    assert len(near._discarded) == 4
    # "untouched" was never discarded, but which keys were discarded after `early` is forgotten.
    assert not near.put("untouched", "v", 1, early)
    # Still remembered precisely: a key discarded after the ticket, and one before it.
    ticket = near.ticket()
    near.discard("recent")
    assert not near.put("recent", "v", 1, ticket)
    assert near.put("key9", "v", 1, ticket)
    assert near.put("untouched", "v", 1, ticket)
    for i in range(1000):
        near.discard(f"more{i}")
    assert len(near._discarded) == 4


def test_concurrent_fills_and_discards_never_keep_a_stale_value() -> None:
    """Readers put what they "read" (the version at their ticket) while a writer bumps the
    version and discards: every entry left must be the latest version."""
    near = NearCache(max_entries=10_000)
    version = {"k": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            ticket = near.ticket()
            with lock:
                seen = version["k"]
            near.put("k", seen, 1, ticket)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(2000):
            with lock:
                version["k"] += 1
            near.discard("k")  # the write's invalidation, after the write
            value = near.get("k")
            with lock:
                latest = version["k"]
            assert value is None or value == latest, (value, latest)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert near.get("k") in (None, version["k"])


# -- arguments -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_entries": 0}, "near cache max_entries must be a positive int, got 0"),
        ({"max_entries": 1.5}, "max_entries must be a positive int, got 1.5"),
        ({"max_entries": True}, "max_entries must be a positive int, got True"),
        ({"max_bytes": -1}, "near cache max_bytes must be a positive int, got -1"),
        ({"remembered_discards": 0}, "remembered_discards must be a positive int, got 0"),
        ({"ttl": 0}, "near cache ttl must be a number of seconds above 0, got 0"),
        ({"ttl": "2"}, "ttl must be a number of seconds above 0, got '2'"),
        ({"ttl": float("nan")}, "ttl must be a number of seconds above 0, got nan"),
        ({"ttl": 61}, "at most 60 s, got 61: the TTL bounds how stale an entry can get when "),
    ],
)
def test_argument_validation_says_what_to_change(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        NearCache(**kwargs)


def test_the_ttl_cap_is_allowed() -> None:
    assert NearCache(ttl=MAX_TTL).ttl == 60.0


def test_put_size_validation() -> None:
    near = NearCache()
    with pytest.raises(ValueError, match="near cache entry size must be an int >= 0, got -1"):
        near.put("k", "v", -1, near.ticket())


# -- fork ----------------------------------------------------------------------------------------


def _fork(child: Any) -> dict[str, Any]:
    """Run ``child()`` in a forked child; its JSON-able result comes back through a pipe."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() in a process with threads (the suite has some).
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            os.close(read_end)
            signal.alarm(10)  # a deadlocked child must not hang the suite
            os.write(write_end, json.dumps(child()).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"child failed: {status}"
    result: dict[str, Any] = json.loads(data)
    return result


def test_fork_clears_the_childs_copy() -> None:
    near = NearCache()
    fill(near, "k", size=7)
    ticket = near.ticket()

    def child() -> dict[str, Any]:
        return {
            "len": len(near),
            "bytes": near.bytes,
            "get": near.get("k"),
            "old ticket put": near.put("x", "v", 1, ticket),
            "new put": fill(near, "y"),
        }

    assert _fork(child) == {
        "len": 0,
        "bytes": 0,
        "get": None,
        "old ticket put": False,  # a ticket from the parent (cleared since)
        "new put": True,
    }
    assert near.get("k") == "v"  # the parent keeps its own


def test_fork_while_another_thread_holds_the_lock() -> None:
    """The child has no copy of the thread that held the lock: it gets a new lock."""
    near = NearCache()
    fill(near, "k")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with near._lock:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(5)
        result = _fork(lambda: {"get": near.get("k"), "put": fill(near, "k")})
    finally:
        release.set()
        thread.join()
    assert result == {"get": None, "put": True}


# -- copies --------------------------------------------------------------------------------------


def _all_types(**overrides: Any) -> AllTypes:
    values: dict[str, Any] = {
        "id": 1,
        "char": "char",
        "text": "text",
        "slug": "slug",
        "email": "a@example.com",
        "url": "https://example.com",
        "small": 1,
        "integer": 2,
        "big": 3,
        "positive_small": 4,
        "positive": 5,
        "positive_big": 6,
        "floating": 1.5,
        "decimal": Decimal("1.2500"),
        "boolean": True,
        "nullable_boolean": None,
        "date": datetime.date(2024, 1, 2),
        "time": datetime.time(3, 4),
        "moment": datetime.datetime(2024, 1, 2, 3, 4, tzinfo=datetime.UTC),
        "duration": datetime.timedelta(seconds=5),
        "uuid": "6f1c2b1e-3a4d-4c5e-8f90-a1b2c3d4e5f6",
        "binary": memoryview(bytearray(b"bytes")),
        "json": {"tags": ["a", "b"], "nested": {"n": 1}},
        "ip": "127.0.0.1",
        "file": "files/a.txt",
        "image": "",
        "org_id": 5,
        "nothing": None,
    }
    values.update(overrides)
    names = [f.attname for f in AllTypes._meta.concrete_fields]
    return AllTypes.from_db("default", names, [values[name] for name in names])


def test_mutable_attnames_of_the_built_in_fields() -> None:
    assert mutable_attnames(AllTypes) == ("binary", "json", "file", "image")
    assert mutable_attnames(Org) == ()


def test_mutable_attnames_of_array_like_and_custom_fields() -> None:
    from django.contrib.postgres.fields import ArrayField

    class Jsonish(models.TextField):  # type: ignore[type-arg]
        def get_internal_type(self) -> str:
            return "JSONField"

    with isolate_apps():  # none installed: no app ready() runs again

        class Arrays(models.Model):
            name = models.CharField(max_length=10)
            numbers = ArrayField(models.IntegerField())
            custom = Jsonish()
            parent = models.ForeignKey(Org, on_delete=models.CASCADE)

            class Meta:
                app_label = "testapp"

        assert mutable_attnames(Arrays) == ("numbers", "custom")


def test_a_mutated_clone_leaves_the_cached_instance_alone() -> None:
    cached = _all_types()
    near = NearCache()
    near.put("k", cached, 100, near.ticket())
    copy = clone(near.get("k"), mutable_attnames(AllTypes))
    copy.json["tags"].append("c")
    copy.json["nested"]["n"] = 2
    copy.binary[0] = ord("B")
    copy.char = "changed"
    copy.file.name = "files/b.txt"
    again = near.get("k")
    assert again is cached
    assert cached.json == {"tags": ["a", "b"], "nested": {"n": 1}}
    assert bytes(cached.binary) == b"bytes"
    assert cached.char == "char"
    assert cached.file.name == "files/a.txt"
    assert bytes(copy.binary) == b"Bytes"


def test_a_clone_has_a_fresh_state_and_equals_the_original() -> None:
    cached = _all_types()
    cached.org = Org(id=5, name="org")  # fills _state.fields_cache
    cached._prefetched_objects_cache = {"things": []}  # type: ignore[attr-defined]
    assert cached._state.fields_cache
    copy = clone(cached, mutable_attnames(AllTypes))
    assert copy == cached
    assert copy is not cached
    assert type(copy) is AllTypes
    assert copy._state is not cached._state
    assert copy._state.db == "default"
    assert copy._state.adding is False
    assert copy._state.fields_cache == {}
    assert not hasattr(copy, "_prefetched_objects_cache")
    assert copy.org_id == 5
    simple = ["char", "decimal", "moment", "uuid", "json", "file", "org_id", "nothing"]
    assert {n: getattr(copy, n) for n in simple} == {n: getattr(cached, n) for n in simple}
    assert copy.file.instance is copy  # its own FieldFile, not the cached instance's


def test_a_clone_keeps_deferred_fields_deferred() -> None:
    cached = AllTypes.from_db("default", ["id", "char"], [1, "char"])
    copy = clone(cached, mutable_attnames(AllTypes))
    assert copy.get_deferred_fields() == cached.get_deferred_fields()
    assert "json" in copy.get_deferred_fields()


def test_clone_copies_a_read_only_memoryview_as_bytes_backed() -> None:
    cached = _all_types(binary=memoryview(b"bytes"))
    copy = clone(cached, ("binary",))
    assert copy.binary is not cached.binary
    assert isinstance(copy.binary, memoryview)
    assert copy.binary.readonly
    assert bytes(copy.binary) == b"bytes"
