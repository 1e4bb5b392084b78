from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings

from django_cacheaside import backend, signals
from django_cacheaside.conf import app_settings

_test_numbers = itertools.count()


@pytest.fixture(autouse=True)
def cache_namespace(settings: Any) -> Iterator[str]:
    """A key prefix of its own for every test, under the run's prefix: no test sees another's keys."""
    prefix = f"{django_settings.RUN_PREFIX}:{next(_test_numbers)}"
    settings.CACHEASIDE = {**settings.CACHEASIDE, "KEY_PREFIX": prefix}
    yield prefix


@pytest.fixture(autouse=True, scope="session")
def scripts_loaded() -> None:
    """Load the Lua scripts up front, so that no test's round-trip count depends on whether an
    earlier test ran them first (the first EVALSHA of a fresh server is answered NOSCRIPT)."""
    backend.get_backend()._load_scripts()


@pytest.fixture
def cache_errors() -> Iterator[list[str]]:
    """The operation of every ``cache_error`` this process sends during the test."""
    seen: list[str] = []

    def record(sender: Any, operation: str = "", **kwargs: Any) -> None:
        seen.append(operation)

    signals.cache_error.connect(record, dispatch_uid="conftest.cache_errors")
    yield seen
    signals.cache_error.disconnect(dispatch_uid="conftest.cache_errors")


@pytest.fixture
def redis_client() -> Any:
    return backend.get_backend().client


# Tests that start whole clusters or sentinel setups of their own: CACHEASIDE_TEST_SERVERS=0 leaves
# them out of the CI's extra runs (other Djangos and Pythons), which test the same code again.
_SERVER_SETUPS = {
    "test_clusters.py",
    "test_cluster.py",
    "test_sentinel.py",
    "test_cluster_stats.py",
}
_SERVER_SETUP_TESTS = {"test_cluster_quick_run_prints_every_row_and_stops_its_servers"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("CACHEASIDE_TEST_SERVERS") == "0":
        skip_setups = pytest.mark.skip(
            reason="CACHEASIDE_TEST_SERVERS=0: no test starting clusters or sentinels this run"
        )
        for item in items:
            if item.path.name in _SERVER_SETUPS or item.name in _SERVER_SETUP_TESTS:
                item.add_marker(skip_setups)
    if os.environ.get("CACHEASIDE_TEST_CLUSTER"):
        skip = pytest.mark.skip(
            reason="a single-server test: round trips counted (a cluster pipeline sends one "
            "request per node), the direct path, or timings set for one server"
        )
        for item in items:
            if item.get_closest_marker("single_redis"):
                item.add_marker(skip)
    # The keyspace check must see every key the other tests wrote: run it last.
    last = [item for item in items if item.nodeid.startswith("tests/test_zz_keyspace.py")]
    items[:] = [item for item in items if item not in last] + last


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("CACHEASIDE_TEST_CLUSTER"):
        _use_a_local_cluster(session)
    app_settings.reload()


def _use_a_local_cluster(session: pytest.Session) -> None:
    """``CACHEASIDE_TEST_CLUSTER=1``: the whole run goes to a Redis Cluster of 3 primaries with a
    replica each, started here and stopped at the end of the run (``tests/clusters.py``)."""
    from tests.clusters import LocalCluster

    cluster = LocalCluster(primaries=3, replicas=1)
    cluster.start()
    session.config.add_cleanup(cluster.stop)
    django_settings.CACHEASIDE = {
        **django_settings.CACHEASIDE,
        "REDIS": cluster.url.replace("redis://", "redis+cluster://", 1),
    }
    backend.reset()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Leave nothing in Redis: drop the counts no test flushed (the stats exit hook would write
    them under the run's prefix, to live for STATS_RETENTION), then every key of the run, whether
    or not the keyspace check ran."""
    from django_cacheaside.stats import counters

    counters.buffer.take()
    client = backend.get_backend().client
    found = backend.scan_keys(f"{django_settings.RUN_PREFIX}*")
    for start in range(0, len(found), 500):
        client.delete(*found[start : start + 500])
