"""Sentinel: the app borrows django-redis's Sentinel client from ``CACHES``, writes to whichever
server the sentinels name primary, and a failover under load serves no stale row.

Each test starts one primary, one replica and three sentinels of its own (``tests/clusters.py``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from redis.sentinel import SentinelConnectionPool

from django_cacheaside import backend
from tests.clusters import LocalSentinel, SentinelFactory, local_sentinel  # noqa: F401 - fixture
from tests.factories import ArticleFactory
from tests.history import run_history, show
from tests.test_cluster import PAUSE, norun_settings, stopped_for
from tests.testapp.models import Article


@pytest.fixture
def on_sentinel(settings: Any) -> Iterator[Any]:
    """Point the app at a sentinel setup through a django-redis cache alias, as a user would."""

    def use(setup: LocalSentinel, **options: Any) -> None:
        # The client's own timeout (OPTIONS) and the app's, which bounds its WAIT, agree.
        timeout = options.get("SOCKET_TIMEOUT", 0.25)
        settings.CACHES = {
            **settings.CACHES,
            "sentinel": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": f"redis://{setup.service_name}/0",
                "OPTIONS": {
                    "CLIENT_CLASS": "django_redis.client.SentinelClient",
                    "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
                    "CONNECTION_POOL_CLASS": "redis.sentinel.SentinelConnectionPool",
                    "SENTINELS": setup.sentinel_addresses,
                    "SOCKET_TIMEOUT": timeout,
                    "SOCKET_CONNECT_TIMEOUT": 0.25,
                },
            },
        }
        settings.CACHEASIDE = {
            **settings.CACHEASIDE,
            "CACHE_ALIAS": "sentinel",
            "REDIS": None,
            **options,
        }
        backend.reset()
        backend.get_backend()._load_scripts()

    yield use
    backend.reset()


def service_name() -> str:
    """A name of its own per setup: django-redis keeps its connection pools (and their sentinels)
    by LOCATION for the life of the process."""
    return f"cacheaside-{uuid.uuid4().hex[:8]}"


def holds(setup: LocalSentinel, server: Any, key: str) -> bool:
    return bool(setup.client(server).exists(key))


@pytest.mark.django_db(transaction=True)
def test_the_app_writes_to_the_primary_the_sentinels_name_and_replicas_get_invalidations(
    local_sentinel: SentinelFactory,  # noqa: F811
    on_sentinel: Any,
) -> None:
    setup = local_sentinel(service_name())
    on_sentinel(setup, REPLICA_ACKS=1, SOCKET_TIMEOUT=1.0)  # WAIT up to 0.5 s
    client = backend.get_backend().client
    assert isinstance(getattr(client, "connection_pool", None), SentinelConnectionPool)
    article = ArticleFactory.create()
    Article.cached.get(pk=article.pk)
    key = Article.cached.key_for_pk(article.pk)
    assert holds(setup, setup.primary, key)
    deadline = time.monotonic() + 5
    while not holds(setup, setup.replica, key):
        assert time.monotonic() < deadline, "the fill never reached the replica"
        time.sleep(0.02)
    timer = stopped_for(setup.replica, PAUSE)
    started = time.monotonic()
    article.title = "new"
    article.save()
    took = time.monotonic() - started
    timer.join()
    assert took >= PAUSE * 0.9  # WAIT: save() went on only once the stopped replica confirmed
    assert not holds(setup, setup.replica, key)
    assert Article.cached.get(pk=article.pk).title == "new"


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="concurrent writers need a database shared by threads: PostgreSQL",
)
@pytest.mark.django_db(transaction=True)
def test_a_sentinel_failover_under_load_serves_no_stale_row(
    local_sentinel: SentinelFactory,  # noqa: F811
    on_sentinel: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The primary is killed mid-workload and the sentinels promote the replica: reads go on
    (from the database while no primary answers), nothing raises, and no read is stale, during or
    after the switch: every invalidation was on the replica before its write went on, and those
    that could not reach any primary were replayed once one answered."""
    setup = local_sentinel(service_name())
    on_sentinel(setup, REPLICA_ACKS=1, LOCK_WAIT=0.25, BREAKER_COOLDOWN=0.5)
    timeline: dict[str, Any] = {}

    def fail_over() -> None:
        time.sleep(1.0)
        old = setup.primary_address()
        setup.kill_primary()
        killed = time.monotonic()
        timeline["new primary"] = setup.wait_for_failover() != old
        timeline["switched after s"] = round(time.monotonic() - killed, 2)
        time.sleep(2.5)  # the workload goes on against the promoted replica

    report = run_history(
        rows=100, writers=4, readers=16, operations=3000, during=fail_over, max_seconds=120
    )
    show(capsys, report, f"failover {timeline}")
    assert timeline.get("new primary") is True
    assert not report.errors, "\n".join(report.errors[:10])
    assert not report.violations, "\n".join(report.violations[:10])
    assert report.reads > 0 and report.writes > 0


@pytest.mark.django_db(transaction=True)
def test_the_settings_sample_of_the_docs_works_on_sentinels(
    local_sentinel: SentinelFactory,  # noqa: F811
    settings: Any,
) -> None:
    sample = norun_settings("scale-out.md", "SentinelClient")
    setup = local_sentinel(service_name())
    cache = sample["CACHES"]["default"]
    cache["LOCATION"] = f"redis://{setup.service_name}/0"
    cache["OPTIONS"]["SENTINELS"] = setup.sentinel_addresses
    settings.CACHES = {**settings.CACHES, "sentinel": cache}
    settings.CACHEASIDE = {
        **settings.CACHEASIDE,
        **sample["CACHEASIDE"],
        "CACHE_ALIAS": "sentinel",
        "REDIS": None,
    }
    backend.reset()
    try:
        article = ArticleFactory.create()
        Article.cached.get(pk=article.pk)
        key = Article.cached.key_for_pk(article.pk)
        assert holds(setup, setup.primary, key)
        article.save()
        assert not holds(setup, setup.replica, key)  # REPLICA_ACKS = 1, as the sample says
    finally:
        backend.reset()
