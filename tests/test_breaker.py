"""The circuit breaker and the replay of lost invalidations, against a private Redis behind a
fault proxy (tests/faultproxy.py): the proxy's byte counters show whether the app called Redis."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from django_cacheaside import keys, replay, signals
from django_cacheaside.backend import breaker as breaker_module
from django_cacheaside.backend import get_backend
from django_cacheaside.stats import counters
from tests.factories import ArticleFactory, OrgFactory
from tests.faultproxy import FaultProxy
from tests.servers import RedisServer, ServerFactory, private_redis  # noqa: F401 - the fixture
from tests.testapp.models import Article, Org

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 0.1  # the app's socket timeouts in these tests


def namespace() -> str:
    return Article.cached._settings().namespace


def model_pattern(model: Any) -> str:
    return keys.model_pattern(namespace(), model.cached._label)


def eventually(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Wait (bounded) for ``condition``: the recovery thread works in the background."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {condition}")
        time.sleep(0.02)


class Faulty:
    """A private server, the proxy in front of it, and the app pointed at the proxy."""

    def __init__(self, server: RedisServer, proxy: FaultProxy, settings: Any) -> None:
        self.server = server
        self.proxy = proxy
        self.settings = settings

    def configure(self, **options: Any) -> None:
        self.settings.CACHEASIDE = {
            **self.settings.CACHEASIDE,
            "REDIS": self.proxy.url,
            "SOCKET_TIMEOUT": TIMEOUT,
            "SOCKET_CONNECT_TIMEOUT": TIMEOUT,
            **options,
        }

    def sent(self) -> int:
        """Bytes the app sent towards Redis so far."""
        return self.proxy.stats().bytes_from_client


@pytest.fixture
def faulty(private_redis: ServerFactory, settings: Any) -> Iterator[Faulty]:  # noqa: F811
    server = private_redis()
    with FaultProxy(server.port) as proxy:
        faulty = Faulty(server, proxy, settings)
        faulty.configure(BREAKER_THRESHOLD=3, BREAKER_COOLDOWN=30)
        yield faulty


@pytest.fixture
def breaker_states() -> Iterator[list[str]]:
    states: list[str] = []

    def record(sender: Any, state: str, **kwargs: Any) -> None:
        states.append(state)

    signals.cache_breaker.connect(record)
    yield states
    signals.cache_breaker.disconnect(record)


def test_the_breaker_opens_after_the_threshold_and_then_redis_is_not_called(
    faulty: Faulty, breaker_states: list[str]
) -> None:
    article = ArticleFactory.create()
    assert Article.cached.get(pk=article.pk) == article
    faulty.proxy.set_mode("blackhole")
    breaker = get_backend().breaker
    while not breaker.open_until:
        assert Article.cached.get(pk=article.pk) == article  # each costs a timeout, no more
    assert breaker_states == ["open"]
    sent = faulty.sent()
    connections = faulty.proxy.stats().connections
    for _ in range(200):
        assert Article.cached.get(pk=article.pk) == article
        assert list(Article.cached.get_many([article.pk])) == [article.pk]
        with pytest.raises(Article.DoesNotExist):
            Article.cached.get(pk=article.pk + 1000)
    assert faulty.sent() == sent  # not one byte towards Redis while open
    assert faulty.proxy.stats().connections == connections
    assert breaker_module.describe(breaker)["state"] == "open"


def test_the_breaker_probes_after_the_cooldown_and_closes_when_redis_answers(
    faulty: Faulty, breaker_states: list[str]
) -> None:
    faulty.configure(BREAKER_THRESHOLD=2, BREAKER_COOLDOWN=0.3)
    counters.buffer.take()
    article = ArticleFactory.create()
    faulty.proxy.set_mode("refuse")
    breaker = get_backend().breaker
    while not breaker.open_until:
        Article.cached.get(pk=article.pk)
    faulty.proxy.set_mode("pass")
    eventually(lambda: not breaker.degraded)  # a probe, then one more cool-down
    assert breaker_states == ["open", "closed"]
    hits: list[str] = []

    def record(sender: Any, key: str, **kwargs: Any) -> None:
        hits.append(key)

    signals.cache_hit.connect(record)
    try:
        Article.cached.get(pk=article.pk)
        assert Article.cached.get(pk=article.pk) == article
    finally:
        signals.cache_hit.disconnect(record)
    assert hits == [Article.cached.key_for_pk(article.pk)]
    assert counters.buffer.take()[(counters.ANY_MODEL, "", "breaker_opens")] == 1


def test_a_failed_probe_opens_the_breaker_again(faulty: Faulty) -> None:
    faulty.configure(BREAKER_THRESHOLD=1, BREAKER_COOLDOWN=0.2)
    article = ArticleFactory.create()
    faulty.proxy.set_mode("refuse")
    breaker = get_backend().breaker
    Article.cached.get(pk=article.pk)
    assert breaker.open_until
    faulty.proxy.set_mode("blackhole")
    first = faulty.proxy.stats().connections
    time.sleep(1.5)
    for _ in range(100):
        assert Article.cached.get(pk=article.pk) == article
    probes = faulty.proxy.stats().connections - first
    # One probe per cool-down plus its timeout: about 1.5 / 0.3 of them, never one per read.
    assert 1 <= probes <= 8
    assert breaker.open_until and breaker.degraded


def test_error_replies_do_not_open_the_breaker(redis_client: Any, settings: Any) -> None:
    settings.CACHEASIDE = {**settings.CACHEASIDE, "BREAKER_THRESHOLD": 2}
    article = ArticleFactory.create()
    redis_client.set(Article.cached.key_for_pk(article.pk), b"not a hash", px=10_000)
    for _ in range(10):
        assert Article.cached.get(pk=article.pk) == article  # WRONGTYPE: Redis is there
    breaker = get_backend().breaker
    assert not breaker.open_until and not breaker.degraded


def test_the_app_connections_have_short_timeouts_and_no_retries(settings: Any) -> None:
    settings.CACHEASIDE = {
        **settings.CACHEASIDE,
        "REDIS": "redis://127.0.0.1:6379/0",
        "SOCKET_TIMEOUT": 0.05,
        "SOCKET_CONNECT_TIMEOUT": 0.07,
    }
    direct = get_backend()._direct
    assert direct is not None
    assert direct._kwargs["socket_timeout"] == 0.05
    assert direct._kwargs["socket_connect_timeout"] == 0.07
    assert direct._kwargs["retry"].get_retries() == 0
    client = get_backend().client
    assert isinstance(client, redis.Redis)
    pool = client.connection_pool
    assert pool.connection_kwargs["socket_timeout"] == 0.05
    # A timeout in the URL's query string wins over the setting.
    settings.CACHEASIDE = {
        **settings.CACHEASIDE,
        "REDIS": "redis://127.0.0.1:6379/0?socket_timeout=0.5",
    }
    direct = get_backend()._direct
    assert direct is not None and direct._kwargs["socket_timeout"] == 0.5


# -- lost invalidations ---------------------------------------------------------------------


@pytest.mark.parametrize("outage", ["refused", "breaker-open"])
def test_a_write_redis_missed_is_replayed_when_it_is_back(faulty: Faulty, outage: str) -> None:
    """Write while Redis is unreachable, bring it back with the old entry still in it: the
    replay drops the entry, and no read in between or after returns the old row."""
    faulty.configure(BREAKER_THRESHOLD=10**9 if outage == "refused" else 1, BREAKER_COOLDOWN=0.3)
    article = ArticleFactory.create(title="old")
    assert Article.cached.get(pk=article.pk).title == "old"
    key = Article.cached.key_for_pk(article.pk)
    server = faulty.server.client()
    assert server.hget(key, "d") is not None  # the old row is in Redis
    faulty.proxy.set_mode("refuse")
    if outage == "breaker-open":
        Article.cached.get(pk=article.pk)
        assert get_backend().breaker.open_until
    article.title = "new"
    article.save()  # its invalidation cannot reach Redis: kept
    assert server.hget(key, "d") is not None  # the stale entry survives the outage
    assert len(replay.lost_for(get_backend())) > 0
    assert Article.cached.get(pk=article.pk).title == "new"  # from the database
    faulty.proxy.set_mode("pass")
    assert Article.cached.get(pk=article.pk).title == "new"  # replayed first, or the database
    breaker = get_backend().breaker
    eventually(lambda: not breaker.degraded)
    assert len(replay.lost_for(get_backend())) == 0
    assert server.hget(key, "d") is None or Article.cached.get(pk=article.pk).title == "new"
    assert Article.cached.get(pk=article.pk).title == "new"
    assert Article.cached.get(pk=article.pk).title == "new"  # a hit now
    assert server.hget(key, "d") is not None


def test_past_the_limit_the_touched_models_are_purged_on_recovery(faulty: Faulty) -> None:
    faulty.configure(BREAKER_THRESHOLD=10**9, BREAKER_COOLDOWN=0.3, REPLAY_LIMIT=5)
    articles = ArticleFactory.create_batch(8)
    orgs = OrgFactory.create_batch(2)
    for article in articles:
        Article.cached.get(pk=article.pk)
    for org in orgs:
        Org.cached.get(pk=org.pk)
    server = faulty.server.client()
    faulty.proxy.set_mode("refuse")
    for article in articles:
        article.title = f"{article.title} (edited)"
        article.save()
    lost = replay.lost_for(get_backend())
    # At least once: on a slow machine the recovery thread (every 0.3 s) may try a replay while
    # Redis still refuses, which keeps the operations again and may reach the limit again.
    assert lost.coarsened >= 1
    assert lost.operations() == [("SCAN", model_pattern(Article))]
    faulty.proxy.set_mode("pass")
    eventually(lambda: not get_backend().breaker.degraded)
    for article in articles:
        assert server.exists(Article.cached.key_for_pk(article.pk)) == 0
        assert Article.cached.get(pk=article.pk).title.endswith("(edited)")
    for org in orgs:  # a model none of the writes touched keeps its entries
        assert server.hget(Org.cached.key_for_pk(org.pk), "d") is not None


def test_an_operation_redis_refuses_is_replayed_as_a_model_purge(redis_client: Any) -> None:
    article = ArticleFactory.create()
    Article.cached.get(pk=article.pk)
    generations = keys.query_generations_key(namespace(), Article.cached._label)
    redis_client.set(generations, b"not a hash", px=10_000)  # HDEL on it: WRONGTYPE
    backend = get_backend()
    replay.keep(backend, [("HDEL", generations, "title")])
    eventually(lambda: not backend.breaker.degraded)
    assert redis_client.exists(Article.cached.key_for_pk(article.pk), generations) == 0
    assert len(replay.lost_for(backend)) == 0
