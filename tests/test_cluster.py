"""Redis Cluster: the key layout keeps every command on one slot, invalidations reach replicas
before the write goes on, and a live reshard or a primary's failover under load serves no stale row.

The rest of the suite runs against a cluster too, with ``CACHEASIDE_TEST_CLUSTER=1`` (CI does);
these tests start clusters of their own (``tests/clusters.py``) and need no such switch.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from redis.cluster import ClusterPipeline, RedisCluster

import django_cacheaside
from django_cacheaside import backend, keys
from tests.clusters import ClusterFactory, LocalCluster, local_cluster  # noqa: F401 - the fixture
from tests.factories import ArticleFactory, OrgFactory, PostFactory
from tests.history import Report, run_history, show
from tests.testapp.models import Article, Ledger, Post

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="concurrent writers need a database shared by threads: PostgreSQL",
)


def cluster_url(cluster: LocalCluster) -> str:
    return cluster.url.replace("redis://", "redis+cluster://", 1)


@pytest.fixture
def on_cluster(settings: Any) -> Iterator[Any]:
    """Point the app at a cluster: ``on_cluster(cluster, **more CACHEASIDE settings)``."""

    def use(cluster: LocalCluster, **options: Any) -> None:
        settings.CACHEASIDE = {**settings.CACHEASIDE, "REDIS": cluster_url(cluster), **options}
        backend.reset()
        backend.get_backend()._load_scripts()

    yield use
    backend.reset()


def test_the_url_gives_a_cluster_client(
    local_cluster: ClusterFactory,  # noqa: F811
    on_cluster: Any,
) -> None:
    on_cluster(local_cluster(primaries=3, replicas=0))
    assert isinstance(backend.get_backend().client, RedisCluster)
    assert backend.get_backend().cluster


def test_a_url_of_an_unknown_scheme_says_which_to_use(settings: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    settings.CACHEASIDE = {**settings.CACHEASIDE, "REDIS": "cluster://127.0.0.1:7000"}
    backend.reset()
    try:
        with pytest.raises(ImproperlyConfigured, match=r"redis\+cluster://"):
            backend.get_backend()
    finally:
        backend.reset()


# -- one slot per command ------------------------------------------------------------------------

AWKWARD = [1, 2**62, "a{b}c", "}{", "x=y,z", "%7B", "ünï"]


def test_each_key_family_shares_one_slot_where_a_command_needs_it(
    local_cluster: ClusterFactory,  # noqa: F811
) -> None:
    """What one script or command touches together, ``CLUSTER KEYSLOT`` puts in one slot; what
    belongs to different objects spreads over slots (the hash tag is not the whole key space)."""
    cluster = local_cluster(primaries=1, replicas=0)
    namespace = keys.namespace("p")
    label = "testapp.article"
    slots = set()
    for value in AWKWARD:
        obj = keys.object_key(namespace, label, value)
        pointer = keys.lookup_key(namespace, label, [("slug", value), ("org_id", 3)])
        families = {
            "object + its lease": [obj, keys.lock_key(obj)],
            "pointer + its lease": [pointer, keys.lock_key(pointer)],
            "query generations + a result": [
                keys.query_generations_key(namespace, label),
                keys.query_key(namespace, label, f"digest{value}"),
            ],
            "tag set + its purge marker": [
                keys.tag_key(namespace, f"org:{value}"),
                keys.tag_marker_key(keys.tag_key(namespace, f"org:{value}")),
            ],
        }
        for family, together in families.items():
            found = {cluster.keyslot(key) for key in together}
            assert len(found) == 1, (family, value, together, found)
            # redis-py routes by the same function
            assert found == {RedisCluster.keyslot(cluster.client(), together[0])}
        slots.add(cluster.keyslot(obj))
    assert len(slots) == len(AWKWARD)  # no two of these objects collide


@pytest.mark.django_db(transaction=True)
def test_every_command_the_app_sends_stays_on_one_slot(
    local_cluster: ClusterFactory,  # noqa: F811
    on_cluster: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every feature once, with each command's keys recorded: none spans two slots."""
    cluster = local_cluster(primaries=3, replicas=0)
    on_cluster(cluster)
    sent: list[tuple[Any, ...]] = []
    for cls in (RedisCluster, ClusterPipeline):
        original = cls.execute_command

        def recording(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            sent.append(args)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "execute_command", recording)
    org = OrgFactory.create()
    articles = ArticleFactory.create_batch(5, org=org)
    posts = PostFactory.create_batch(3, org=org)
    Article.cached.get(pk=articles[0].pk)
    Article.cached.get(org=org, slug=articles[1].slug)
    Article.cached.get_many([a.pk for a in articles])
    assert len(Article.cached.filter(org=org)) == 5
    assert Article.cached.filter(org=org).count() == 5
    Post.cached.get_many([p.pk for p in posts])
    articles[0].title = "changed"
    articles[0].save()
    django_cacheaside.invalidate_tags(f"org:{org.pk}")
    django_cacheaside.invalidate_model(Article)
    from django_cacheaside.stats import flusher

    assert flusher.flush()
    multi = 0
    for args in sent:
        name = str(args[0]).upper()
        if name in ("EVALSHA", "EVAL"):
            touched = list(args[3 : 3 + int(args[2])])
        elif name in ("DEL", "HGET", "HINCRBY", "PEXPIRE", "HGETALL", "GET", "SET", "ZREM"):
            touched = list(args[1:2]) if name != "DEL" else list(args[1:])
        else:
            continue
        multi += len(touched) > 1
        assert len({cluster.keyslot(key) for key in touched}) <= 1, args
    assert multi > 0  # the two-key scripts were among them


