"""The read path: hits, misses, fills, negative entries, get_many, unique lookups."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User

from django_cacheaside import entries, signals
from django_cacheaside.testing import count_round_trips
from tests.factories import ArticleFactory, MembershipFactory, OrgFactory, update_behind_our_back
from tests.testapp.models import Article, Membership, Org, ProxyArticle, Token

pytestmark = pytest.mark.django_db(transaction=True)


def fields_of(obj: Any) -> dict[str, Any]:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def test_miss_loads_once_then_hits_with_one_round_trip_and_no_query(
    django_assert_num_queries: Any,
) -> None:
    article = ArticleFactory.create()
    with django_assert_num_queries(1):
        first = Article.cached.get(pk=article.pk)
    with django_assert_num_queries(0), count_round_trips() as trips:
        hit = Article.cached.get(pk=article.pk)
    assert trips.count == 1
    assert fields_of(hit) == fields_of(first) == fields_of(Article.objects.get(pk=article.pk))
    assert hit == article
    assert hit._state.adding is False
    assert hit._state.db == "default"


@pytest.mark.single_redis
def test_a_miss_costs_three_round_trips(django_assert_num_queries: Any) -> None:
    article = ArticleFactory.create()
    # HGET (miss), READ_OR_BEGIN (stamp), FILL (compare-and-set).
    with django_assert_num_queries(1), count_round_trips() as trips:
        Article.cached.get(pk=article.pk)
    assert trips.count == 3


def test_cached_instance_saves_refreshes_and_follows_relations() -> None:
    article = ArticleFactory.create(title="before")
    Article.cached.get(pk=article.pk)
    cached = Article.cached.get(pk=article.pk)
    assert cached.org.name == article.org.name
    cached.title = "after"
    cached.save()
    assert Article.objects.get(pk=article.pk).title == "after"
    assert Article.objects.count() == 1  # save() updated, it did not insert
    update_behind_our_back(Article, article.pk, body="changed behind our back")
    cached.refresh_from_db()
    assert cached.body == "changed behind our back"


@pytest.mark.parametrize("lookup", ["pk", "id", "pk__exact", "id__exact"])
@pytest.mark.parametrize("convert", [int, str])
def test_pk_spellings_share_one_entry(lookup: str, convert: Any) -> None:
    article = ArticleFactory.create()
    Article.cached.get(pk=article.pk)
    with count_round_trips() as trips:
        assert Article.cached.get(**{lookup: convert(article.pk)}) == article
    assert trips.count == 1


def test_missing_row_raises_like_the_orm_and_is_negative_cached(
    django_assert_num_queries: Any, redis_client: Any
) -> None:
    with pytest.raises(Article.DoesNotExist) as orm_error:
        Article.objects.get(pk=999)
    with django_assert_num_queries(1), pytest.raises(Article.DoesNotExist) as cached_error:
        Article.cached.get(pk=999)
    assert str(cached_error.value) == str(orm_error.value)
    with django_assert_num_queries(0), pytest.raises(Article.DoesNotExist):
        Article.cached.get(pk=999)
    ttl = redis_client.pttl(Article.cached.key_for_pk(999))
    assert 0 < ttl <= 30_000 * 1.1  # NEGATIVE_TTL (30 s) with jitter, not the 300 s TTL


def test_creating_the_row_clears_the_negative_entry() -> None:
    org = OrgFactory.create()
    with pytest.raises(Org.DoesNotExist):
        Org.cached.get(pk=org.pk + 1)
    created = Org.objects.create(id=org.pk + 1, name="late")
    assert Org.cached.get(pk=org.pk + 1) == created


def test_unique_field_lookup_is_cached_and_verified(
    django_assert_num_queries: Any,
) -> None:
    org = OrgFactory.create(name="acme")
    assert Org.cached.get(name="acme") == org  # pointer filled (1 query)
    assert Org.cached.get(name="acme") == org  # pointer hit, object filled (1 query)
    with django_assert_num_queries(0), count_round_trips() as trips:
        assert Org.cached.get(name="acme") == org
    assert trips.count == 2  # the pointer, then the object it names


def test_stale_pointer_after_a_rename_is_never_trusted() -> None:
    first = OrgFactory.create(name="acme")
    Org.cached.get(name="acme")
    Org.cached.get(name="acme")
    first.name = "renamed"
    first.save()
    second = Org.objects.create(name="acme")
    assert Org.cached.get(name="acme") == second
    assert Org.cached.get(name="renamed") == first


def test_negative_unique_lookup_is_cleared_by_creation(django_assert_num_queries: Any) -> None:
    with pytest.raises(Org.DoesNotExist):
        Org.cached.get(name="newcomer")
    with django_assert_num_queries(0), pytest.raises(Org.DoesNotExist):
        Org.cached.get(name="newcomer")
    org = Org.objects.create(name="newcomer")
    assert Org.cached.get(name="newcomer") == org


def test_unique_together_lookup_with_instance_and_id_spellings() -> None:
    article = ArticleFactory.create(slug="hello")
    by_instance = Article.cached.get(org=article.org, slug="hello")
    by_id = Article.cached.get(org_id=article.org_id, slug="hello")
    by_pk_string = Article.cached.get(slug="hello", org=str(article.org_id))
    assert by_instance == by_id == by_pk_string == article


def test_unique_constraint_lookup() -> None:
    membership = MembershipFactory.create(email="a@example.com")
    assert Membership.cached.get(org=membership.org, email="a@example.com") == membership
    with pytest.raises(Membership.DoesNotExist):
        Membership.cached.get(org=membership.org, email="b@example.com")


def test_uuid_primary_key() -> None:
    token = Token.objects.create(label="t")
    assert Token.cached.get(pk=str(token.pk)) == token
    assert Token.cached.get(pk=token.pk).label == "t"


@pytest.mark.parametrize(
    "lookups, message",
    [
        ({"title": "x"}, "cannot use the combination title"),
        ({"title__icontains": "x"}, "cannot use 'title__icontains'"),
        ({"nope": 1}, "cannot use 'nope'"),
        ({"slug": "x"}, "cannot use the combination slug"),
        ({"pk__in": [1]}, "cannot use 'pk__in'"),
        ({}, "needs a lookup"),
        ({"pk": None}, "got None for 'pk'"),
        ({"pk": 1, "id": 1}, "got 'id' twice"),
    ],
)
def test_uncacheable_lookups_say_what_is_cacheable(lookups: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=r"Cacheable lookups are exact matches on one of") as error:
        Article.cached.get(**lookups)
    assert message in str(error.value)
    assert "pk; (org, slug)" in str(error.value)


def test_bad_value_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"Field .pk. of testapp\.Article"):
        Article.cached.get(pk="not-a-number")


def test_wrong_model_instance_for_a_foreign_key() -> None:
    with pytest.raises(ValueError, match="got a Group for 'org'"):
        Article.cached.get(org=Group.objects.create(name="g"), slug="x")


@pytest.mark.single_redis
def test_get_many_one_round_trip_for_hits(django_assert_num_queries: Any) -> None:
    articles = ArticleFactory.create_batch(5)
    pks = [a.pk for a in articles]
    with django_assert_num_queries(1), count_round_trips() as trips:
        first = Article.cached.get_many([*pks, 10_000])
    assert trips.count == 3  # pipelined lookups, the misses' stamps and leases, pipelined fills
    assert list(first) == pks
    with django_assert_num_queries(0), count_round_trips() as trips:
        again = Article.cached.get_many(reversed([*pks, 10_000]))
    assert trips.count == 1
    assert list(again) == list(reversed(pks))
    assert {pk: fields_of(obj) for pk, obj in again.items()} == {
        a.pk: fields_of(a) for a in Article.objects.filter(pk__in=pks)
    }


@pytest.mark.single_redis
def test_get_many_mixes_hits_and_misses(django_assert_num_queries: Any) -> None:
    articles = ArticleFactory.create_batch(4)
    Article.cached.get(pk=articles[0].pk)
    Article.cached.get(pk=articles[1].pk)
    with django_assert_num_queries(1), count_round_trips() as trips:
        found = Article.cached.get_many([str(a.pk) for a in articles] + [articles[0].pk])
    assert trips.count == 3
    assert list(found) == [a.pk for a in articles]
    assert Article.cached.get_many([]) == {}


def test_proxy_shares_entries_with_its_concrete_model(django_assert_num_queries: Any) -> None:
    article = ArticleFactory.create()
    Article.cached.get(pk=article.pk)
    with django_assert_num_queries(0):
        proxied = ProxyArticle.cached.get(pk=article.pk)
    assert type(proxied) is ProxyArticle
    proxied.title = "via proxy"
    proxied.save()
    assert Article.cached.get(pk=article.pk).title == "via proxy"


def test_registered_models_from_settings_and_from_register() -> None:
    user = User.objects.create_user("ann")
    group = Group.objects.create(name="staff")
    # Attached at run time by register(): invisible to the type checker.
    user_cached: Any = User.cached  # type: ignore[attr-defined]
    group_cached: Any = Group.cached  # type: ignore[attr-defined]
    assert user_cached.get(username="ann") == user
    assert group_cached.get(pk=group.pk) == group
    assert user_cached.option("TTL") == 600
    assert group_cached.option("TTL") == 120


def test_entries_of_another_schema_are_misses(redis_client: Any) -> None:
    article = ArticleFactory.create()
    Article.cached.get(pk=article.pk)
    key = Article.cached.key_for_pk(article.pk)
    entry = redis_client.hget(key, "d")
    redis_client.hset(key, "d", entry[:1] + b"00000000" + entry[9:])
    update_behind_our_back(Article, article.pk, title="fresh")
    assert Article.cached.get(pk=article.pk).title == "fresh"


def test_corrupt_entry_is_a_miss_and_reported(
    redis_client: Any, django_assert_num_queries: Any
) -> None:
    article = ArticleFactory.create()
    Article.cached.get(pk=article.pk)
    key = Article.cached.key_for_pk(article.pk)
    entry = redis_client.hget(key, "d")
    redis_client.hset(key, "d", entry[: entries.HEADER_LEN] + b"\xc1garbage")
    errors: list[str] = []

    def record(sender: Any, operation: str, **kwargs: Any) -> None:
        errors.append(operation)

    signals.cache_error.connect(record)
    try:
        assert Article.cached.get(pk=article.pk) == article
    finally:
        signals.cache_error.disconnect(record)
    assert errors == ["decode"]
    with django_assert_num_queries(0):  # the bad entry was replaced
        assert Article.cached.get(pk=article.pk) == article


def test_get_many_replaces_unusable_entries(
    redis_client: Any, django_assert_num_queries: Any
) -> None:
    articles = ArticleFactory.create_batch(3)
    pks = [a.pk for a in articles]
    Article.cached.get_many(pks)
    key = Article.cached.key_for_pk(pks[1])
    redis_client.hset(key, "d", b"\x01zzzzzzzzR\x90")  # another schema stamp
    with django_assert_num_queries(1):
        assert list(Article.cached.get_many(pks)) == pks
    with django_assert_num_queries(0):
        assert list(Article.cached.get_many(pks)) == pks


def test_every_key_has_a_jittered_ttl(redis_client: Any, settings: Any) -> None:
    settings.CACHEASIDE = {**settings.CACHEASIDE, "TTL": 100, "TTL_JITTER": 0.2}
    articles = ArticleFactory.create_batch(30)
    Article.cached.get_many([a.pk for a in articles])
    ttls = [redis_client.pttl(Article.cached.key_for_pk(a.pk)) for a in articles]
    assert all(80_000 - 100 <= ttl <= 120_000 for ttl in ttls)
    assert len(set(ttls)) > 10  # spread out, not one expiry for all


def test_signals_report_hits_misses_and_fills() -> None:
    article = ArticleFactory.create()
    seen: list[tuple[str, Any]] = []

    def hit(sender: Any, key: str, **kwargs: Any) -> None:
        seen.append(("hit", sender))

    def miss(sender: Any, key: str, **kwargs: Any) -> None:
        seen.append(("miss", sender))

    def fill(sender: Any, key: str, written: bool, duration: float, **kwargs: Any) -> None:
        seen.append(("fill", written))
        assert duration > 0

    for signal, receiver in (
        (signals.cache_hit, hit),
        (signals.cache_miss, miss),
        (signals.cache_fill, fill),
    ):
        signal.connect(receiver)
    try:
        Article.cached.get(pk=article.pk)
        Article.cached.get(pk=article.pk)
    finally:
        signals.cache_hit.disconnect(hit)
        signals.cache_miss.disconnect(miss)
        signals.cache_fill.disconnect(fill)
    assert seen == [("miss", Article), ("fill", True), ("hit", Article)]


def test_manager_is_not_reachable_from_instances() -> None:
    article = ArticleFactory.create()
    with pytest.raises(AttributeError, match="not its instances"):
        article.cached  # noqa: B018


@pytest.mark.django_db(transaction=True)
def test_a_cached_model_defined_after_startup_is_invalidated_like_the_others() -> None:
    from django.db import connection, models
    from django.test.utils import isolate_apps

    from django_cacheaside import CacheAsideManager, registry

    with isolate_apps():  # none installed: no ready() runs again

        class LateNote(models.Model):
            text = models.CharField(max_length=20)
            objects = models.Manager()
            cached: CacheAsideManager[Any] = CacheAsideManager()

            class Meta:
                app_label = "testapp"

        try:
            assert registry.family(LateNote) == [LateNote]
            with connection.schema_editor() as editor:
                editor.create_model(LateNote)
            try:
                note = LateNote(text="first")
                note.save()
                assert LateNote.cached.get(pk=note.pk).text == "first"  # filled
                note.text = "second"
                note.save()  # its post_save receiver drops the entry
                assert LateNote.cached.get(pk=note.pk).text == "second"
            finally:
                with connection.schema_editor() as editor:
                    editor.delete_model(LateNote)
        finally:
            registry._managers.pop(LateNote, None)
            registry._families.clear()


@pytest.mark.django_db(transaction=True)
def test_decode_rows_answers_what_decode_answers_entry_by_entry() -> None:
    from django.db.models.signals import post_init

    from django_cacheaside.exceptions import CorruptEntry

    first, second = ArticleFactory.create_batch(2)
    codec = Article.cached.codec
    row_1, row_2 = (codec.encode_row(Article.objects.get(pk=a.pk)) for a in (first, second))
    cases = [
        (row_1, first.pk),  # a row
        (row_2, first.pk),  # another pk's row: corrupt
        (codec.encode_missing(), 10**9),  # a remembered "does not exist"
        (codec.encode_pointer(first.pk), first.pk),  # a pointer under an object key: corrupt
        (b"\x02" + b"0" * 8 + row_1[9:], first.pk),  # another schema: a miss
        (row_1[:15], first.pk),  # truncated: a miss
        (row_1[:-5], first.pk),  # a cut payload: corrupt
        (None, second.pk),  # no entry
    ]
    entries = [entry for entry, _pk in cases]
    pks = [pk for _entry, pk in cases]
    keys = [Article.cached.key_for_pk(pk) for pk in pks]

    def one_by_one() -> list[Any]:
        answers: list[Any] = []
        for entry, key, pk in zip(entries, keys, pks, strict=True):
            try:
                answers.append(None if entry is None else codec.decode("default", entry, key, pk))
            except CorruptEntry as exc:
                answers.append(type(exc))
        return answers

    def comparable(answer: Any) -> Any:
        if isinstance(answer, Article):
            return ("row", answer.pk, answer.title, answer._state.db, answer._state.adding)
        return type(answer) if isinstance(answer, CorruptEntry) else answer

    expected = [comparable(a) for a in one_by_one()]
    assert expected[0] == ("row", first.pk, first.title, "default", False)
    assert [comparable(a) for a in codec.decode_rows("default", entries, keys, pks)] == expected
    seen: list[Any] = []

    def record(sender: Any, instance: Article, **kwargs: Any) -> None:
        seen.append(instance.pk)

    post_init.connect(record, sender=Article)
    try:  # a post_init listener: instances are built by from_db, and it hears each one
        decoded = codec.decode_rows("default", entries, keys, pks)
    finally:
        post_init.disconnect(record, sender=Article)
    assert [comparable(a) for a in decoded] == expected
    assert seen == [first.pk]
