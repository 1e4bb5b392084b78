"""The Prometheus collector: this process's counters as metric families."""

from __future__ import annotations

from typing import Any

import pytest

from django_cacheaside.stats.prometheus import CacheAsideCollector, register
from tests.factories import ArticleFactory
from tests.testapp.models import Article

prometheus_client = pytest.importorskip(
    "prometheus_client", reason="the collector is optional: prometheus_client is not installed"
)

pytestmark = pytest.mark.django_db(transaction=True)


def sample(registry: object, name: str, **labels: str) -> float | None:
    value = registry.get_sample_value(name, labels)  # type: ignore[attr-defined]
    return None if value is None else float(value)


def test_counters_and_load_histogram_are_exposed() -> None:
    registry = prometheus_client.CollectorRegistry()
    register(registry)
    labels = {"model": "testapp.Article", "schema": Article.cached.schema}
    hits_before = sample(registry, "cacheaside_hits_total", **labels) or 0.0
    loads_before = sample(registry, "cacheaside_load_seconds_count", **labels) or 0.0
    article = ArticleFactory.create()
    Article.cached.get(pk=article.pk)  # a miss and a fill
    Article.cached.get(pk=article.pk)  # a hit
    Article.cached.get(pk=article.pk)  # a hit
    assert sample(registry, "cacheaside_hits_total", **labels) == hits_before + 2
    assert sample(registry, "cacheaside_load_seconds_count", **labels) == loads_before + 1
    inf = sample(registry, "cacheaside_load_seconds_bucket", le="+Inf", **labels)
    assert inf == loads_before + 1
    assert (sample(registry, "cacheaside_load_seconds_sum", **labels) or 0.0) > 0
    text = prometheus_client.generate_latest(registry).decode()
    assert 'cacheaside_hits_total{model="testapp.Article"' in text


def test_counters_never_go_back_when_stats_are_flushed() -> None:
    from django_cacheaside.stats import flush

    collector = CacheAsideCollector()
    article = ArticleFactory.create()
    Article.cached.get(pk=article.pk)
    Article.cached.get(pk=article.pk)

    def hits() -> float:
        for family in collector.collect():
            if family.name == "cacheaside_hits":
                values = [s.value for s in family.samples if s.labels["model"] == "testapp.Article"]
                return float(sum(values))
        return 0.0

    before = hits()
    flush()
    assert hits() == before  # a flush moves counts to Redis; the process's totals stay


def test_the_breaker_and_the_replay_queue_are_gauges(settings: Any) -> None:
    from tests.test_backend import closed_port

    registry = prometheus_client.CollectorRegistry()
    register(registry)
    assert sample(registry, "cacheaside_breaker_state") == 0
    assert sample(registry, "cacheaside_replay_pending") == 0
    article = ArticleFactory.create()
    settings.CACHEASIDE = {
        **settings.CACHEASIDE,
        "REDIS": f"redis://127.0.0.1:{closed_port()}/0",
        "BREAKER_THRESHOLD": 1,
    }
    Article.cached.get(pk=article.pk)  # refused: the breaker opens
    article.save()  # its invalidation is kept
    assert sample(registry, "cacheaside_breaker_state") == 2
    assert (sample(registry, "cacheaside_replay_pending") or 0) >= 1