# -- replicas ------------------------------------------------------------------------------------


def replica_has(cluster: LocalCluster, key: str) -> bool:
    """Whether the replica of the primary serving ``key`` holds it (read there, READONLY)."""
    primary = cluster.primary_for_slot(cluster.keyslot(key))
    (replica,) = cluster.replicas_of(primary)
    client = cluster.node_client(replica)
    client.execute_command("READONLY")
    return bool(client.exists(key))


def stopped_for(server: Any, seconds: float) -> threading.Timer:
    """SIGSTOP ``server`` now and SIGCONT it after ``seconds``: meanwhile it can neither apply
    nor acknowledge what its primary sends (the bytes wait in its socket)."""
    assert server._process is not None
    pid = server._process.pid
    os.kill(pid, signal.SIGSTOP)
    timer = threading.Timer(seconds, os.kill, (pid, signal.SIGCONT))
    timer.start()
    return timer


PAUSE = 0.15  # seconds a replica is stopped while a write invalidates


@pytest.mark.django_db(transaction=True)
def test_with_replica_acks_a_write_goes_on_once_the_replica_has_its_invalidation(
    local_cluster: ClusterFactory,  # noqa: F811
    on_cluster: Any,
    cache_errors: list[str],
) -> None:
    """The replica is stopped while ``save()`` invalidates: ``save()`` returns only once it is
    back and has confirmed the deletion (WAIT), never before; and then it lacks the key."""
    cluster = local_cluster(primaries=3, replicas=1)
    on_cluster(cluster, REPLICA_ACKS=1, SOCKET_TIMEOUT=1.0)  # WAIT up to 0.5 s
    articles = ArticleFactory.create_batch(3)
    for article in articles:
        Article.cached.get(pk=article.pk)
        key = Article.cached.key_for_pk(article.pk)
        (replica,) = cluster.replicas_of(cluster.primary_for_slot(cluster.keyslot(key)))
        timer = stopped_for(replica, PAUSE)
        started = time.monotonic()
        article.title = "new"
        article.save()
        took = time.monotonic() - started
        timer.join()
        assert took >= PAUSE * 0.9, f"save() returned after {took:.3f} s, the replica still stopped"
        assert not replica_has(cluster, key)
    assert cache_errors == []


@pytest.mark.django_db(transaction=True)
def test_a_replica_that_does_not_confirm_in_time_is_reported_and_the_write_goes_on(
    local_cluster: ClusterFactory,  # noqa: F811
    on_cluster: Any,
    cache_errors: list[str],
) -> None:
    cluster = local_cluster(primaries=1, replicas=1)
    on_cluster(cluster, REPLICA_ACKS=1, SOCKET_TIMEOUT=0.2)
    article = ArticleFactory.create()
    Article.cached.get(pk=article.pk)
    (replica,) = cluster.replicas_of(cluster.primaries()[0])
    timer = stopped_for(replica, 1.0)  # longer than the WAIT (0.1 s)
    try:
        started = time.monotonic()
        article.title = "new"
        article.save()
        took = time.monotonic() - started
    finally:
        timer.join()
    assert "replicate" in cache_errors
    assert took < 0.9  # bounded by the WAIT timeout (half of SOCKET_TIMEOUT), twice over
    assert Article.cached.get(pk=article.pk).title == "new"


