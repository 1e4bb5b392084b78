from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from django_cacheaside.stats import counters
from saas import cachekeys

# Every key this run writes starts with RUN_PREFIX; each test gets a prefix of its own under it.
RUN_PREFIX = f"example-test-{uuid.uuid4().hex[:12]}"
_numbers = itertools.count()


@pytest.fixture(autouse=True)
def cache_prefix(settings: Any) -> Iterator[str]:
    """A key prefix unique to this test; its keys are deleted afterwards (SCAN, never KEYS)."""
    prefix = f"{RUN_PREFIX}-{next(_numbers)}"
    settings.CACHEASIDE = {**settings.CACHEASIDE, "KEY_PREFIX": prefix}
    yield prefix
    cachekeys.clear(prefix)


@pytest.fixture(scope="session", autouse=True)
def _drop_run_keys() -> Iterator[None]:
    yield
    # Counts no test flushed (the test database's setup, say) would be written at exit under the
    # project's own prefix, to live for STATS_RETENTION: they are the run's, drop them.
    counters.buffer.take()
    cachekeys.delete_matching(f"{RUN_PREFIX}-*")  # whatever a late on_commit wrote
