"""Invalidation: receivers, invalidate(), transactions, and the fill race."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import transaction

import django_cacheaside
from django_cacheaside import signals
from django_cacheaside.backend import get_backend
from django_cacheaside.testing import count_round_trips
from tests.factories import ArticleFactory, OrgFactory, update_behind_our_back
from tests.testapp.models import Article, Note, Org, Place, Restaurant, Uncached
from tests.threads import close_thread_connections

pytestmark = pytest.mark.django_db(transaction=True)


def warm(model: Any, pk: Any) -> None:
    model.cached.get(pk=pk)


@pytest.mark.single_redis
def test_save_invalidates_with_one_round_trip() -> None:
    article = ArticleFactory.create(title="old")
    warm(Article, article.pk)
    article.title = "new"
    with count_round_trips() as trips:
        article.save()
    assert trips.count == 1
    assert Article.cached.get(pk=article.pk).title == "new"


def test_delete_invalidates() -> None:
    article = ArticleFactory.create()
    pk = article.pk
    warm(Article, pk)
    article.delete()
    with pytest.raises(Article.DoesNotExist):
        Article.cached.get(pk=pk)


def test_cascade_delete_invalidates_the_children() -> None:
    article = ArticleFactory.create()
    pk = article.pk
    warm(Article, pk)
    article.org.delete()
    with pytest.raises(Article.DoesNotExist):
        Article.cached.get(pk=pk)


def test_uncached_models_cost_nothing_on_save() -> None:
    with count_round_trips() as trips:
        Uncached.objects.create(name="x")
    assert trips.count == 0


def test_invalidate_by_hand(django_assert_num_queries: Any) -> None:
    article = ArticleFactory.create(title="old")
    warm(Article, article.pk)
    update_behind_our_back(Article, article.pk, title="raw")  # invisible to signals
    assert Article.cached.get(pk=article.pk).title == "old"
    django_cacheaside.invalidate(article)
    assert Article.cached.get(pk=article.pk).title == "raw"
    update_behind_our_back(Article, article.pk, title="raw again")
    django_cacheaside.invalidate(Article, pk=str(article.pk))
    assert Article.cached.get(pk=article.pk).title == "raw again"


def test_invalidate_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="Uncached is not cached"):
        django_cacheaside.invalidate(Uncached, pk=1)
    with pytest.raises(TypeError, match="needs pk"):
        django_cacheaside.invalidate(Article)
    with pytest.raises(TypeError, match="takes a model instance or a model class"):
        django_cacheaside.invalidate("testapp.Article")  # type: ignore[arg-type]


def test_invalidation_signal() -> None:
    article = ArticleFactory.create()
    causes: list[str] = []

    def record(sender: Any, keys: list[str], cause: str, **kwargs: Any) -> None:
        causes.append(cause)
        assert Article.cached.key_for_pk(article.pk) in keys

    signals.cache_invalidate.connect(record, sender=Article)
    try:
        article.save()
        django_cacheaside.invalidate(article)
        article.delete()
    finally:
        signals.cache_invalidate.disconnect(record, sender=Article)
    assert causes == ["save", "manual", "delete"]


# -- transactions ------------------------------------------------------------------------------


def test_reads_inside_a_writing_transaction_bypass_and_never_fill(
    django_assert_num_queries: Any, redis_client: Any
) -> None:
    article = ArticleFactory.create(title="committed")
    other = ArticleFactory.create()
    warm(Article, article.pk)
    key = Article.cached.key_for_pk(article.pk)
    with transaction.atomic():
        article.title = "uncommitted"
        article.save()
        with django_assert_num_queries(1):
            assert Article.cached.get(pk=article.pk).title == "uncommitted"  # read your writes
        assert Article.cached.get_many([other.pk])[other.pk] == other
        assert redis_client.hget(key, "d") is None  # nothing uncommitted reached the cache
        # Another model is still served from the cache.
        warm(Org, article.org_id)
        with django_assert_num_queries(0):
            Org.cached.get(pk=article.org_id)
    assert Article.cached.get(pk=article.pk).title == "uncommitted"


def test_commit_invalidates_again_after_a_concurrent_refill(redis_client: Any) -> None:
    article = ArticleFactory.create(title="v1")
    committed_v1 = Article.objects.get(pk=article.pk)
    key = Article.cached.key_for_pk(article.pk)
    backend = get_backend()
    with transaction.atomic():
        article.title = "v2"
        article.save()  # the immediate invalidation
        # Meanwhile another process misses and fills the committed row, v1, as it may.
        read = backend.read_or_begin(key, 60_000)
        assert read.stamp is not None
        assert backend.fill(key, read.stamp, Article.cached.codec.encode_row(committed_v1), 60_000)
    # The commit-time invalidation removed that entry.
    assert redis_client.hget(key, "d") is None
    assert Article.cached.get(pk=article.pk).title == "v2"


def test_rolled_back_savepoint_drops_its_invalidations(redis_client: Any) -> None:
    outer = ArticleFactory.create()
    inner = ArticleFactory.create()
    with transaction.atomic():
        outer.title = "outer"
        outer.save()
        try:
            with transaction.atomic():
                inner.title = "inner"
                inner.save()
                raise RuntimeError("roll back the savepoint")
        except RuntimeError:
            pass
        conn = transaction.get_connection()
        queued = [f for _s, f, *_r in conn.run_on_commit]
        assert len(queued) == 1
        assert ("DEL", Article.cached.key_for_pk(outer.pk)) in queued[0].operations
        assert ("DEL", Article.cached.key_for_pk(inner.pk)) not in queued[0].operations
        assert Article.cached.get(pk=inner.pk).title != "inner"


def test_rolled_back_transaction_leaves_reads_cached(django_assert_num_queries: Any) -> None:
    article = ArticleFactory.create()
    warm(Article, article.pk)
    try:
        with transaction.atomic():
            article.title = "never"
            article.save()
            raise RuntimeError
    except RuntimeError:
        pass
    warm(Article, article.pk)
    with transaction.atomic(), django_assert_num_queries(0):
        assert Article.cached.get(pk=article.pk).title != "never"


@pytest.mark.single_redis
def test_one_commit_sends_one_round_trip_for_many_writes() -> None:
    articles = ArticleFactory.create_batch(5)
    with count_round_trips() as trips, transaction.atomic():
        for article in articles:
            article.save()
        during = trips.count
    assert during == 5  # the immediate invalidation of each write
    assert trips.count == 6  # plus one pipelined DEL of all five at commit


def test_fill_race_never_leaves_a_stale_entry(redis_client: Any) -> None:
    """Reader loads v1; writer commits v2 and invalidates; reader then tries to fill v1."""
    article = ArticleFactory.create(title="v1")
    loaded, written = threading.Event(), threading.Event()
    manager = Article.cached
    original_load = manager._load
    fills: list[bool] = []

    def slow_load(db: str, lookup: Any) -> Any:
        result = original_load(db, lookup)
        if threading.current_thread().name == "reader":
            loaded.set()
            assert written.wait(5)
        return result

    def record_fill(sender: Any, written: bool, **kwargs: Any) -> None:
        fills.append(written)

    manager._load = slow_load  # type: ignore[method-assign]
    signals.cache_fill.connect(record_fill)
    try:
        result: list[Any] = []

        def read() -> None:
            try:
                result.append(Article.cached.get(pk=article.pk))
            finally:
                close_thread_connections()  # this thread's own database connection

        thread = threading.Thread(target=read, name="reader")
        thread.start()
        assert loaded.wait(5)
        update_behind_our_back(Article, article.pk, title="v2")
        article.title = "v2"
        article.save()  # commits and invalidates while the reader holds v1
        written.set()
        thread.join(5)
    finally:
        del manager._load
        signals.cache_fill.disconnect(record_fill)
    assert result[0].title == "v1"  # the reader began before the commit: v1 is a fair answer
    assert fills == [False]  # ... but its fill lost the compare-and-set
    assert Article.cached.get(pk=article.pk).title == "v2"
    assert Article.cached.get(pk=article.pk).title == "v2"


# -- inheritance -------------------------------------------------------------------------------


def test_abstract_parent_manager_is_bound_to_the_concrete_child() -> None:
    note = Note.objects.create(text="hi")
    assert Note.cached.get(pk=note.pk) == note
    assert Note.cached.option("TTL") == 60
    note.text = "changed"
    note.save()
    assert Note.cached.get(pk=note.pk).text == "changed"


def test_multi_table_writes_invalidate_parent_and_child() -> None:
    restaurant = Restaurant.objects.create(name="Luigi's", serves_pizza=True)
    warm(Restaurant, restaurant.pk)
    warm(Place, restaurant.pk)
    restaurant.name = "Mario's"
    restaurant.save()
    assert Place.cached.get(pk=restaurant.pk).name == "Mario's"
    assert Restaurant.cached.get(pk=restaurant.pk).name == "Mario's"
    place = Place.objects.get(pk=restaurant.pk)
    place.name = "Peach's"
    place.save()
    assert Restaurant.cached.get(pk=restaurant.pk).name == "Peach's"
    assert type(Restaurant.cached.get(pk=restaurant.pk)) is Restaurant


def test_org_rename_keeps_unique_lookups_exact() -> None:
    org = OrgFactory.create(name="before")
    Org.cached.get(name="before")
    org.name = "after"
    org.save()
    with pytest.raises(Org.DoesNotExist):
        Org.cached.get(name="before")
    assert Org.cached.get(name="after") == org


# -- invalidate_model --------------------------------------------------------------------------


def test_invalidate_model_drops_every_entry_of_the_model_only(redis_client: Any) -> None:
    from tests.testapp.models import Post

    posts = [ArticleFactory.create() for _ in range(3)]
    for article in posts:
        warm(Article, article.pk)
        Article.cached.get(org=article.org, slug=article.slug)  # a pointer too
        update_behind_our_back(Article, article.pk, title="raw")
    org = posts[0].org
    warm(Org, org.pk)
    lease = redis_client.set(Article.cached.key_for_pk(posts[0].pk) + ":lock", b"t", px=5000)
    assert lease
    deleted = django_cacheaside.invalidate_model(Article)
    assert deleted == 6  # three entries, three pointers; the lease is left to expire
    assert redis_client.delete(Article.cached.key_for_pk(posts[0].pk) + ":lock") == 1
    assert redis_client.hget(Org.cached.key_for_pk(org.pk), "d") is not None
    assert {a.title for a in Article.cached.get_many([a.pk for a in posts]).values()} == {"raw"}
    assert not Post.cached.get_many([1])  # other models work as before
    with pytest.raises(TypeError, match="takes a model class"):
        django_cacheaside.invalidate_model(posts[0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Uncached is not cached"):
        django_cacheaside.invalidate_model(Uncached)


def test_invalidate_model_covers_the_multi_table_family(redis_client: Any) -> None:
    restaurant = Restaurant.objects.create(name="Chez", serves_pizza=False)
    warm(Restaurant, restaurant.pk)
    warm(Place, restaurant.pk)
    update_behind_our_back(Place, restaurant.pk, name="Chez Raw")
    django_cacheaside.invalidate_model(Place)
    assert Restaurant.cached.get(pk=restaurant.pk).name == "Chez Raw"
    assert Place.cached.get(pk=restaurant.pk).name == "Chez Raw"


def test_invalidate_model_inside_a_transaction_runs_again_at_commit(redis_client: Any) -> None:
    article = ArticleFactory.create(title="old")
    key = Article.cached.key_for_pk(article.pk)
    with transaction.atomic():
        update_behind_our_back(Article, article.pk, title="raw")
        django_cacheaside.invalidate_model(Article)
        assert Article.cached.get(pk=article.pk).title == "raw"  # bypassed: read-your-writes
        assert redis_client.hget(key, "d") is None  # ... and not filled
        read = get_backend().read_or_begin(key, 60_000)  # another process fills the old row
        assert read.stamp is not None
        get_backend().fill(key, read.stamp, b"old", 60_000)
    assert redis_client.hget(key, "d") is None  # the commit scanned again
    assert Article.cached.get(pk=article.pk).title == "raw"


@pytest.mark.single_redis
def test_replica_acks_waits_after_the_deletions_and_reports_a_shortfall(
    settings: Any, monkeypatch: pytest.MonkeyPatch, redis_client: Any
) -> None:
    """``REPLICA_ACKS``: a ``WAIT`` rides in the invalidation's own round trip; the suite's Redis
    has no replica, so it confirms 0 and that is reported, while the entry is gone all the same.
    Without the setting, no ``WAIT`` is sent. (A real replica: tests/test_cluster.py, test_sentinel.py.)"""
    from django_cacheaside.backend.direct import DirectCommands

    sent: list[tuple[Any, ...]] = []
    execute_many = DirectCommands.execute_many

    def recording(self: DirectCommands, commands: Any) -> Any:
        sent.extend(commands)
        return execute_many(self, commands)

    monkeypatch.setattr(DirectCommands, "execute_many", recording)
    errors: list[str] = []
    signals.cache_error.connect(
        lambda sender, operation, **kw: errors.append(operation), weak=False, dispatch_uid="acks"
    )
    try:
        article = ArticleFactory.create()
        warm(Article, article.pk)
        article.save()
        assert not any(command[0] == "WAIT" for command in sent) and errors == []
        settings.CACHEASIDE = {**settings.CACHEASIDE, "REPLICA_ACKS": 1, "SOCKET_TIMEOUT": 0.5}
        warm(Article, article.pk)
        with count_round_trips() as trips:
            article.save()
        waits = [command for command in sent if command[0] == "WAIT"]
        assert waits and all(command == ("WAIT", 1, 250) for command in waits)
        assert trips.count == 1  # the WAIT rides in the invalidation's own round trip
        assert "replicate" in errors
        assert not redis_client.exists(Article.cached.key_for_pk(article.pk))
    finally:
        signals.cache_error.disconnect(dispatch_uid="acks")
