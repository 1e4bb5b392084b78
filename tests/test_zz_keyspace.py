"""Invariant 4, checked over everything the suite wrote: every key has a TTL. Runs last."""

from __future__ import annotations

from django.conf import settings

from django_cacheaside.backend import scan_keys
from django_cacheaside.testing import keys_without_ttl


def test_every_key_written_by_the_suite_expires() -> None:
    pattern = f"{settings.RUN_PREFIX}:*"
    written = scan_keys(pattern)
    assert written, "the suite wrote no keys: this check would prove nothing"
    assert keys_without_ttl(pattern) == []  # conftest.pytest_sessionfinish drops them all