# -- under load ----------------------------------------------------------------------------------


def assert_clean(report: Report) -> None:
    assert not report.errors, "\n".join(report.errors[:10])  # nothing raised to a caller
    assert not report.violations, "\n".join(report.violations[:10])
    assert report.reads > 0 and report.writes > 0


def ledger_slots(cluster: LocalCluster) -> dict[int, int]:
    """How many of the Ledger rows' object keys each slot holds, busiest first."""
    counts: dict[int, int] = {}
    for pk in Ledger.objects.values_list("pk", flat=True):
        slot = cluster.keyslot(Ledger.cached.key_for_pk(pk))
        counts[slot] = counts.get(slot, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_live_resharding_under_load_serves_no_stale_row_and_raises_nothing(
    local_cluster: ClusterFactory,  # noqa: F811
    on_cluster: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cluster = local_cluster(primaries=3, replicas=0)
    on_cluster(cluster, LOCK_WAIT=0.25, BREAKER_COOLDOWN=0.5)
    moved: list[int] = []

    def reshard() -> None:
        time.sleep(0.5)
        for slot in list(ledger_slots(cluster))[:12]:  # the slots of the keys in use
            source = cluster.primary_for_slot(slot)
            target = next(p for p in cluster.primaries() if p is not source)
            cluster.migrate_slot(slot, target, batch=2, between_batches=lambda: time.sleep(0.01))
            moved.append(slot)
        time.sleep(0.5)

    report = run_history(
        rows=100, writers=4, readers=16, operations=3000, during=reshard, max_seconds=120
    )
    show(capsys, report, f"{len(moved)} slots moved live")
    assert len(moved) == 12
    assert_clean(report)


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_primary_failing_over_under_load_serves_no_stale_row(
    local_cluster: ClusterFactory,  # noqa: F811
    on_cluster: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A primary is killed mid-workload; its replica takes over. Invalidations were on the replica
    before each write went on (``REPLICA_ACKS=1``), so no entry comes back: no stale read before,
    during or after the failover, and no exception (reads of the dead node's slots go to the
    database meanwhile)."""
    cluster = local_cluster(primaries=3, replicas=1)
    on_cluster(cluster, REPLICA_ACKS=1, LOCK_WAIT=0.25, BREAKER_COOLDOWN=0.5)
    timeline: dict[str, float] = {}

    def fail_over() -> None:
        time.sleep(1.0)
        busiest = next(iter(ledger_slots(cluster)))
        victim = cluster.primary_for_slot(busiest)
        cluster.kill(victim)
        timeline["killed"] = time.monotonic()
        cluster.wait_for_failover(victim)
        timeline["promoted after s"] = round(time.monotonic() - timeline["killed"], 2)
        time.sleep(2.0)  # the workload goes on against the promoted replica

    report = run_history(
        rows=100, writers=4, readers=16, operations=3000, during=fail_over, max_seconds=120
    )
    show(capsys, report, f"failover {timeline}")
    assert "promoted after s" in timeline
    assert_clean(report)


@pytest.mark.django_db(transaction=True)
def test_a_cluster_down_when_the_process_starts_is_a_miss_not_an_error(
    settings: Any,
    cache_errors: list[str],
    local_cluster: ClusterFactory,  # noqa: F811
) -> None:
    """redis-py's RedisCluster() asks for the slot map at once; the app's client waits for its
    first call, under fail-open, and keeps trying: once the cluster answers, it is used."""
    from tests.servers import free_port

    article = ArticleFactory.create()
    settings.CACHEASIDE = {
        **settings.CACHEASIDE,
        "REDIS": f"redis+cluster://127.0.0.1:{free_port()}/0",  # nothing listens there
    }
    backend.reset()
    try:
        assert Article.cached.get(pk=article.pk).pk == article.pk  # from the database
        assert cache_errors
        assert Article.cached.get_many([article.pk]) == {article.pk: article}
    finally:
        backend.reset()
    cluster = local_cluster(primaries=1, replicas=0)
    settings.CACHEASIDE = {**settings.CACHEASIDE, "REDIS": cluster_url(cluster)}
    backend.reset()
    try:
        client = backend.get_backend().client
        assert isinstance(client, backend.LazyCluster) and not client._connected()
        Article.cached.get(pk=article.pk)
        assert client._connected()
        assert cluster.client().exists(Article.cached.key_for_pk(article.pk))
    finally:
        backend.reset()


def norun_settings(page: str, naming: str) -> dict[str, Any]:
    """The settings that the ``norun`` ``# settings.py`` sample of ``page`` mentioning ``naming``
    defines (the docs test cannot run them: they name servers it does not have)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / page).read_text()
    fences = re.findall(
        r'^```\{ \.python norun="[^"]+" \}\n(# settings\.py\n.*?)^```$', text, re.M | re.S
    )
    (code,) = [fence for fence in fences if naming in fence]
    namespace: dict[str, Any] = {}
    exec(compile(code, page, "exec"), namespace)
    return {name: value for name, value in namespace.items() if name.isupper()}


@pytest.mark.django_db(transaction=True)
def test_the_settings_sample_of_the_docs_works_on_a_cluster(
    local_cluster: ClusterFactory,  # noqa: F811
    settings: Any,
) -> None:
    sample = norun_settings("scale-out.md", "redis+cluster://")["CACHEASIDE"]
    cluster = local_cluster(primaries=3, replicas=1)
    port = cluster.url.rsplit(":", 1)[1].split("/")[0]
    settings.CACHEASIDE = {
        **settings.CACHEASIDE,
        **sample,
        "REDIS": sample["REDIS"].replace("127.0.0.1:7000", f"127.0.0.1:{port}"),
    }
    backend.reset()
    try:
        article = ArticleFactory.create()
        Article.cached.get(pk=article.pk)
        key = Article.cached.key_for_pk(article.pk)
        assert cluster.client().exists(key)
        article.save()
        assert not replica_has(cluster, key)  # REPLICA_ACKS = 1, as the sample says
    finally:
        backend.reset()


_factory_url: list[str] = []


def cluster_factory() -> RedisCluster:
    """A user's factory, named by dotted path in CACHEASIDE['REDIS']."""
    return RedisCluster.from_url(_factory_url[-1])


@pytest.mark.django_db(transaction=True)
def test_a_dotted_path_to_a_cluster_factory(
    local_cluster: ClusterFactory,  # noqa: F811
    settings: Any,
) -> None:
    cluster = local_cluster(primaries=3, replicas=0)
    _factory_url.append(cluster.url)
    settings.CACHEASIDE = {**settings.CACHEASIDE, "REDIS": "tests.test_cluster.cluster_factory"}
    backend.reset()
    try:
        assert backend.get_backend().cluster
        articles = ArticleFactory.create_batch(10)
        Article.cached.get_many([a.pk for a in articles])
        assert all(cluster.client().exists(Article.cached.key_for_pk(a.pk)) for a in articles)
        assert django_cacheaside.invalidate_model(Article) == 10
    finally:
        backend.reset()


@pytest.mark.django_db(transaction=True)
def test_hits_go_straight_to_the_primary_and_follow_a_slot_that_moved(
    local_cluster: ClusterFactory,  # noqa: F811
    on_cluster: Any,
    django_assert_num_queries: Any,
    cache_errors: list[str],
) -> None:
    """A hit is sent past RedisCluster, to the primary of redis-py's slot map; when the slot has
    moved since (MOVED, or ASK mid-move), the hit goes through RedisCluster, which follows it."""
    cluster = local_cluster(primaries=3, replicas=0)
    on_cluster(cluster)
    articles = ArticleFactory.create_batch(6)
    pks = [a.pk for a in articles]
    Article.cached.get_many(pks)
    backend_ = backend.get_backend()
    with django_assert_num_queries(0):
        assert Article.cached.get(pk=pks[0]).pk == pks[0]
    assert backend_._node_directs  # the hit took a primary's direct path
    moved = []
    for pk in pks[:3]:
        key = Article.cached.key_for_pk(pk)
        slot = cluster.keyslot(key)
        source = cluster.primary_for_slot(slot)
        target = next(p for p in cluster.primaries() if p is not source)
        cluster.migrate_slot(slot, target)
        moved.append(pk)
    with django_assert_num_queries(0):  # all hits: MOVED followed, no database read
        assert Article.cached.get(pk=moved[0]).pk == moved[0]
        assert set(Article.cached.get_many(pks)) == set(pks)
        for pk in moved:
            assert Article.cached.get(pk=pk).pk == pk
    assert cache_errors == []  # no MOVED was taken for a Redis failure
    assert all(direct is not None for direct in backend_._node_directs.values())
