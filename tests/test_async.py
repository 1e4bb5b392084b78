"""The async read API: aget, aget_many, afilter and the async invalidation helpers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection, connections, transaction
from django.db.models import F

import django_cacheaside
from django_cacheaside import signals
from django_cacheaside.backend import Backend, get_backend
from django_cacheaside.managers import CacheAsideManager
from tests.factories import ArticleFactory, OrgFactory, update_behind_our_back
from tests.testapp.models import Article

pytestmark = pytest.mark.django_db(transaction=True)  # the misses load in a worker thread


@pytest.fixture(autouse=True)
def worker_connections_closed() -> Iterator[None]:
    """Close the database connection of asgiref's worker thread after each test (the test
    database cannot be dropped while it is open)."""
    yield
    asyncio.run(sync_to_async(connections.close_all)())


class Loads:
    """Counts the cached managers' database loads, in any thread; ``delay`` slows each down."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.count = 0
        self._lock = threading.Lock()

    def wrap(self, load: Any) -> Any:
        def counted(manager: Any, *args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.count += 1
            time.sleep(self.delay)
            return load(manager, *args, **kwargs)

        return counted


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Loads]:
    counter = Loads()
    monkeypatch.setattr(CacheAsideManager, "_load", counter.wrap(CacheAsideManager._load))
    monkeypatch.setattr(CacheAsideManager, "_base", _counting_base(counter))
    yield counter


def _counting_base(counter: Loads) -> Any:
    """get_many's loads go through ``_base(db).in_bulk``: count those too."""
    original = CacheAsideManager._base

    def base(manager: Any, db: str) -> Any:
        queryset = original(manager, db)
        in_bulk = queryset.in_bulk

        def counted_in_bulk(*args: Any, **kwargs: Any) -> Any:
            with counter._lock:
                counter.count += 1
            return in_bulk(*args, **kwargs)

        queryset.in_bulk = counted_in_bulk  # type: ignore[method-assign]
        return queryset

    return base


def hits_counted() -> list[bool]:
    seen: list[bool] = []
    signals.cache_hit.connect(
        lambda sender, negative=False, **kw: seen.append(negative),
        weak=False,
        dispatch_uid="test_async.hits",
    )
    return seen


@pytest.fixture
def hits() -> Iterator[list[bool]]:
    seen = hits_counted()
    yield seen
    signals.cache_hit.disconnect(dispatch_uid="test_async.hits")


