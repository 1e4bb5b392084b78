"""Fail-open under injected faults: a private Redis behind a :class:`FaultProxy`.

Each test warms the cache with the proxy passing traffic, switches a fault on, and checks that the
cached reads still answer exactly what the database holds, raise nothing but ``DoesNotExist``, are
slowed down by at most a few socket timeouts, and are reported (one warning per interval, the
``cache_error`` signal, the stats error counter). Then the fault is switched off and the entries
filled before it are served again. See docs/faults.md.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, TypeVar

import pytest
import redis
from django.db import connection
from django.test.utils import CaptureQueriesContext
from redis.backoff import NoBackoff
from redis.retry import Retry

from django_cacheaside import signals
from django_cacheaside.backend import errors
from django_cacheaside.stats import counters
from tests.factories import ArticleFactory, OrgFactory, update_behind_our_back
from tests.faultproxy import FaultProxy
from tests.servers import ServerFactory, private_redis  # noqa: F401 - private_redis: the fixture
from tests.testapp.models import Article, Org

TIMEOUT = 0.1  # SOCKET_TIMEOUT and SOCKET_CONNECT_TIMEOUT of the app, in seconds
SLOWEST = 10 * TIMEOUT  # the most a read may take under any fault (a few timeouts, loosely)
WATCHDOG = 5.0  # seconds after which a stuck read is freed by resetting its connection
WARNING = "answering from the database"
ERRORS = (counters.ANY_MODEL, "", "errors")  # the stats counter every cache_error adds to

T = TypeVar("T")

# (mode, its parameters): every way the proxy can break the connection.
FAULTS = [
    pytest.param("refuse", {}, id="refused"),
    pytest.param("blackhole", {}, id="blackholed"),
    pytest.param("latency", {"ms": 300}, id="slower-than-the-timeout"),
    pytest.param("reset", {}, id="reset"),
    pytest.param("reset_mid_reply", {"after": 3}, id="reset-mid-reply"),
    pytest.param("garbage", {}, id="garbage"),
]


@pytest.fixture
def proxy(private_redis: ServerFactory, settings: Any) -> Iterator[FaultProxy]:  # noqa: F811
    """The app's Redis: a private server behind a fault proxy, with short socket timeouts."""
    server = private_redis()
    with FaultProxy(server.port) as proxy:
        settings.CACHEASIDE = {
            **settings.CACHEASIDE,
            "REDIS": proxy.url,
            "SOCKET_TIMEOUT": TIMEOUT,
            "SOCKET_CONNECT_TIMEOUT": TIMEOUT,
            "BREAKER_THRESHOLD": 10**9,  # never opens: every call below really goes to Redis
            "ERROR_LOG_INTERVAL": 60,
        }
        yield proxy


@pytest.fixture
def error_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh rate limiter for the warning: an earlier test's warning must not silence ours."""
    monkeypatch.setattr(errors, "_errors", errors._ErrorLog())


@pytest.fixture
def cache_errors() -> Iterator[list[str]]:
    """The ``operation`` of every ``cache_error`` sent during the test."""
    operations: list[str] = []

    def record(sender: Any, operation: str, **kwargs: Any) -> None:
        operations.append(operation)

    signals.cache_error.connect(record)
    yield operations
    signals.cache_error.disconnect(record)


class Rows(NamedTuple):
    org: Org
    articles: list[Article]
    missing: int  # a pk no row has


@pytest.fixture
def rows(proxy: FaultProxy) -> Rows:
    org = OrgFactory.create()
    articles = ArticleFactory.create_batch(3, org=org)
    return Rows(org, articles, max(a.pk for a in articles) + 1000)


def read_everything(rows: Rows) -> None:
    """Every cached read of the rows, checked against what the database holds now."""
    for article in rows.articles:
        assert_same(Article.cached.get(pk=article.pk), Article.objects.get(pk=article.pk))
    pks = [a.pk for a in rows.articles]
    many = Article.cached.get_many([*pks, rows.missing])
    assert sorted(many) == pks
    for pk, article in many.items():
        assert_same(article, Article.objects.get(pk=pk))
    listed = list(Article.cached.filter(org=rows.org).order_by("pk"))
    assert [a.pk for a in listed] == pks
    for article in listed:
        assert_same(article, Article.objects.get(pk=article.pk))
    with pytest.raises(Article.DoesNotExist):
        Article.cached.get(pk=rows.missing)


def assert_same(cached: Article, stored: Article) -> None:
    assert (cached.pk, cached.title, cached.slug, cached.org_id) == (
        stored.pk,
        stored.title,
        stored.slug,
        stored.org_id,
    )


