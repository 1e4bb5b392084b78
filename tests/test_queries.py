"""Cached queries: Model.cached.filter(...), count(), exists(), slicing, and their invalidation."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import F, Q, Subquery
from django.db.models.functions import Lower, Now
from django.utils import timezone

from django_cacheaside import keys, signals, transactions
from django_cacheaside.testing import count_round_trips
from tests.factories import ArticleFactory, OrgFactory, all_types_values
from tests.testapp.models import (
    AllTypes,
    Article,
    Note,
    Org,
    Post,
    ProxyArticle,
    Restaurant,
    Token,
)

pytestmark = pytest.mark.django_db(transaction=True)


def gens_key(model: Any) -> str:
    return keys.query_generations_key(model.cached._settings().namespace, model.cached._label)


@contextmanager
def events() -> Iterator[list[tuple[str, str, Any]]]:
    """(signal, key, written) of every cache_hit/miss/fill sent for a query result in the block."""
    seen: list[tuple[str, str, Any]] = []
    receivers: list[tuple[Any, Callable[..., None]]] = []
    for name in ("hit", "miss", "fill"):

        def receiver(sender: Any, key: str, name: str = name, **kwargs: Any) -> None:
            if ":=q}:" in key:
                seen.append((name, key, kwargs.get("written")))

        signal = getattr(signals, f"cache_{name}")
        signal.connect(receiver)
        receivers.append((signal, receiver))
    try:
        yield seen
    finally:
        for signal, receiver in receivers:
            signal.disconnect(receiver)


def pks(objs: Any) -> list[Any]:
    return [obj.pk for obj in objs]


@pytest.fixture
def org() -> Org:
    org = OrgFactory.create()
    ArticleFactory.create_batch(3, org=org)
    ArticleFactory.create()  # another org's
    return org


# -- costs ---------------------------------------------------------------------------------------


@pytest.mark.single_redis
def test_a_miss_runs_the_pk_query_and_get_many_then_hits_cost_no_query(
    org: Org, django_assert_num_queries: Any
) -> None:
    expected = list(Article.objects.filter(org=org).order_by("pk"))
    # QUERY_READ, the pks (query 1), QUERY_FILL; get_many: lookups, leases, in_bulk (query 2), fill.
    with django_assert_num_queries(2), count_round_trips() as trips:
        assert list(Article.cached.filter(org=org).order_by("pk")) == expected
    assert trips.count == 5
    # QUERY_READ (a hit), then the objects' entries: one pipelined round trip of HGETs.
    with django_assert_num_queries(0), count_round_trips() as trips:
        hit = list(Article.cached.filter(org=org).order_by("pk"))
    assert trips.count == 2
    assert [(a.pk, a.title, a.org_id) for a in hit] == [(a.pk, a.title, a.org_id) for a in expected]
    assert all(a._state.db == "default" and not a._state.adding for a in hit)


@pytest.mark.single_redis
def test_a_miss_whose_objects_are_cached_costs_one_query(
    org: Org, django_assert_num_queries: Any
) -> None:
    Article.cached.get_many(pks(Article.objects.all()))
    with django_assert_num_queries(1), count_round_trips() as trips:
        assert len(Article.cached.filter(org=org)) == 3
    assert trips.count == 3  # QUERY_READ, QUERY_FILL, get_many (all hits)


@pytest.mark.single_redis
def test_a_hit_whose_objects_expired_loads_only_those(
    org: Org, redis_client: Any, django_assert_num_queries: Any
) -> None:
    expected = pks(Article.objects.filter(org=org).order_by("pk"))
    list(Article.cached.filter(org=org).order_by("pk"))
    redis_client.delete(Article.cached.key_for_pk(expected[1]))  # evicted, or expired
    # QUERY_READ, get_many's HGETs, then for the one: its lease, in_bulk (the query), its fill.
    with django_assert_num_queries(1) as captured, count_round_trips() as trips:
        assert pks(Article.cached.filter(org=org).order_by("pk")) == expected
    assert trips.count == 4
    assert " IN (" in captured.captured_queries[0]["sql"]  # get_many's load of that one
    with django_assert_num_queries(0):
        assert pks(Article.cached.filter(org=org).order_by("pk")) == expected


@pytest.mark.single_redis
def test_an_empty_result_is_cached_and_a_hit_is_one_round_trip(
    django_assert_num_queries: Any,
) -> None:
    assert list(Article.cached.filter(slug="nothing")) == []
    with django_assert_num_queries(0), count_round_trips() as trips:
        assert list(Article.cached.filter(slug="nothing")) == []
    assert trips.count == 1  # no get_many for no pks


def test_a_query_that_cannot_match_costs_nothing(django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(0), count_round_trips() as trips:
        assert list(Article.cached.filter(pk__in=[])) == []
        assert Article.cached.filter(pk__in=[]).count() == 0
        assert Article.cached.filter(pk__in=[]).exists() is False
    assert trips.count == 0


@pytest.mark.single_redis
def test_count_and_exists_are_cached(org: Org, django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(3):
        assert Article.cached.filter(org=org).count() == 3
        assert Article.cached.filter(org=org).exists() is True
        assert Article.cached.filter(org=org, slug="none").exists() is False
    with django_assert_num_queries(0), count_round_trips() as trips:
        assert Article.cached.filter(org=org).count() == 3
        assert Article.cached.filter(org=org).exists() is True
        assert Article.cached.filter(org=org, slug="none").exists() is False
        assert Article.cached.filter(org=org).order_by("-title").count() == 3  # same key
    assert trips.count == 4
    assert Article.cached.count() == 4
    assert Article.cached.exists() is True
    with django_assert_num_queries(0):
        assert Article.cached.count() == 4
    with django_assert_num_queries(1):  # a sliced count is a key of its own
        assert Article.cached.filter(org=org)[:2].count() == 2
    ArticleFactory.create(org=org)
    assert Article.cached.filter(org=org).count() == 4
    assert Article.cached.count() == 5


def test_an_evaluated_query_answers_count_exists_and_len_itself(
    org: Org, django_assert_num_queries: Any
) -> None:
    query = Article.cached.filter(org=org)
    list(query)
    with django_assert_num_queries(0), count_round_trips() as trips:
        assert (len(query), query.count(), query.exists(), bool(query)) == (3, 3, True, True)
        assert [a.pk for a in query] == [a.pk for a in query[0:3]]
    assert trips.count == 0


# -- invalidation --------------------------------------------------------------------------------


def test_a_changed_field_the_query_does_not_read_is_shown_without_rerunning_it(
    org: Org, django_assert_num_queries: Any
) -> None:
    list(Article.cached.filter(org=org).order_by("pk"))
    article = Article.objects.filter(org=org).order_by("pk")[1]
    article.title = "renamed"
    article.save(update_fields=["title"])
    with django_assert_num_queries(1) as captured, events() as seen:
        found = list(Article.cached.filter(org=org).order_by("pk"))
    assert [a.title for a in found][1] == "renamed"
    assert [name for name, _key, _w in seen] == ["hit"]  # the pk list survived
    assert " IN (" in captured.captured_queries[0]["sql"]  # the one query: get_many's reload


def test_a_save_of_a_field_the_query_reads_invalidates_it(org: Org) -> None:
    other = OrgFactory.create()
    assert len(Article.cached.filter(org=org)) == 3
    article = Article.objects.filter(org=org).first()
    assert article is not None
    article.org = other
    article.save(update_fields=["org"])
    assert len(Article.cached.filter(org=org)) == 2
    assert pks(Article.cached.filter(org=other)) == [article.pk]


def test_ordering_fields_are_dependencies(org: Org) -> None:
    articles = list(Article.objects.filter(org=org).order_by("pk"))
    for i, article in enumerate(articles):
        Article.objects.filter(pk=article.pk).update(title=f"t{i}")
    assert pks(Article.cached.filter(org=org).order_by("title")) == pks(articles)
    last = articles[-1]
    last.title = "a first"
    last.save(update_fields=["title"])
    assert pks(Article.cached.filter(org=org).order_by("title"))[0] == last.pk


def test_create_delete_update_and_bulk_create_invalidate_the_list(org: Org) -> None:
    query = lambda: pks(Article.cached.filter(org=org).order_by("pk"))  # noqa: E731
    orm = lambda: pks(Article.objects.filter(org=org).order_by("pk"))  # noqa: E731
    assert query() == orm()
    created = ArticleFactory.create(org=org)
    assert created.pk in query()
    created.delete()
    assert query() == orm()
    assert len(query()) == 3
    Article.objects.filter(org=org, pk=orm()[0]).update(org=OrgFactory.create())
    assert query() == orm()
    assert len(query()) == 2
    Article.objects.bulk_create([Article(org=org, slug="bulk-1", title="b")])
    assert query() == orm()
    assert len(query()) == 3
    Article.objects.filter(org=org).delete()
    assert query() == []


def test_a_queryset_update_of_another_field_keeps_the_list(
    org: Org, django_assert_num_queries: Any
) -> None:
    list(Article.cached.filter(org=org))
    Article.objects.filter(org=org).update(body="new body")
    with events() as seen:
        found = list(Article.cached.filter(org=org))
    assert {a.body for a in found} == {"new body"}
    assert [name for name, _key, _w in seen] == ["hit"]


def test_generations_by_hand_only_the_dependent_results_go_stale(
    org: Org, redis_client: Any, django_assert_num_queries: Any
) -> None:
    list(Article.cached.filter(org=org))
    list(Article.cached.filter(slug="article-x"))
    redis_client.hdel(gens_key(Article), "org_id")
    with events() as seen:
        list(Article.cached.filter(org=org))
        list(Article.cached.filter(slug="article-x"))
    assert [name for name, _key, _w in seen] == ["miss", "fill", "hit"]
    redis_client.delete(gens_key(Article))  # "*": every result of the model
    with events() as seen:
        list(Article.cached.filter(slug="article-x"))
    assert [name for name, _key, _w in seen] == ["miss", "fill"]


def test_a_fill_racing_a_generation_bump_is_not_written(org: Org, redis_client: Any) -> None:
    def bump_then_run(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.startswith("SELECT") and " IN (" not in sql:  # the pk query, not get_many's
            redis_client.hdel(gens_key(Article), "org_id")  # a write lands mid-query
        return execute(sql, params, many, context)

    with connection.execute_wrapper(bump_then_run), events() as seen:
        assert len(Article.cached.filter(org=org)) == 3
    assert [(name, written) for name, _key, written in seen] == [("miss", None), ("fill", False)]
    with events() as seen:
        assert len(Article.cached.filter(org=org)) == 3
    assert [(name, written) for name, _key, written in seen] == [("miss", None), ("fill", True)]


def test_a_pk_that_vanished_between_the_two_reads_runs_the_query(
    org: Org, redis_client: Any, django_assert_num_queries: Any
) -> None:
    list(Article.cached.filter(org=org).order_by("pk"))
    gone = Article.objects.filter(org=org).order_by("pk")[0]
    # The row goes, and its entry: the list was read just before the delete's invalidation.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM testapp_article WHERE id = %s", [gone.pk])
    redis_client.delete(Article.cached.key_for_pk(gone.pk))
    with django_assert_num_queries(2):  # get_many's miss, then the query itself
        found = list(Article.cached.filter(org=org).order_by("pk"))
    assert pks(found) == pks(Article.objects.filter(org=org).order_by("pk"))
    assert gone.pk not in pks(found)


# -- keys, slicing, ordering ---------------------------------------------------------------------


def test_the_key_does_not_depend_on_the_order_of_keyword_lookups(
    org: Org, django_assert_num_queries: Any
) -> None:
    with events() as seen:
        list(Article.cached.filter(org=org, slug="article-0"))
        list(Article.cached.filter(slug="article-0", org=org))
        list(Article.cached.filter(slug="article-0", org_id=org.pk))
    first = seen[0][1]
    assert [name for name, _k, _w in seen] == ["miss", "fill", "hit", "hit"]
    assert {key for _n, key, _w in seen} == {first}
    assert first.startswith(gens_key(Article) + ":")
    with events() as seen:
        Article.cached.filter(slug__in={"b", "a", "c"}).count()
        Article.cached.filter(slug__in=["a", "b", "c"]).count()
    assert [name for name, _k, _w in seen] == ["miss", "fill", "hit"]


def test_different_queries_and_kinds_have_different_keys(org: Org) -> None:
    with events() as seen:
        list(Article.cached.filter(org=org))
        list(Article.cached.exclude(org=org))
        list(Article.cached.filter(org=org).order_by("-pk"))
        list(Article.cached.filter(org=org)[:2])
        list(Article.cached.filter(org=str(org.pk) + "0"))
        Article.cached.filter(org=org).count()
        Article.cached.filter(org=org).exists()
    misses = [key for name, key, _w in seen if name == "miss"]
    assert len(misses) == len(set(misses)) == 7


def test_slicing_indexing_first_and_ordering_match_the_orm(org: Org) -> None:
    ArticleFactory.create_batch(4, org=org)
    orm = Article.objects.filter(org=org).order_by("-title")
    cached = Article.cached.filter(org=org).order_by("-title")
    for _ in range(2):  # the miss, then the hit
        assert pks(cached[1:4]) == pks(orm[1:4])
        assert pks(cached[:2][1:]) == pks(orm[:2][1:])
        assert pks(cached[5:]) == pks(orm[5:])
        assert cached[2].pk == orm[2].pk
        assert getattr(cached.first(), "pk", None) == getattr(orm.first(), "pk", None)
        assert pks(Article.cached.order_by("org", "-pk")) == pks(
            Article.objects.order_by("org", "-pk")
        )
    with pytest.raises(IndexError):
        cached[100]
    with pytest.raises(ValueError, match="Negative indexing"):
        cached[-1]
    with pytest.raises(ValueError, match="step"):
        cached[::2]
    with pytest.raises(TypeError, match="slice has been taken"):
        cached[:2].filter(slug="x")
    assert Article.cached.filter(slug="none").first() is None
    first = Article.cached.filter(org=org).first()  # unordered: by pk, as the ORM does
    assert first is not None and first.pk == Article.objects.filter(org=org).first().pk  # type: ignore[union-attr]


def test_meta_ordering_is_part_of_the_query_and_of_its_dependencies(
    org: Org, monkeypatch: Any
) -> None:
    monkeypatch.setattr(Article._meta, "ordering", ["-title"])
    orm = lambda: pks(Article.objects.filter(org=org))  # noqa: E731
    assert pks(Article.cached.filter(org=org)) == orm()
    last = Article.objects.filter(org=org).last()
    assert last is not None
    last.title = "zzz first"
    last.save(update_fields=["title"])
    assert pks(Article.cached.filter(org=org))[0] == last.pk == orm()[0]
    assert pks(Article.cached.filter(org=org).order_by()) == pks(
        Article.objects.filter(org=org).order_by()
    )
    monkeypatch.setattr(Article._meta, "ordering", ["org__name"])
    with pytest.raises(ValueError, match=r"joins testapp_org .*Meta\.ordering"):
        list(Article.cached.filter(org=org))


def test_q_objects_and_exclude(org: Org) -> None:
    slugs = list(Article.objects.filter(org=org).order_by("pk").values_list("slug", flat=True))
    query = Article.cached.filter(Q(slug=slugs[0]) | Q(slug=slugs[1]), org=org).exclude(
        slug=slugs[1]
    )
    assert [a.slug for a in query] == [slugs[0]]
    assert Article.cached.filter(~Q(org=org)).count() == 1


def test_parameters_whose_repr_is_truncated_still_make_distinct_keys() -> None:
    # On PostgreSQL a JSON parameter is a Jsonb wrapper whose repr stops after 35 characters.
    stored = {"text": "x" * 60 + "a"}
    row = AllTypes.objects.create(**all_types_values(json=stored))
    other = {"text": "x" * 60 + "b"}
    for _ in range(2):
        assert pks(AllTypes.cached.filter(json=stored)) == [row.pk]
        assert pks(AllTypes.cached.filter(json=other)) == []


def test_the_active_time_zone_is_part_of_a_date_lookup(settings: Any) -> None:
    note = Note.objects.create(text="late")
    late = datetime.datetime(2024, 1, 1, 23, 30, tzinfo=datetime.UTC)
    Note.objects.filter(pk=note.pk).update(created=late)
    day = datetime.date(2024, 1, 1)
    for _ in range(2):  # the miss, then the hit, in each zone
        with timezone.override("UTC"):
            assert Note.cached.filter(created__date=day).count() == 1
        with timezone.override("Asia/Tokyo"):  # 08:30 on January 2nd there
            assert Note.cached.filter(created__date=day).count() == 0


def test_uuid_primary_keys(django_assert_num_queries: Any) -> None:
    tokens = [Token.objects.create(label="t") for _ in range(3)]
    Token.objects.create(label="other")
    expected = sorted(t.pk for t in tokens)
    assert pks(Token.cached.filter(label="t").order_by("pk")) == expected
    with django_assert_num_queries(0):
        assert pks(Token.cached.filter(label="t").order_by("pk")) == expected
    assert Token.cached.filter(pk__in=[str(t.pk) for t in tokens]).count() == 3
    with django_assert_num_queries(0):  # the same parameters whatever the spelling
        assert Token.cached.filter(pk__in=[t.pk for t in tokens]).count() == 3


def test_multi_table_children_proxies_and_inherited_managers(
    django_assert_num_queries: Any,
) -> None:
    pizza = Restaurant.objects.create(name="pizza", serves_pizza=True)
    Restaurant.objects.create(name="sushi")
    assert pks(Restaurant.cached.filter(name="pizza")) == [pizza.pk]
    with django_assert_num_queries(0):
        (found,) = Restaurant.cached.filter(name="pizza")
    assert type(found) is Restaurant and found.serves_pizza
    pizza.name = "renamed"
    pizza.save()
    assert list(Restaurant.cached.filter(name="pizza")) == []
    article = ArticleFactory.create()
    list(Article.cached.filter(pk=article.pk))
    with django_assert_num_queries(0):  # a proxy shares its concrete model's results
        assert [type(a) for a in ProxyArticle.cached.filter(pk=article.pk)] == [ProxyArticle]
    note = Note.objects.create(text="n")
    assert pks(Note.cached.filter(text="n")) == [note.pk]


# -- transactions and failure --------------------------------------------------------------------


def test_inside_atomic_after_a_write_the_query_bypasses_the_cache(
    org: Org, django_assert_num_queries: Any
) -> None:
    list(Article.cached.filter(org=org))
    with transaction.atomic():
        created = ArticleFactory.create(org=org)
        with django_assert_num_queries(1), count_round_trips() as trips:
            assert created.pk in pks(Article.cached.filter(org=org))
        assert trips.count == 0
        with django_assert_num_queries(2), count_round_trips() as trips:
            assert Article.cached.filter(org=org).count() == 4
            assert Article.cached.filter(org=org).exists()
        assert trips.count == 0
    assert created.pk in pks(Article.cached.filter(org=org))


def test_inside_atomic_without_a_write_the_cache_serves(
    org: Org, django_assert_num_queries: Any
) -> None:
    list(Article.cached.filter(org=org))
    with transaction.atomic(), django_assert_num_queries(0):
        assert len(Article.cached.filter(org=org)) == 3


def test_where_fills_are_unsafe_a_miss_reads_the_database_without_filling(
    org: Org, monkeypatch: Any, django_assert_num_queries: Any
) -> None:
    list(Article.cached.filter(org=org))
    monkeypatch.setattr(transactions, "fill_is_safe", lambda conn: False)
    with transaction.atomic():
        with django_assert_num_queries(0):
            assert len(Article.cached.filter(org=org)) == 3  # hits are served
        with django_assert_num_queries(1), events() as seen:
            assert Article.cached.filter(org=org).count() == 3  # one query, rows and all
        assert [name for name, _k, _w in seen] == ["miss"]


def test_redis_down_answers_from_the_database(settings: Any, org: Org) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.CACHEASIDE = {
        **settings.CACHEASIDE,
        "REDIS": f"redis://127.0.0.1:{port}/0?socket_connect_timeout=0.2",
    }
    for _ in range(2):
        assert len(Article.cached.filter(org=org)) == 3
        assert Article.cached.filter(org=org).count() == 3


def test_a_corrupt_result_is_a_miss_and_is_replaced(org: Org, redis_client: Any) -> None:
    with events() as seen:
        Article.cached.filter(org=org).count()
    key = seen[0][1]
    redis_client.hset(key, "d", b"\xc1garbage")
    errors: list[str] = []

    def record(sender: Any, operation: str, **kwargs: Any) -> None:
        errors.append(operation)

    signals.cache_error.connect(record)
    try:
        assert Article.cached.filter(org=org).count() == 3
    finally:
        signals.cache_error.disconnect(record)
    assert errors == ["decode"]
    with events() as seen:
        assert Article.cached.filter(org=org).count() == 3
        assert Article.cached.filter(org=org).count() == 3
    assert [name for name, _k, _w in seen] == ["miss", "fill", "hit"]


def test_results_and_generations_expire(org: Org, redis_client: Any) -> None:
    with events() as seen:
        list(Article.cached.filter(org=org))
    ttl_ms = 300_000  # the default TTL
    assert 0.9 * ttl_ms - 1000 <= redis_client.pttl(seen[0][1]) <= 1.1 * ttl_ms
    assert redis_client.pttl(gens_key(Article)) > 1.1 * ttl_ms


# -- what is refused -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Article.cached.filter(org__name="x"), "'org__name': it spans a relation"),
        (lambda: Article.cached.exclude(org__pk=1), "'org__pk': it spans a relation"),
        (lambda: Article.cached.filter(Q(org__name="x") | Q(slug="y")), "spans a relation"),
        (lambda: Org.cached.filter(articles__title="x"), "'articles__title': it spans"),
        (lambda: Org.cached.filter(articles=1), "'articles': it spans"),
        (lambda: Post.cached.filter(labels=1), "'labels': it spans"),  # many-to-many
        (lambda: Article.cached.filter(title=F("body")), "cannot use F as the value of 'title'"),
        (lambda: Note.cached.filter(created__lt=Now()), "cannot use Now as the value"),
        (lambda: Article.cached.filter(pk__in=Article.objects.all()), "cannot use QuerySet"),
        (
            lambda: Article.cached.filter(org=Subquery(Org.objects.values("pk")[:1])),
            "cannot use Subquery",
        ),
        (lambda: Article.cached.filter(pk__in=[1, F("org_id")]), "cannot use F"),
        (lambda: Article.cached.filter(Lower("title")), "takes Q objects"),  # type: ignore[arg-type]
        (lambda: Article.cached.order_by("?"), "cannot order by '?'"),
        (lambda: Article.cached.order_by(Lower("title")), "cannot order by an expression"),  # type: ignore[arg-type]
        (lambda: Article.cached.all().order_by("org__name"), "cannot order by 'org__name'"),
    ],
)
def test_unsupported_queries_raise_a_clear_error(build: Callable[[], Any], message: str) -> None:
    with pytest.raises(
        ValueError, match=r"Use (Article|Org|Note|Post)\.objects for this query"
    ) as error:
        list(build())
    assert message in str(error.value)


@pytest.mark.parametrize(
    "name", ["extra", "select_for_update", "annotate", "values", "values_list", "raw", "distinct"]
)
def test_queryset_methods_it_cannot_cache_raise(name: str) -> None:
    with pytest.raises(NotImplementedError, match=rf"does not support \.{name}\(\).*objects"):
        getattr(Article.cached.filter(slug="x"), name)
    with pytest.raises(NotImplementedError, match=rf"Article\.objects\.{name}"):
        getattr(Article.cached, name)
    assert not hasattr(Article.cached, name)  # an AttributeError too: introspection sees no method


def test_threads_missing_one_result_run_its_query_once(org: Org) -> None:
    """16 threads of one process miss the same cold result: one pk query, the rest coalesce."""
    from tests.test_locks import LoadCounter, run_threads

    expected = pks(Article.objects.filter(org=org).order_by("pk"))
    Article.cached.get_many(expected)  # the objects are cached: only the pk query is counted
    loads = LoadCounter()
    seen: list[str] = []

    def record(sender: Any, outcome: str, **kwargs: Any) -> None:
        seen.append(outcome)

    def read() -> list[Any]:
        with loads.installed():
            return pks(Article.cached.filter(org=org).order_by("pk"))

    signals.cache_lease.connect(record)
    try:
        results = run_threads(16, read)
    finally:
        signals.cache_lease.disconnect(record)
    assert all(not isinstance(r, BaseException) for r in results), results
    assert [r[0] for r in results] == [expected] * 16
    assert loads.count == 1
    assert seen.count("coalesced") == 15
