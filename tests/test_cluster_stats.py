"""Redis's health on a Redis Cluster: the primaries' figures summed and one by one, in
``redis_health()``, ``manage.py cachestats`` (text and ``--json``) and the admin page.

The combination is pure and tested with made-up ``INFO`` replies; the rest runs against a real
local cluster of three primaries (``tests/clusters.py``), whose nodes are asked for their own
``INFO`` and ``DBSIZE`` to check what the command says about each of them.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from django_cacheaside import backend, keys
from django_cacheaside.conf import app_settings
from django_cacheaside.management.commands import cachestats
from django_cacheaside.stats import counters
from django_cacheaside.stats.health import (
    RedisHealth,
    combine_health,
    format_bytes,
    health_from_info,
    health_from_infos,
    nodes_marker,
    redis_health,
)
from tests.clusters import ClusterFactory, LocalCluster, local_cluster  # noqa: F401 - the fixture
from tests.factories import ArticleFactory
from tests.testapp.models import Article

pytestmark = pytest.mark.django_db(transaction=True)

A, B, C = "10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.10:7000"
# A primary with nothing to say about it.
HEALTHY = {
    "redis_version": "7.2.4",
    "run_id": "run-a",
    "used_memory": 10 << 20,
    "maxmemory": 1 << 30,
    "maxmemory_policy": "volatile-ttl",
    "evicted_keys": 0,
    "keyspace_hits": 90,
    "keyspace_misses": 10,
    "aof_enabled": 0,
    "db0": {"keys": 100, "expires": 100, "avg_ttl": 1000},
}


def infos(**per_node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``INFO`` of the primaries ``a``, ``b`` and ``c``: healthy, with the fields given for each."""
    return {
        address: {**HEALTHY, "run_id": f"run-{name}", **per_node.get(name, {})}
        for name, address in (("a", A), ("b", B), ("c", C))
    }


def combined(**per_node: dict[str, Any]) -> RedisHealth:
    return health_from_infos(infos(**per_node))


