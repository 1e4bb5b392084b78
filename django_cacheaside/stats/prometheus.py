"""Stats for Prometheus: a ``prometheus_client`` collector (optional; needs ``prometheus_client``).

``django_cacheaside.stats.prometheus.register()`` adds it to the default registry, so the
``/metrics`` endpoint of ``django-prometheus`` (or ``prometheus_client``'s own) shows, per process,
every counter since the process started::

    cacheaside_hits_total{model="blog.Article",schema="1a2b3c4d"} 1234
    cacheaside_load_seconds_bucket{model="blog.Article",schema="1a2b3c4d",le="0.005"} 17

Counters are this process's own (never reset, so Prometheus' ``rate()`` works); add processes up in
the query (``sum by (model) (rate(cacheaside_hits_total[5m]))``). Database loads are a histogram
in seconds. The Redis-side buckets that ``cachestats`` reads are not involved.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django_cacheaside.stats.counters import LOAD_BUCKETS_MS, buffer

_HISTOGRAM = {"load_count", "load_us", "load_gt_5000", *(f"load_le_{b}" for b in LOAD_BUCKETS_MS)}


class CacheAsideCollector:
    """Yields the stats counters of this process as Prometheus metric families."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        by_name: dict[str, list[tuple[tuple[str, str], int]]] = {}
        loads: dict[tuple[str, str], dict[str, int]] = {}
        for (model, schema, name), value in sorted(buffer.totals().items()):
            if name in _HISTOGRAM:
                loads.setdefault((model, schema), {})[name] = value
            else:
                by_name.setdefault(name, []).append(((model, schema), value))
        for name, rows in by_name.items():
            family = CounterMetricFamily(
                f"cacheaside_{name}",
                f"django-cacheaside {name.replace('_', ' ')}, this process",
                labels=["model", "schema"],
            )
            for labels, value in rows:
                family.add_metric(list(labels), value)
            yield family
        histogram = HistogramMetricFamily(
            "cacheaside_load_seconds",
            "django-cacheaside database loads that fill the cache, this process",
            labels=["model", "schema"],
        )
        for labels, counts in loads.items():
            cumulative, buckets = 0, []
            for bound in LOAD_BUCKETS_MS:
                cumulative += counts.get(f"load_le_{bound}", 0)
                buckets.append((repr(bound / 1000), cumulative))
            buckets.append(("+Inf", cumulative + counts.get("load_gt_5000", 0)))
            histogram.add_metric(list(labels), buckets, counts.get("load_us", 0) / 1_000_000)
        yield histogram
        yield from _breaker_gauges()


_STATES = {"closed": 0, "recovering": 1, "open": 2}


def _breaker_gauges() -> Iterator[Any]:
    """This process's circuit breaker (0 closed, 1 recovering, 2 open) and how many
    invalidations it keeps for replay: alert when either stays above 0."""
    from prometheus_client.core import GaugeMetricFamily

    from django_cacheaside import replay
    from django_cacheaside.backend import breaker, get_backend

    backend = get_backend()
    state = breaker.describe(backend.breaker)["state"]
    yield GaugeMetricFamily(
        "cacheaside_breaker_state",
        "django-cacheaside circuit breaker of this process: 0 closed, 1 recovering, 2 open",
        value=_STATES[state],
    )
    yield GaugeMetricFamily(
        "cacheaside_replay_pending",
        "django-cacheaside invalidations this process keeps until Redis answers again",
        value=len(replay.lost_for(backend)),
    )


def register(registry: Any = None) -> CacheAsideCollector:
    """Register the collector with ``registry`` (default: ``prometheus_client.REGISTRY``)."""
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    collector = CacheAsideCollector()
    registry.register(collector)
    return collector
