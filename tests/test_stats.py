"""Stats: counted in-process from the app's signals, flushed to per-minute buckets, read back."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

import django_cacheaside
from django_cacheaside import signals, stats
from django_cacheaside.backend import get_backend
from django_cacheaside.stats import counters, flusher
from django_cacheaside.testing import count_round_trips
from tests.factories import ArticleFactory
from tests.testapp.models import Article

pytestmark = pytest.mark.django_db(transaction=True)

LABEL = "testapp.Article"


@pytest.fixture(autouse=True)
def fresh_counts() -> None:
    counters.buffer.take()  # counts of earlier tests belong to their own key prefixes


def row(snapshot: stats.Snapshot, label: str = LABEL) -> stats.ModelStats:
    (found,) = snapshot.model(label)
    return found


def test_reads_fills_and_invalidations_are_counted_per_model_and_schema() -> None:
    article = ArticleFactory.create()
    Article.cached.get(pk=article.pk)  # miss, fill
    Article.cached.get(pk=article.pk)  # hit
    Article.cached.get(pk=article.pk)  # hit
    with pytest.raises(Article.DoesNotExist):
        Article.cached.get(pk=10**9)  # miss, negative fill
    with pytest.raises(Article.DoesNotExist):
        Article.cached.get(pk=10**9)  # negative hit
    article.title = "x"
    article.save()
    Article.objects.filter(pk=article.pk).update(title="y")
    django_cacheaside.invalidate(article)
    found = row(stats.snapshot(window=300))
    assert found.schema == Article.cached.schema
    assert (found["hits"], found["negative_hits"], found["misses"]) == (2, 1, 2)
    assert found.reads == 5
    assert found.hit_rate == pytest.approx(3 / 5)
    assert found["fills"] == 2
    assert found["load_count"] == 2
    assert sum(found[f"load_le_{b}"] for b in counters.LOAD_BUCKETS_MS) + found["load_gt_5000"] == 2
    assert found.load_percentile(0.5) is not None
    # The factory's create and the save; the update(); the invalidate().
    expected = {"save": 2, "delete": 0, "bulk": 1, "tag": 0, "manual": 1, "model": 0}
    assert found.invalidations == expected
    assert found.series and sum(h for h, _m in found.series.values()) == 3


def test_get_many_counts_each_hit_and_tells_receivers_each_key() -> None:
    articles = ArticleFactory.create_batch(3)
    pks = [a.pk for a in articles]
    Article.cached.get_many([*pks, 10**9])  # 4 misses; the 10**9 one fills a negative entry
    heard: list[tuple[str, bool]] = []

    def record(sender: Any, key: str, negative: bool, **kwargs: Any) -> None:
        heard.append((key, negative))

    signals.cache_hit.connect(record, sender=Article)
    try:
        Article.cached.get_many([*pks, 10**9])  # 3 hits, 1 negative hit
    finally:
        signals.cache_hit.disconnect(record, sender=Article)
    assert sorted(heard) == sorted(
        [(Article.cached.key_for_pk(pk), False) for pk in pks]
        + [(Article.cached.key_for_pk(10**9), True)]
    )
    found = row(stats.snapshot(window=300))
    assert (found["hits"], found["negative_hits"], found["misses"]) == (3, 1, 4)


def test_a_flush_is_one_round_trip_into_an_expiring_minute_bucket(redis_client: Any) -> None:
    article = ArticleFactory.create()
    Article.cached.get(pk=article.pk)
    with count_round_trips() as trips:
        assert flusher.flush()
    assert trips.count == 1
    with count_round_trips() as trips:
        assert flusher.flush()  # nothing new: nothing sent
    assert trips.count == 0
    namespace = Article.cached._settings().namespace
    key = flusher.bucket_key(namespace, int(time.time() // 60))
    ttl = redis_client.pttl(key)
    assert 7 * 86400 * 1000 - 60_000 < ttl <= 7 * 86400 * 1000
    fields = {f.decode(): int(v) for f, v in redis_client.hgetall(key).items()}
    assert fields[f"{LABEL}|{Article.cached.schema}|misses"] == 1


def test_a_failed_flush_keeps_its_counts_for_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    article = ArticleFactory.create()
    Article.cached.get(pk=article.pk)
    backend = get_backend()
    monkeypatch.setattr(backend, "add_counts", lambda *args, **kwargs: False)
    assert not flusher.flush()
    monkeypatch.undo()
    assert row(stats.snapshot(window=300))["misses"] == 1


def _child_reads(pk: int, queue: Any) -> None:
    for _ in range(3):
        Article.cached.get(pk=pk)
    queue.put(flusher.flush())


def test_processes_add_up_and_a_forked_child_does_not_flush_its_parents_counts() -> None:
    article = ArticleFactory.create()
    Article.cached.get(pk=article.pk)  # the parent's miss
    assert flusher.flush()
    Article.cached.get(pk=article.pk)
    Article.cached.get(pk=article.pk)  # two hits, not flushed yet when the child is forked
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_reads, args=(article.pk, queue))
    child.start()
    assert queue.get(timeout=10) is True
    child.join(10)
    found = row(stats.snapshot(window=300))
    assert (found["hits"], found["misses"]) == (2 + 3, 1)


def test_stats_off_connects_no_receiver() -> None:
    assert signals.cache_hit.has_listeners(Article)
    # The test's own key prefix kept: the read below must not write outside the run's keys.
    with override_settings(CACHEASIDE={**settings.CACHEASIDE, "STATS": False}):
        assert not signals.cache_hit.has_listeners(Article)
        assert not signals.cache_fill.has_listeners(Article)
        article = ArticleFactory.create()
        Article.cached.get(pk=article.pk)
        assert counters.buffer.take() == {}
    assert signals.cache_hit.has_listeners(Article)


def test_snapshot_filters_models_and_checks_its_window() -> None:
    article = ArticleFactory.create()
    Article.cached.get(pk=article.pk)
    assert stats.snapshot(window=300, models=["testapp.Org"]).model(LABEL) == []
    assert row(stats.snapshot(window=300, models=[LABEL]))["misses"] == 1
    with pytest.raises(ValueError, match="at least 60 seconds"):
        stats.snapshot(window=30)


def test_reset_drops_the_buckets() -> None:
    article = ArticleFactory.create()
    Article.cached.get(pk=article.pk)
    assert flusher.flush()
    assert stats.reset() >= 1
    assert stats.snapshot(window=300).model(LABEL) == []


def test_lock_outcomes_refreshes_and_errors_are_counted() -> None:
    article = ArticleFactory.create()
    signals.cache_lease.send(sender=Article, key="k", outcome="waited", waited=0.1)
    signals.cache_lease.send(sender=Article, key="k", outcome="timeout", waited=2.0)
    signals.cache_lease.send(sender=Article, key="k", outcome="coalesced", waited=0.0)
    signals.cache_refresh.send(sender=Article, key="k", reason="early")
    signals.cache_stale.send(sender=Article, key="k")
    signals.cache_error.send(sender=type(get_backend()), operation="read", error=None)
    Article.cached.get(pk=article.pk)
    snapshot = stats.snapshot(window=300)
    found = row(snapshot)
    assert (found["lock_waits"], found["lock_timeouts"], found["coalesced"]) == (1, 1, 1)
    assert (found["early_refreshes"], found["stale_served"]) == (1, 1)
    assert row(snapshot, "-")["errors"] == 1


def test_a_hit_never_waits_on_redis_for_stats() -> None:
    article = ArticleFactory.create()
    Article.cached.get(pk=article.pk)
    with count_round_trips() as trips:
        Article.cached.get(pk=article.pk)
    assert trips.count == 1  # the HGET alone: counting is in memory


def test_threads_counting_at_once_lose_nothing() -> None:
    import threading

    def hits() -> None:
        for _ in range(5000):
            counters.buffer.count(Article, "hits")

    threads = [threading.Thread(target=hits) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert row(stats.snapshot(window=300))["hits"] == 8 * 5000


def test_a_new_schema_stamp_gets_rows_of_its_own(settings: Any) -> None:
    article = ArticleFactory.create()
    Article.cached.get(pk=article.pk)
    old_schema = Article.cached.schema
    settings.CACHEASIDE = {
        **settings.CACHEASIDE,
        "SERIALIZER": "django_cacheaside.serializers.pickle.PickleSerializer",
    }
    assert Article.cached.schema != old_schema  # another entry format: another key format
    Article.cached.get(pk=article.pk)  # a miss under the new stamp
    rows = {r.schema: r for r in stats.snapshot(window=300).model(LABEL)}
    assert rows[old_schema]["misses"] == 1
    assert rows[Article.cached.schema]["misses"] == 1


CHILD = """
import sys
import django
from django.conf import settings

settings.configure(
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    CACHES={"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": sys.argv[1]}},
    CACHEASIDE={"KEY_PREFIX": sys.argv[2], "STATS_FLUSH": 3600, "REDIS": sys.argv[3] or None},
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django_cacheaside",
                    "tests.testapp"],
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
)
django.setup()
from django_cacheaside import signals
from tests.testapp.models import Article

for _ in range(3):
    signals.cache_hit.send(sender=Article, key="k", negative=False)
# No flush here: the exit hook must write the counts.
"""


def test_a_process_flushes_its_counts_when_it_exits(settings: Any) -> None:
    import subprocess
    import sys
    from pathlib import Path

    redis_url = settings.CACHES["default"]["LOCATION"]
    prefix = settings.CACHEASIDE["KEY_PREFIX"]
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", CHILD, redis_url, prefix, settings.CACHEASIDE.get("REDIS") or ""],
        cwd=root, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert row(stats.snapshot(window=300))["hits"] == 3