@pytest.fixture(autouse=True)
def no_stray_counts() -> Iterator[None]:
    """Counts of earlier tests must not be flushed into the cluster, nor ours into the next test's
    Redis."""
    counters.buffer.take()
    yield
    counters.buffer.take()


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("cachestats", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def per_primary(text: str) -> list[list[str]]:
    """The cells of the command's per-primary lines (columns are two spaces apart or more)."""
    lines = text.splitlines()
    start = lines.index("  per primary:") + 1
    header, *rows = [re.split(r"\s{2,}", line.strip()) for line in lines[start:]]
    assert header[:3] == ["node", "used_memory", "maxmemory"]
    return [cells for cells in rows if re.fullmatch(r"[\d.]+:\d+", cells[0])]


# -- the combination (pure) ----------------------------------------------------------------------


def test_the_figures_are_summed_over_the_primaries() -> None:
    health = combined(
        a={"used_memory": 100, "maxmemory": 1000, "evicted_keys": 3, "redis_version": "7.2.4"},
        b={"used_memory": 200, "maxmemory": 2000, "keyspace_hits": 10, "redis_version": "10.0.1"},
        c={"used_memory": 300, "maxmemory": 3000, "keyspace_misses": 90, "redis_version": "7.0.15",
           "db0": {"keys": 7}, "db1": "keys=5,expires=0,avg_ttl=0"},
    )  # fmt: skip
    assert (health.used_memory, health.maxmemory, health.evicted_keys) == (600, 6000, 3)
    assert (health.keyspace_hits, health.keyspace_misses) == (90 + 10 + 90, 10 + 10 + 90)
    assert health.keyspace_hit_rate == 190 / 300
    assert health.keys == 100 + 100 + 12
    assert health.version == "7.0.15"  # the lowest, compared as numbers (not "10.0.1")
    assert (health.maxmemory_policy, health.aof_enabled) == ("volatile-ttl", False)
    assert health.warnings == []
    assert list(health.nodes) == [A, B, C]
    assert [node.used_memory for node in health.nodes.values()] == [100, 200, 300]
    assert health.nodes[C].keys == 12 and health.nodes[B].keyspace_hit_rate == 10 / 20
    assert all(node.nodes == {} for node in health.nodes.values())


def test_the_summed_figures_are_those_of_each_primary_added_up() -> None:
    nodes = {address: health_from_info(info) for address, info in infos().items()}
    health = combine_health(nodes)
    assert health.nodes == nodes
    assert health.used_memory == 3 * (10 << 20) and health.maxmemory == 3 << 30
    with pytest.raises(ValueError, match="one server or more"):
        combine_health({})


def test_a_primary_without_maxmemory_makes_the_sum_unlimited_and_is_named() -> None:
    health = combined(b={"maxmemory": 0, "used_memory": 5 << 20})
    assert health.maxmemory == 0  # no limit: one primary grows without one
    (warning,) = health.warnings
    assert warning.startswith(f"maxmemory is not set on {B}: Redis grows (5.0 MiB now)")
    assert A not in warning and C not in warning


def test_the_same_problem_everywhere_is_said_once_for_every_primary() -> None:
    health = combined(
        a={"aof_enabled": 1, "maxmemory": 0},
        b={"aof_enabled": 1, "maxmemory": 0},
        c={"aof_enabled": 1, "maxmemory": 0},
    )
    assert health.aof_enabled
    unbounded, aof = health.warnings
    assert unbounded.startswith("maxmemory is not set on every primary: Redis grows (30.0 MiB")
    assert aof.startswith("appendonly is on for every primary:") and "Set appendonly no" in aof


def test_mixed_policies_are_named_and_warned_about_node_by_node() -> None:
    health = combined(b={"maxmemory_policy": "allkeys-lru"}, c={"maxmemory_policy": "noeviction"})
    assert health.maxmemory_policy == "mixed (allkeys-lru, noeviction, volatile-ttl)"
    mixed, refusing, allkeys = health.warnings
    assert mixed.startswith("The primaries do not agree on maxmemory-policy: ")
    assert f"volatile-ttl on {A}" in mixed and f"allkeys-lru on {B}" in mixed
    assert f"noeviction on {C}" in mixed and "on every primary" in mixed
    assert refusing.startswith(f"maxmemory-policy is noeviction on {C}: at maxmemory")
    assert allkeys.startswith(f"maxmemory-policy is allkeys-lru on {B}: it evicts keys")
    # The same policy everywhere is that policy, and no disagreement.
    assert combined(**{n: {"maxmemory_policy": "volatile-lru"} for n in "abc"}).warnings == []
    assert combined(
        **{n: {"maxmemory_policy": "volatile-lru"} for n in "abc"}
    ).maxmemory_policy == ("volatile-lru")


def test_evictions_rising_are_compared_node_by_node() -> None:
    before = infos(a={"evicted_keys": 10}, b={"evicted_keys": 50}, c={"evicted_keys": 7})
    marker = nodes_marker(before, 1000.0)
    assert marker.splitlines()[0] == f"{A} run-a 10 1000.000"
    after = infos(
        a={"evicted_keys": 25},  # 15 more
        b={"evicted_keys": 3, "run_id": "run-b-restarted"},  # restarted: its count began again
        c={"evicted_keys": 7},  # none
    )
    health = health_from_infos(after, previous=marker, now=1060.0)
    a, b, c = health.nodes.values()
    assert (a.evicted_since_last_check, a.seconds_since_last_check) == (15, 60.0)
    assert (b.evicted_since_last_check, b.seconds_since_last_check) == (None, None)
    assert (c.evicted_since_last_check, c.seconds_since_last_check) == (0, 60.0)
    # The sum: the primaries that could be compared; the restart resets only its own comparison.
    assert (health.evicted_keys, health.evicted_since_last_check) == (35, 15)
    assert health.seconds_since_last_check == 60.0
    (warning,) = health.warnings
    assert warning.startswith(
        f"Redis evicted 15 keys in the last 60 s on {A} (15, used_memory 10.0 MiB of 1.0 GiB):"
    )
    assert B not in warning and C not in warning and "Raise maxmemory" in warning
    assert a.warnings == [warning.replace(f" on {A} (15, ", " (")]  # the node's own sentence


def test_evictions_on_several_primaries_are_added_up_and_each_named() -> None:
    before = infos()
    after = infos(a={"evicted_keys": 4}, c={"evicted_keys": 6})
    health = health_from_infos(after, previous=nodes_marker(before, 0.0), now=300.0)
    assert health.evicted_since_last_check == 10
    (warning,) = health.warnings
    assert warning.startswith(f"Redis evicted 10 keys in the last 5 min on {A} (4, ")
    assert f", {C} (6, used_memory" in warning and B not in warning


def test_nothing_to_compare_with_gives_no_eviction_figure() -> None:
    now = infos(a={"evicted_keys": 5})
    for previous in ("", "run-a 0 1000.0", "garbage", f"{A} other-run 0 1000.0", f"{A} run-a x y"):
        health = health_from_infos(now, previous=previous, now=1060.0)
        assert health.evicted_since_last_check is None, previous
        assert all(n.evicted_since_last_check is None for n in health.nodes.values())
    # A primary that was not there at the last check (a new one, a promoted replica) is not
    # compared; the others are.
    only_a = nodes_marker({A: now[A]}, 1000.0)
    health = health_from_infos(infos(a={"evicted_keys": 6}), previous=only_a, now=1060.0)
    assert [n.evicted_since_last_check for n in health.nodes.values()] == [1, None, None]


def test_a_single_server_has_no_nodes_and_its_old_marker() -> None:
    health = health_from_info(HEALTHY, previous="run-a 0 1000.0", now=1001.0)
    assert health.nodes == {} and health.keys == 100
    assert health.evicted_since_last_check == 0
    document = health.as_dict()
    assert document["nodes"] == {} and document["keys"] == 100


def test_the_json_object_has_one_object_per_primary() -> None:
    health = combined(a={"aof_enabled": 1})
    document = json.loads(json.dumps(health.as_dict()))
    assert list(document["nodes"]) == [A, B, C]
    node = document["nodes"][A]
    assert "nodes" not in node
    assert node["aof_enabled"] is True and node["keyspace_hit_rate"] == 0.9
    assert node["warnings"] == health.nodes[A].warnings
    assert {key for key in document if key != "nodes"} == set(node)


# -- what the command and the page show of a cluster's figures -----------------------------------


def test_the_command_prints_a_line_per_primary(monkeypatch: pytest.MonkeyPatch) -> None:
    health = combined(b={"maxmemory": 0, "used_memory": 3 << 20, "keyspace_hits": 0})
    monkeypatch.setattr(cachestats, "redis_health", lambda: health)
    text = run()
    assert "Redis 7.2.4 (the lowest), Redis Cluster of 3 primaries: figures summed" in text
    assert re.search(rf"  maxmemory +not set on {B}\n", text)
    assert re.search(r"  keys +300\n", text)
    rows = per_primary(text)
    assert [cells[0] for cells in rows] == [A, B, C]
    assert rows[1][1:4] == ["3.0 MiB", "not set", "100"] and rows[1][5] == "0.0%"
    assert rows[0][1:4] == ["10.0 MiB", "1.0 GiB", "100"] and rows[0][5] == "90.0%"
    document = json.loads(run("--json"))
    assert document["redis"]["nodes"][B]["maxmemory"] == 0
    # One server, or a cluster of one primary: no per-primary lines.
    for single in (health_from_info(HEALTHY), combine_health({A: health.nodes[A]})):
        monkeypatch.setattr(cachestats, "redis_health", lambda single=single: single)
        assert "per primary" not in run()


def test_the_admin_page_has_a_row_per_primary(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    health = combined(c={"maxmemory_policy": "allkeys-lru", "used_memory": 1 << 20})
    monkeypatch.setattr(cachestats, "redis_health", lambda: health)
    html = admin_client.get(reverse("admin:django_cacheaside_stats")).content.decode()
    assert "<h2>Redis Cluster, 3 primaries</h2>" in html
    assert re.search(r'data-figure="maxmemory_policy">mixed \(allkeys-lru, volatile-ttl\)<', html)
    rows = dict(re.findall(r'<tr data-node="([^"]+)">(.*?)</tr>', html))
    assert list(rows) == [A, B, C]
    assert 'data-col="used_memory">1.0 MiB<' in rows[C]
    assert 'data-col="maxmemory_policy">allkeys-lru<' in rows[C]
    assert 'data-col="hit_rate">90.0%<' in rows[A]
    assert f"allkeys-lru on {C}" in html  # the warning
    monkeypatch.setattr(cachestats, "redis_health", lambda: health_from_info(HEALTHY))
    html = admin_client.get(reverse("admin:django_cacheaside_stats")).content.decode()
    assert "ca-redis-nodes" not in html and "<h2>Redis</h2>" in html


# -- a real cluster --------------------------------------------------------------------------------


@pytest.fixture
def cluster(local_cluster: ClusterFactory, settings: Any) -> Iterator[LocalCluster]:  # noqa: F811
    """Three primaries without replicas, each with its own maxmemory, as the app's Redis."""
    cluster = local_cluster(primaries=3, replicas=0)
    for n, node in enumerate(cluster.primaries(), start=1):
        node.command("CONFIG", "SET", "maxmemory", n * (64 << 20))
        node.command("CONFIG", "SET", "maxmemory-policy", "volatile-ttl")
    backend.reset()
    settings.CACHEASIDE = {
        **settings.CACHEASIDE,
        "REDIS": cluster.url.replace("redis://", "redis+cluster://", 1),
    }
    yield cluster
    counters.buffer.take()  # counted against the cluster: not for the next test's Redis
    backend.reset()


def fill_articles(count: int) -> None:
    pks = [article.pk for article in ArticleFactory.create_batch(count)]
    assert len(Article.cached.get_many(pks)) == count  # misses, filled
    assert len(Article.cached.get_many(pks)) == count  # hits


def node_info(cluster: LocalCluster) -> dict[str, dict[str, Any]]:
    """Each primary's own ``INFO`` and ``DBSIZE``, asked of it directly."""
    found = {}
    for node in cluster.primaries():
        client = cluster.node_client(node)
        found[node.address] = {**client.info(), "dbsize": client.dbsize()}
    return found


def test_cachestats_on_a_real_cluster(cluster: LocalCluster) -> None:
    assert backend.get_backend().cluster
    fill_articles(60)
    run()  # the first check: leaves the eviction marker the next one compares with
    document = json.loads(run("--json"))
    own = node_info(cluster)
    health = document["redis"]
    nodes = health["nodes"]
    assert sorted(nodes) == sorted(node.address for node in cluster.primaries())
    assert len(nodes) == 3
    for address, node in nodes.items():
        assert node["keys"] == own[address]["dbsize"] > 0  # keys spread over every primary
        assert node["maxmemory"] == own[address]["maxmemory"]
        assert node["version"] == own[address]["redis_version"]
        assert node["evicted_since_last_check"] == 0  # compared with the first check
        # used_memory moves with every allocation: the node's own figure, read just after.
        assert abs(node["used_memory"] - own[address]["used_memory"]) < 256 << 10
    assert health["keys"] == sum(info["dbsize"] for info in own.values())
    assert health["used_memory"] == sum(node["used_memory"] for node in nodes.values())
    assert health["maxmemory"] == (1 + 2 + 3) * (64 << 20)
    assert health["maxmemory_policy"] == "volatile-ttl"
    assert health["keyspace_hits"] == sum(node["keyspace_hits"] for node in nodes.values())
    assert health["evicted_since_last_check"] == 0
    (article,) = [r for r in document["models"] if r["schema"] == Article.cached.schema
                  and r["model"] == "testapp.Article"]  # fmt: skip
    assert (article["hits"], article["misses"]) == (60, 60)
    assert article["memory_keys"] == 60  # the scan walked every primary

    text = run()
    own = node_info(cluster)
    assert "Redis Cluster of 3 primaries: figures summed over them" in text
    assert re.search(rf"  maxmemory +{re.escape(format_bytes(6 * (64 << 20)))}\n", text)
    assert re.search(rf"  keys +{sum(info['dbsize'] for info in own.values())}\n", text)
    rows = {cells[0]: cells for cells in per_primary(text)}
    assert sorted(rows) == sorted(own)
    for address, cells in rows.items():
        assert cells[2:4] == [format_bytes(own[address]["maxmemory"]), str(own[address]["dbsize"])]

    primaries = sorted(node.address for node in cluster.primaries())
    where = cachestats._where()
    assert where.startswith("Redis Cluster, 3 primaries: ")
    assert sorted(where.split(": ", 1)[1].split(", ")) == primaries


def test_the_admin_page_on_a_real_cluster(cluster: LocalCluster, admin_client: Client) -> None:
    fill_articles(30)
    primaries = cluster.primaries()
    primaries[1].command("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    redis_health()  # the eviction marker exists before the page reads INFO: DBSIZE stays put
    html = admin_client.get(reverse("admin:django_cacheaside_stats")).content.decode()
    own = node_info(cluster)
    assert "<h2>Redis Cluster, 3 primaries</h2>" in html
    rows = dict(re.findall(r'<tr data-node="([^"]+)">(.*?)</tr>', html))
    assert sorted(rows) == sorted(own)
    for address, row in rows.items():
        assert f'data-col="keys">{own[address]["dbsize"]}<' in row
        assert f'data-col="maxmemory">{format_bytes(own[address]["maxmemory"])}<' in row
        assert f'data-col="maxmemory_policy">{own[address]["maxmemory_policy"]}<' in row
    assert 'data-figure="maxmemory_policy">mixed (allkeys-lru, volatile-ttl)<' in html
    assert f"allkeys-lru on {primaries[1].address}" in html  # the warning names the primary
    total_keys = sum(info["dbsize"] for info in own.values())
    assert f'data-figure="keys">{total_keys}<' in html


def test_a_restarted_primary_resets_its_own_comparison_only(cluster: LocalCluster) -> None:
    first = redis_health()
    assert first.evicted_since_last_check is None and len(first.nodes) == 3  # never checked
    key = f"{keys.namespace(app_settings.KEY_PREFIX)}stats:evicted"
    marker = backend.get_backend().client.get(key)
    assert isinstance(marker, bytes)
    lines = [line.split() for line in marker.decode().splitlines()]
    assert sorted(address for address, *_ in lines) == sorted(first.nodes)
    assert {run_id for _, run_id, *_ in lines} == {
        str(info["run_id"]) for info in node_info(cluster).values()
    }
    # Restart a primary that does not hold the marker (it has no persistence: the marker would go).
    holder = cluster.primary_for_slot(cluster.keyslot(key))
    restarted = next(node for node in cluster.primaries() if node is not holder)
    cluster.kill(restarted)
    cluster.restart(restarted)  # the same slots, an empty database, another run_id
    second = redis_health()
    assert second.nodes[restarted.address].evicted_since_last_check is None
    others = [node for address, node in second.nodes.items() if address != restarted.address]
    assert [node.evicted_since_last_check for node in others] == [0, 0]
    assert second.evicted_since_last_check == 0 and second.seconds_since_last_check is not None
    third = redis_health()  # compared again from now on
    assert [node.evicted_since_last_check for node in third.nodes.values()] == [0, 0, 0]


def test_a_primary_down_is_a_command_error_naming_the_cluster(
    cluster: LocalCluster, settings: Any
) -> None:
    settings.CACHEASIDE = {**settings.CACHEASIDE, "ERROR_LOG_INTERVAL": 0}
    assert len(redis_health().nodes) == 3
    victim = cluster.primaries()[2]
    cluster.kill(victim)
    with pytest.raises(
        CommandError, match=r"Cannot read the stats: Redis Cluster, 3 primaries: "
    ) as info:
        run()
    assert victim.address in str(info.value)


def test_a_cluster_no_node_of_which_answers_is_a_command_error(
    admin_client: Client, settings: Any
) -> None:
    settings.CACHEASIDE = {
        **settings.CACHEASIDE,
        "REDIS": "redis+cluster://127.0.0.1:1/0?socket_connect_timeout=0.2",
        "ERROR_LOG_INTERVAL": 0,
    }
    with pytest.raises(
        CommandError, match=r"Cannot read the stats: the Redis Cluster did not answer"
    ):
        run()
    html = admin_client.get(reverse("admin:django_cacheaside_stats")).content.decode()
    assert 'id="ca-error"' in html and "the Redis Cluster did not answer" in html
