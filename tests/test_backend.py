"""Fail-open: with Redis unreachable every read is answered from the database."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest

from django_cacheaside import signals
from django_cacheaside.backend import errors as backend_errors
from django_cacheaside.backend import get_backend
from tests.factories import ArticleFactory
from tests.testapp.models import Article

pytestmark = pytest.mark.django_db(transaction=True)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there once the socket is closed


@pytest.fixture
def redis_down(settings: Any) -> None:
    settings.CACHEASIDE = {
        **settings.CACHEASIDE,
        "REDIS": f"redis://127.0.0.1:{closed_port()}/0",
        "BREAKER_THRESHOLD": 10**9,  # the breaker's own tests are in test_breaker.py
    }


def test_reads_fall_back_to_the_database(
    settings: Any, caplog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        backend_errors, "_errors", backend_errors._ErrorLog()
    )  # no earlier test's warning counts
    article = ArticleFactory.create()
    settings.CACHEASIDE = {
        **settings.CACHEASIDE,
        "REDIS": f"redis://127.0.0.1:{closed_port()}/0",
        "BREAKER_THRESHOLD": 10**9,
    }
    errors: list[str] = []

    def record(sender: Any, operation: str, **kwargs: Any) -> None:
        errors.append(operation)

    signals.cache_error.connect(record)
    try:
        with caplog.at_level(logging.WARNING, logger="django_cacheaside"):
            for _ in range(3):
                assert Article.cached.get(pk=article.pk) == article
            assert list(Article.cached.get_many([article.pk])) == [article.pk]
            with pytest.raises(Article.DoesNotExist):
                Article.cached.get(pk=article.pk + 1)
    finally:
        signals.cache_error.disconnect(record)
    assert "read" in errors and "_read_or_begin_many" in errors
    warnings = [r for r in caplog.records if "answering from the database" in r.message]
    assert len(warnings) == 1  # once per ERROR_LOG_INTERVAL, not once per request


def test_a_write_redis_missed_keeps_the_process_off_redis(redis_down: None) -> None:
    article = ArticleFactory.create()  # its invalidation fails: kept for replay, not raised
    backend = get_backend()
    assert backend.breaker.degraded
    errors: list[str] = []

    def record(sender: Any, operation: str, **kwargs: Any) -> None:
        errors.append(operation)

    signals.cache_error.connect(record)
    try:
        assert Article.cached.get(pk=article.pk) == article
        assert list(Article.cached.get_many([article.pk])) == [article.pk]
    finally:
        signals.cache_error.disconnect(record)
    assert errors == []  # answered from the database without asking Redis


def test_lost_scripts_are_loaded_again(redis_client: Any) -> None:
    article = ArticleFactory.create()
    redis_client.script_flush()
    assert Article.cached.get(pk=article.pk) == article
    assert Article.cached.get(pk=article.pk) == article


def test_wrong_type_under_a_key_is_a_failure_not_a_crash(redis_client: Any) -> None:
    article = ArticleFactory.create()
    redis_client.set(Article.cached.key_for_pk(article.pk), b"not a hash", px=10_000)
    assert Article.cached.get(pk=article.pk) == article


def test_decode_responses_client_is_refused(settings: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    settings.CACHEASIDE = {**settings.CACHEASIDE, "REDIS": "tests.test_backend.decoding_client"}
    with pytest.raises(ImproperlyConfigured, match="decode_responses"):
        get_backend()


def decoding_client() -> Any:
    import redis

    return redis.Redis(decode_responses=True)