def test_a_hit_is_read_on_the_event_loop_not_through_the_sync_path(
    loads: Loads, hits: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    article = ArticleFactory.create(title="async")
    warm = Article.cached.get(pk=article.pk)
    loads.count = 0
    hits.clear()

    def no_sync_read(self: Any, key: str) -> Any:
        raise AssertionError("a hit must not use the sync read")

    monkeypatch.setattr(Backend, "read", no_sync_read)
    found = asyncio.run(Article.cached.aget(pk=article.pk))
    assert found == article and found.title == "async"
    assert found is not warm
    assert loads.count == 0
    assert hits == [False]
    assert found._state.db == "default" and not found._state.adding


def test_a_miss_loads_fills_and_the_next_aget_hits(loads: Loads, hits: list[bool]) -> None:
    article = ArticleFactory.create(title="one")

    async def twice() -> tuple[Article, Article]:
        return await Article.cached.aget(pk=article.pk), await Article.cached.aget(pk=article.pk)

    first, second = asyncio.run(twice())
    assert first.title == second.title == "one"
    assert loads.count == 1
    assert hits == [False]  # the second one
    assert get_backend().read(Article.cached.key_for_pk(article.pk)) is not None


def test_a_missing_row_raises_does_not_exist_and_is_cached_as_absent(loads: Loads) -> None:
    async def twice() -> list[BaseException]:
        errors: list[BaseException] = []
        for _ in range(2):
            try:
                await Article.cached.aget(pk=987_654)
            except Article.DoesNotExist as error:
                errors.append(error)
        return errors

    assert len(asyncio.run(twice())) == 2
    assert loads.count == 1  # the second was a negative hit


def test_200_tasks_missing_one_key_load_it_once(loads: Loads) -> None:
    article = ArticleFactory.create(title="hot")
    Article.cached.get(pk=article.pk)
    django_cacheaside.invalidate(article)
    loads.delay = 0.2  # the load is slow: every task arrives while it runs
    loads.count = 0

    async def stampede() -> list[Article]:
        return list(await asyncio.gather(*(Article.cached.aget(pk=article.pk) for _ in range(200))))

    found = asyncio.run(stampede())
    assert loads.count == 1
    assert {a.title for a in found} == {"hot"}
    assert len({id(a) for a in found}) == 200  # every task has its own instance


def test_the_stampede_is_one_query_at_the_database(loads: Loads) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's own scan counts: the other half is checked on every database")
    from tests.test_locks import scans_at_the_database

    article = ArticleFactory.create(title="hot")
    Article.cached.get(pk=article.pk)
    django_cacheaside.invalidate(article)
    loads.delay = 0.2
    before = scans_at_the_database("testapp_article")

    async def stampede() -> None:
        await asyncio.gather(*(Article.cached.aget(pk=article.pk) for _ in range(200)))

    asyncio.run(stampede())
    assert scans_at_the_database("testapp_article") - before == 1


def test_unique_lookups_read_the_pointer_then_the_object(
    loads: Loads, hits: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    org = OrgFactory.create()
    article = ArticleFactory.create(org=org, slug="s", title="by slug")
    found = asyncio.run(Article.cached.aget(org=org, slug="s"))  # a miss: the sync path fills
    assert found == article and found.title == "by slug"
    Article.cached.get(pk=article.pk)  # the pointer's fill leaves the object's entry to its own
    loads.count = 0
    hits.clear()
    monkeypatch.setattr(Backend, "read", lambda self, key: pytest.fail("a sync read"))
    again = asyncio.run(Article.cached.aget(org=org, slug="s"))
    assert again == article and loads.count == 0
    assert hits == [False, False]  # the pointer, then the object
    monkeypatch.undo()
    with pytest.raises(Article.DoesNotExist):
        asyncio.run(Article.cached.aget(org=org, slug="nope"))
    hits.clear()
    with pytest.raises(Article.DoesNotExist):
        asyncio.run(Article.cached.aget(org=org, slug="nope"))
    assert hits == [True]  # a negative hit
    with pytest.raises(ValueError, match="title"):
        asyncio.run(Article.cached.aget(title="by slug"))  # not a unique lookup: refused


def test_a_stale_pointer_is_not_followed(loads: Loads) -> None:
    org = OrgFactory.create()
    article = ArticleFactory.create(org=org, slug="old", title="moved")
    asyncio.run(Article.cached.aget(org=org, slug="old"))  # the pointer old -> article
    update_behind_our_back(Article, article.pk, slug="new")  # no invalidation of the pointer
    django_cacheaside.invalidate(Article, pk=article.pk)  # but the object's own entry goes
    with pytest.raises(Article.DoesNotExist):
        asyncio.run(Article.cached.aget(org=org, slug="old"))
    assert asyncio.run(Article.cached.aget(org=org, slug="new")).pk == article.pk


def test_reads_inside_a_transaction_that_wrote_bypass_the_cache() -> None:
    article = ArticleFactory.create(title="committed")
    Article.cached.get(pk=article.pk)

    async def read_in_its_own_transaction() -> str:
        def write_then_read() -> str:
            with transaction.atomic():
                Article.objects.filter(pk=article.pk).update(title="uncommitted")
                # An async read from inside the transaction's thread sees its own write.
                return async_to_sync(_aget_title)(article.pk)

        return str(await sync_to_async(write_then_read)())

    assert asyncio.run(read_in_its_own_transaction()) == "uncommitted"


async def _aget_title(pk: int) -> str:
    return (await Article.cached.aget(pk=pk)).title


def test_aget_many_is_get_many(loads: Loads, hits: list[bool]) -> None:
    articles = ArticleFactory.create_batch(5)
    pks = [a.pk for a in articles]
    Article.cached.get_many(pks[:3])  # three hits, two misses, one pk no row has
    loads.count = 0
    asked = [pks[4], 10**9, *pks[:4], pks[0]]
    found = asyncio.run(Article.cached.aget_many(asked))
    assert list(found) == [pks[4], *pks[:4]]  # asked order, missing left out, once each
    assert {pk: a.title for pk, a in found.items()} == {a.pk: a.title for a in articles}
    assert loads.count == 1  # one query for the misses
    assert hits.count(False) == 3
    again = asyncio.run(Article.cached.aget_many(asked))
    assert list(again) == list(found) and loads.count == 1
    assert asyncio.run(Article.cached.aget_many([])) == {}


def test_afilter_is_the_cached_query(loads: Loads) -> None:
    org = OrgFactory.create()
    ArticleFactory.create_batch(3, org=org)
    ArticleFactory.create()  # another org's
    expected = sorted(a.pk for a in Article.cached.filter(org=org))
    assert len(expected) == 3
    loads.count = 0
    found = asyncio.run(Article.cached.afilter(org=org))
    assert sorted(a.pk for a in found) == expected
    with pytest.raises(ValueError, match="cannot use F"):
        asyncio.run(Article.cached.afilter(pk__in=[1, F("org_id")]))  # an uncacheable filter


def test_ainvalidate_and_friends(loads: Loads) -> None:
    article = ArticleFactory.create(title="before")
    Article.cached.get(pk=article.pk)
    update_behind_our_back(Article, article.pk, title="behind our back")
    assert Article.cached.get(pk=article.pk).title == "before"

    async def purge_then_read() -> str:
        await django_cacheaside.ainvalidate(article)
        return (await Article.cached.aget(pk=article.pk)).title

    assert asyncio.run(purge_then_read()) == "behind our back"
    assert asyncio.run(django_cacheaside.ainvalidate_model(Article)) >= 1
    assert isinstance(asyncio.run(django_cacheaside.ainvalidate_tags("org:1")), int)


def test_redis_down_async_reads_answer_from_the_database(
    settings: Any, cache_errors: list[str]
) -> None:
    article = ArticleFactory.create(title="from the database")
    settings.CACHEASIDE = {
        **settings.CACHEASIDE,
        "REDIS": "redis://127.0.0.1:1/0",  # nothing listens there
        "SOCKET_TIMEOUT": 0.1,
        "SOCKET_CONNECT_TIMEOUT": 0.1,
        "BREAKER_THRESHOLD": 10**9,
    }

    async def read() -> tuple[Article, dict[Any, Article]]:
        return await Article.cached.aget(pk=article.pk), await Article.cached.aget_many(
            [article.pk]
        )

    one, many = asyncio.run(read())
    assert one.title == "from the database" and many[article.pk].title == "from the database"
    assert "aread" in cache_errors and "_aread_many" in cache_errors