def warm(rows: Rows) -> None:
    """Fill every entry the reads use, and check they are hits: no query at all."""
    read_everything(rows)  # misses: fills
    with CaptureQueriesContext(connection) as queries:
        for article in rows.articles:
            assert Article.cached.get(pk=article.pk).title == article.title
        assert sorted(Article.cached.get_many([a.pk for a in rows.articles])) == [
            a.pk for a in rows.articles
        ]
        assert len(list(Article.cached.filter(org=rows.org).order_by("pk"))) == 3
        with pytest.raises(Article.DoesNotExist):
            Article.cached.get(pk=rows.missing)  # the remembered "does not exist"
    assert len(queries) == 0, [q["sql"] for q in queries]


def assert_hits(rows: Rows, titles: dict[int, str]) -> None:
    """Every read is answered from the cache (no query) with the entries filled before."""
    with CaptureQueriesContext(connection) as queries:
        for article in rows.articles:
            assert Article.cached.get(pk=article.pk).title == titles[article.pk]
        many = Article.cached.get_many([a.pk for a in rows.articles])
        assert {pk: a.title for pk, a in many.items()} == titles
        listed = list(Article.cached.filter(org=rows.org).order_by("pk"))
        assert {a.pk: a.title for a in listed} == titles
        with pytest.raises(Article.DoesNotExist):
            Article.cached.get(pk=rows.missing)
    assert len(queries) == 0, [q["sql"] for q in queries]


@contextlib.contextmanager
def watchdog(proxy: FaultProxy, seconds: float = WATCHDOG) -> Iterator[None]:
    """Reset the proxy's connections if the block is still running after ``seconds``: a read with
    no socket timeout would otherwise wait forever on a black hole. Fails the test if it fired."""
    fired = threading.Event()

    def fire() -> None:
        fired.set()
        proxy.set_mode("reset")

    timer = threading.Timer(seconds, fire)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()
    assert not fired.is_set(), f"a read was still waiting after {seconds} s: no socket timeout?"


