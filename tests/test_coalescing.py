"""In-process coalescing never hands a caller a row read before that caller started.

Found by the history checker (tests/history.py): a ``get()`` that began after a commit joined a
load that had read the row before the commit, and was given the old row. These tests stage that
interleaving deterministically: the leader's query runs, then the leader is held before it fills;
meanwhile the row is updated and committed, and only then does a follower arrive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connection

from django_cacheaside import coalescing
from tests.factories import ArticleFactory
from tests.testapp.models import Article
from tests.threads import close_thread_connections

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="a write must commit while another thread's read is in flight: SQLite's shared "
        "in-memory test database locks the table instead",
    ),
]


class HeldAfterQuery:
    """An ``execute_wrapper`` that lets a SELECT of the articles table run, then holds the thread
    (the row it read in hand) until released."""

    def __init__(self) -> None:
        self.read = threading.Event()
        self.release = threading.Event()

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith("SELECT") and Article._meta.db_table in sql:
            self.read.set()
            assert self.release.wait(10), "the test never released the leader"
        return result


@contextmanager
def joining_signal(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """An event set once a second caller has entered ``Flights.run`` (the follower)."""
    entered = threading.Event()
    calls = []
    original = coalescing.Flights.run

    def run(self: coalescing.Flights, key: Any, leader: Callable[[], Any], wait: float) -> Any:
        calls.append(key)
        if len(calls) >= 2:
            entered.set()
        return original(self, key, leader, wait)

    monkeypatch.setattr(coalescing.Flights, "run", run)
    yield entered


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def work() -> None:
        try:
            out.append(target())
        except BaseException as error:  # pragma: no cover - reported by the assertions
            out.append(error)
        finally:
            close_thread_connections()

    thread = threading.Thread(target=work)
    thread.start()
    return thread, out


def stage(
    monkeypatch: pytest.MonkeyPatch,
    leader_read: Callable[[], Any],
    follower_read: Callable[[], Any],
) -> tuple[Any, Any]:
    """Leader reads the row, a commit changes it, then a follower arrives: both results."""
    held = HeldAfterQuery()

    def lead() -> Any:
        with connection.execute_wrapper(held):
            return leader_read()

    with joining_signal(monkeypatch) as entered:
        leader, led = in_thread(lead)
        assert held.read.wait(10)  # the leader has the old row in hand
        article = Article.objects.get()
        article.title = "new"
        article.save()  # committed and invalidated
        follower, followed = in_thread(follower_read)
        assert entered.wait(10)
        follower.join(0.2)  # give it time to join the leader's flight
        held.release.set()
        leader.join(10)
        follower.join(10)
    return led[0], followed[0]


def test_a_get_that_starts_after_a_commit_never_shares_an_older_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    article = ArticleFactory.create(title="old")
    read = lambda: Article.cached.get(pk=article.pk).title  # noqa: E731
    led, followed = stage(monkeypatch, read, read)
    assert led == "old"  # the leader started before the commit: allowed
    assert followed == "new"
    assert Article.cached.get(pk=article.pk).title == "new"


def test_a_cached_query_that_starts_after_a_commit_never_shares_an_older_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    article = ArticleFactory.create(title="old")
    # Which rows match changes with the commit: the result is a list of pks.
    read = lambda: [a.pk for a in Article.cached.filter(title="old")]  # noqa: E731
    led, followed = stage(monkeypatch, read, read)
    assert led == [article.pk]  # the leader's query ran before the commit: allowed
    assert followed == []
    assert list(Article.cached.filter(title="old")) == []