def timed(call: Callable[[], T]) -> tuple[T, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def errors_counted() -> int:
    return counters.buffer.totals().get(ERRORS, 0)


# -- every fault: answered from the database -----------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("mode", "params"), FAULTS)
@pytest.mark.usefixtures("error_log")
def test_reads_fail_open(
    mode: str,
    params: dict[str, Any],
    proxy: FaultProxy,
    rows: Rows,
    cache_errors: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    warm(rows)
    assert proxy.stats().connections > 0  # the app really talks through the proxy
    assert cache_errors == []
    cached_titles = {a.pk: a.title for a in rows.articles}
    # Behind the app's back: the cache now holds the old titles, the database the new ones, so a
    # read that answers the new title was answered by the database.
    for article in rows.articles:
        update_behind_our_back(Article, article.pk, title=f"{article.title} (new)")
    counted = errors_counted()

    proxy.set_mode(mode, **params)
    with (
        caplog.at_level(logging.WARNING, logger="django_cacheaside"),
        watchdog(proxy),
        CaptureQueriesContext(connection) as queries,
    ):
        for article in rows.articles:
            read, took = timed(functools.partial(Article.cached.get, pk=article.pk))
            assert read.title == f"{article.title} (new)"
            assert took < SLOWEST, f"get() took {took:.2f} s"
        many, took = timed(lambda: Article.cached.get_many([a.pk for a in rows.articles]))
        assert {pk: a.title for pk, a in many.items()} == {
            pk: f"{title} (new)" for pk, title in cached_titles.items()
        }
        assert took < SLOWEST, f"get_many() took {took:.2f} s"
        listed, took = timed(lambda: list(Article.cached.filter(org=rows.org).order_by("pk")))
        assert [a.title for a in listed] == [f"{cached_titles[a.pk]} (new)" for a in listed]
        assert [a.pk for a in listed] == sorted(cached_titles)
        assert took < SLOWEST, f"filter() took {took:.2f} s"
        started = time.monotonic()
        with pytest.raises(Article.DoesNotExist):
            Article.cached.get(pk=rows.missing)
        assert time.monotonic() - started < SLOWEST
    assert len(queries) >= 6  # each of the six reads above went to the database

    assert {"read", "_read_many"} <= set(cache_errors), cache_errors
    assert errors_counted() - counted == len(cache_errors)
    warnings = [r for r in caplog.records if WARNING in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once per ERROR_LOG_INTERVAL
    assert warnings[0].levelno == logging.WARNING

    proxy.set_mode("pass")
    failures = len(cache_errors)
    assert_hits(rows, cached_titles)  # the entries filled before the fault, unchanged
    assert len(cache_errors) == failures  # nothing failed once the fault was gone


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("error_log")
def test_latency_below_the_timeout_still_hits(
    proxy: FaultProxy, rows: Rows, cache_errors: list[str]
) -> None:
    warm(rows)
    delay = 0.015  # per direction: a round trip takes 2 x 15 ms, well under the 100 ms timeout
    proxy.set_mode("latency", ms=delay * 1000)
    titles = {a.pk: a.title for a in rows.articles}
    for article in rows.articles:
        _, took = timed(functools.partial(assert_title, article.pk, titles[article.pk]))
        assert took >= 2 * delay  # the delay was in the path
    assert_hits(rows, titles)
    assert cache_errors == []


def assert_title(pk: int, title: str) -> None:
    with CaptureQueriesContext(connection) as queries:
        assert Article.cached.get(pk=pk).title == title
    assert len(queries) == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("error_log")
def test_the_warning_comes_again_after_the_interval(
    proxy: FaultProxy, rows: Rows, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    interval = 0.3
    settings.CACHEASIDE = {**settings.CACHEASIDE, "ERROR_LOG_INTERVAL": interval}
    proxy.set_mode("refuse")
    with caplog.at_level(logging.WARNING, logger="django_cacheaside"):
        for _ in range(3):
            Article.cached.get(pk=rows.articles[0].pk)
        assert len([r for r in caplog.records if WARNING in r.getMessage()]) == 1
        time.sleep(interval + 0.05)
        Article.cached.get(pk=rows.articles[0].pk)
    warnings = [r.getMessage() for r in caplog.records if WARNING in r.getMessage()]
    assert len(warnings) == 2, warnings
    assert "(0 similar failures not logged)" not in warnings[1]  # the suppressed ones are counted


# -- the tools themselves --------------------------------------------------------------------------


def test_a_persistent_server_keeps_its_port_and_data_across_a_crash(
    private_redis: ServerFactory,  # noqa: F811
) -> None:
    server = private_redis(persistence=True)
    client = server.client()
    client.set("survivor", b"yes")
    port = server.port
    server.kill()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    server.start()
    assert server.port == port
    assert client.get("survivor") == b"yes"


def test_a_server_without_persistence_forgets_on_a_crash(
    private_redis: ServerFactory,  # noqa: F811
) -> None:
    server = private_redis()
    client = server.client()
    client.set("survivor", b"no")
    server.kill()
    server.start()
    assert client.get("survivor") is None


def test_a_server_takes_its_memory_policy_and_extra_options(
    private_redis: ServerFactory,  # noqa: F811
) -> None:
    server = private_redis(maxmemory="2mb", policy="noeviction", extra=["--maxmemory-samples", "7"])
    config = server.client().config_get("maxmemory*")
    assert config["maxmemory"] == str(2 * 1024 * 1024)
    assert config["maxmemory-policy"] == "noeviction"
    assert config["maxmemory-samples"] == "7"
    assert server.client().config_get("appendonly")["appendonly"] == "no"


def test_the_proxy_faults_as_redis_py_sees_them(
    private_redis: ServerFactory,  # noqa: F811
) -> None:
    server = private_redis()
    with FaultProxy(server.port) as proxy:
        client = redis.Redis.from_url(
            proxy.url,
            socket_timeout=TIMEOUT,
            socket_connect_timeout=TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        with client:
            client.set("k", b"v")
            expected: list[tuple[str, dict[str, Any], type[Exception]]] = [
                ("blackhole", {}, redis.TimeoutError),
                ("reset", {}, redis.ConnectionError),
                ("reset_mid_reply", {"after": 2}, redis.ConnectionError),
                ("refuse", {}, redis.ConnectionError),
                ("garbage", {}, redis.exceptions.InvalidResponse),
            ]
            for mode, params, error in expected:
                proxy.set_mode("pass")
                assert client.get("k") == b"v"
                proxy.set_mode(mode, **params)
                with pytest.raises(error):
                    client.get("k")
            proxy.set_mode("refuse")
            before = proxy.stats()
            with pytest.raises(redis.ConnectionError):
                client.get("k")
            assert proxy.stats() == before  # nothing reached the proxy
            proxy.set_mode("pass")
            assert client.get("k") == b"v"
            assert proxy.stats().bytes_from_server > before.bytes_from_server
    assert not [t for t in threading.enumerate() if t.name.startswith("FaultProxy")]
