"""Every ORM write path, inside and outside ``atomic()``, leaves no stale entry.

Each test warms the cache (entries and negative entries), writes through one path, and then reads
through ``Model.cached``: the answer must be the database's. Inside a transaction the read happens
both before the commit (the transaction must see its own write) and after it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import transaction

from django_cacheaside import registry
from tests.factories import (
    LabelFactory,
    OrgFactory,
    PersonFactory,
    PostFactory,
    TeamFactory,
    update_behind_our_back,
)
from tests.testapp.models import Country, Label, Org, Person, Post, Seat, Sku, Team

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["autocommit", "atomic"])
def write(request: pytest.FixtureRequest) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """How a test's write runs: on its own, or inside ``transaction.atomic()``."""

    @contextlib.contextmanager
    def block() -> Iterator[None]:
        if request.param == "atomic":
            with transaction.atomic():
                yield
        else:
            yield

    return block


def titles(pks: list[int]) -> dict[int, str]:
    return {pk: post.title for pk, post in Post.cached.get_many(pks).items()}


def assert_absent(model: Any, **lookup: Any) -> None:
    with pytest.raises(model.DoesNotExist):
        model.cached.get(**lookup)


def test_save(write: Any) -> None:
    post = PostFactory.create(title="old")
    Post.cached.get(pk=post.pk)
    with write():
        post.title = "new"
        post.save()
        assert Post.cached.get(pk=post.pk).title == "new"
    assert Post.cached.get(pk=post.pk).title == "new"


def test_delete(write: Any) -> None:
    post = PostFactory.create()
    pk = post.pk
    Post.cached.get(pk=pk)
    Post.cached.get(slug=post.slug)
    with write():
        post.delete()
        assert_absent(Post, pk=pk)
    assert_absent(Post, pk=pk)
    assert_absent(Post, slug=post.slug)


def test_cascade_delete(write: Any) -> None:
    org = OrgFactory.create()
    posts = PostFactory.create_batch(3, org=org)
    assert len(Post.cached.get_many([p.pk for p in posts])) == 3
    org_pk = org.pk
    Org.cached.get(pk=org_pk)
    with write():
        org.delete()
    assert Post.cached.get_many([p.pk for p in posts]) == {}
    assert_absent(Org, pk=org_pk)


def test_queryset_update(write: Any) -> None:
    org = OrgFactory.create()
    posts = PostFactory.create_batch(3, org=org)
    other = PostFactory.create(title="untouched")
    pks = [p.pk for p in posts]
    titles([*pks, other.pk])
    with write():
        assert Post.objects.filter(org=org).update(title="bulk") == 3
        assert titles(pks) == dict.fromkeys(pks, "bulk")
    assert titles([*pks, other.pk]) == {**dict.fromkeys(pks, "bulk"), other.pk: "untouched"}


def test_related_manager_update(write: Any) -> None:
    org = OrgFactory.create()
    posts = PostFactory.create_batch(2, org=org)
    pks = [p.pk for p in posts]
    titles(pks)
    with write():
        org.posts.update(title="via the relation")
    assert titles(pks) == dict.fromkeys(pks, "via the relation")


def test_update_of_a_unique_field_clears_its_negative_pointer(write: Any) -> None:
    post = PostFactory.create(slug="before")
    assert_absent(Post, slug="after")  # a cached "does not exist"
    with write():
        Post.objects.filter(pk=post.pk).update(slug="after")
    assert Post.cached.get(slug="after").pk == post.pk
    assert_absent(Post, slug="before")


def test_update_changes_only_the_rows_it_invalidated(write: Any) -> None:
    # update() reads the pks it will change, then updates exactly those (pk__in): a row that
    # starts matching after the read is not updated behind the cache's back.
    org = OrgFactory.create()
    post = PostFactory.create(org=org)
    late = PostFactory.create(title="late")
    queryset = Post.objects.filter(org=org)
    original = queryset.values_list

    def values_list(*args: Any, **kwargs: Any) -> Any:
        result = list(original(*args, **kwargs))
        Post.objects.filter(pk=late.pk).update(org=org)  # now matches the filter too
        return result

    queryset.values_list = values_list  # type: ignore[method-assign]
    Post.cached.get(pk=late.pk)
    with write():
        assert queryset.update(title="bulk") == 1
    assert Post.cached.get(pk=post.pk).title == "bulk"
    assert Post.cached.get(pk=late.pk).title == "late"  # not updated, and fresh


def test_queryset_delete(write: Any) -> None:
    org = OrgFactory.create()
    posts = PostFactory.create_batch(3, org=org)
    pks = [p.pk for p in posts]
    titles(pks)
    with write():
        Post.objects.filter(org=org).delete()
    assert titles(pks) == {}


def test_bulk_create_clears_negative_entries(write: Any) -> None:
    org = OrgFactory.create()
    assert_absent(Post, slug="fresh-1")
    with write():
        created = Post.objects.bulk_create(
            [Post(org=org, slug=f"fresh-{n}", title=f"T{n}") for n in range(3)]
        )
    assert Post.cached.get(slug="fresh-1").title == "T1"
    assert {post.title for post in Post.cached.get_many([p.pk for p in created]).values()} == {
        "T0",
        "T1",
        "T2",
    }


def test_bulk_create_clears_negative_entries_by_pk(write: Any) -> None:
    org = OrgFactory.create()
    pk = 10_000_000
    assert_absent(Post, pk=pk)
    with write():
        Post.objects.bulk_create([Post(pk=pk, org=org, slug="explicit", title="explicit")])
    assert Post.cached.get(pk=pk).title == "explicit"


def test_bulk_create_without_returned_pks_drops_the_model(write: Any) -> None:
    org = OrgFactory.create()
    assert_absent(Post, slug="quiet")  # a cached "does not exist"
    with write():
        # ignore_conflicts: the database returns no pks, so the new rows cannot be named.
        created = Post.objects.bulk_create(
            [Post(org=org, slug="quiet", title="quiet")], ignore_conflicts=True
        )
    assert created[0].pk is None  # so the invalidate_model() fallback is what cleared it
    assert Post.cached.get(slug="quiet").title == "quiet"


def test_bulk_update(write: Any) -> None:
    posts = PostFactory.create_batch(3)
    pks = [p.pk for p in posts]
    titles(pks)
    for n, post in enumerate(posts):
        post.title = f"bulk {n}"
    with write():
        assert Post.objects.bulk_update(posts, ["title"], batch_size=2) == 3
    assert titles(pks) == {p.pk: f"bulk {n}" for n, p in enumerate(posts)}


def test_update_or_create(write: Any) -> None:
    post = PostFactory.create(title="old")
    Post.cached.get(pk=post.pk)
    assert_absent(Post, slug="brand-new")
    with write():
        Post.objects.update_or_create(slug=post.slug, defaults={"title": "updated"})
        Post.objects.update_or_create(
            slug="brand-new", defaults={"title": "created", "org": post.org}
        )
    assert Post.cached.get(pk=post.pk).title == "updated"
    assert Post.cached.get(slug="brand-new").title == "created"


def test_get_or_create(write: Any) -> None:
    org = OrgFactory.create()
    assert_absent(Post, slug="gotten")
    with write():
        post, created = Post.objects.get_or_create(
            slug="gotten", defaults={"title": "t", "org": org}
        )
    assert created
    assert Post.cached.get(slug="gotten").pk == post.pk
    assert Post.cached.get(pk=post.pk).title == "t"


def test_auto_through_m2m_changes_leave_both_sides_exact(write: Any) -> None:
    # Entries hold a row's own columns, so m2m changes make nothing stale; both sides stay exact
    # and their relations are read from the database.
    post = PostFactory.create()
    labels = LabelFactory.create_batch(3)
    Post.cached.get(pk=post.pk)
    Label.cached.get_many([label.pk for label in labels])
    with write():
        post.labels.add(labels[0], labels[1])
        labels[2].posts.add(post)
        post.labels.remove(labels[1])
    cached_post = Post.cached.get(pk=post.pk)
    assert set(cached_post.labels.values_list("pk", flat=True)) == {labels[0].pk, labels[2].pk}
    assert list(Label.cached.get(pk=labels[2].pk).posts.all()) == [post]
    with write():
        post.labels.set([labels[1]])
        labels[1].posts.clear()
    assert list(Post.cached.get(pk=post.pk).labels.all()) == []


def test_custom_through_m2m_add_remove_set_clear_on_both_sides(write: Any) -> None:
    team = TeamFactory.create()
    people = PersonFactory.create_batch(3)
    for person in people:
        assert_absent(Seat, team=team, person=person)  # cached "does not exist"
    with write():
        team.people.add(people[0], through_defaults={"role": "lead"})
        people[1].teams.add(team)
    assert Seat.cached.get(team=team, person=people[0]).role == "lead"
    assert Seat.cached.get(team=team, person=people[1]).role == "member"
    with write():
        team.people.remove(people[0])
    assert_absent(Seat, team=team, person=people[0])
    with write():
        people[2].teams.set([team])
        team.people.set([people[2]])
    assert_absent(Seat, team=team, person=people[1])
    assert Seat.cached.get(team=team, person=people[2]).team_id == team.pk
    with write():
        people[2].teams.clear()
    assert_absent(Seat, team=team, person=people[2])
    assert Team.cached.get(pk=team.pk).name == team.name


def test_refresh_from_db_reads_the_database_and_leaves_the_cache_alone(write: Any) -> None:
    post = PostFactory.create(title="cached")
    cached = Post.cached.get(pk=post.pk)
    cached = Post.cached.get(pk=post.pk)  # a hit
    update_behind_our_back(Post, post.pk, title="behind")
    with write():
        cached.refresh_from_db()
    assert cached.title == "behind"
    assert Post.cached.get(pk=post.pk).title == "cached"  # refresh_from_db did not fill
    cached.title = "saved"
    cached.save()
    assert Post.cached.get(pk=post.pk).title == "saved"


def test_saving_a_deferred_instance_costs_no_extra_query(
    write: Any, django_assert_num_queries: Any
) -> None:
    post = PostFactory.create(title="old")
    Post.cached.get(pk=post.pk)
    Post.cached.get(slug=post.slug)
    partial = Post.objects.only("title").get(pk=post.pk)
    partial.title = "partial"
    with write(), django_assert_num_queries(1):  # the UPDATE; no load of the deferred fields
        partial.save()
    full = Post.cached.get(pk=post.pk)
    assert (full.title, full.slug, full.org_id) == ("partial", post.slug, post.org_id)
    assert not full.get_deferred_fields()
    assert Post.cached.get(slug=post.slug).title == "partial"


@pytest.mark.parametrize("model", [Country, Sku])
def test_string_and_custom_named_primary_keys(model: Any, write: Any) -> None:
    row: Any = (
        Country.objects.create(code="fr", name="France")
        if model is Country
        else Sku.objects.create(name="widget")
    )
    assert model.cached.get(pk=row.pk).name == row.name
    with write():
        row.name = "renamed"
        row.save()
    assert model.cached.get(pk=row.pk).name == "renamed"
    if model is Sku:
        assert Sku.cached.get(sku_id=row.pk).name == "renamed"
        with write():
            Sku.objects.filter(sku_id=row.pk).update(name="updated")
        assert Sku.cached.get(name="updated").pk == row.pk
    pk = row.pk
    with write():
        model.objects.filter(pk=pk).delete()
    assert_absent(model, pk=pk)


def test_writes_to_uncached_models_are_not_touched(django_assert_num_queries: Any) -> None:
    from tests.testapp.models import Uncached

    row = Uncached.objects.create(name="a")
    with django_assert_num_queries(1):  # the UPDATE alone: no pk read, no transaction
        Uncached.objects.filter(pk=row.pk).update(name="b")
    assert not registry.family(Uncached)


def test_every_write_path_is_wrapped_once() -> None:
    from django.db.models.query import QuerySet

    from django_cacheaside import writes

    for name in ("update", "bulk_update", "bulk_create"):
        assert getattr(QuerySet, name)._cacheaside
    writes.install()  # idempotent: the wrappers do not wrap themselves
    for name in ("update", "bulk_update", "bulk_create"):
        assert not getattr(writes._original[name], "_cacheaside", False)


def test_team_and_person_entries_follow_saves(write: Any) -> None:
    team = TeamFactory.create()
    person = PersonFactory.create()
    Team.cached.get(pk=team.pk)
    Person.cached.get(pk=person.pk)
    with write():
        Team.objects.filter(pk=team.pk).update(name="renamed")
        Person.objects.bulk_update([Person(pk=person.pk, name="renamed too")], ["name"])
    assert Team.cached.get(pk=team.pk).name == "renamed"
    assert Person.cached.get(pk=person.pk).name == "renamed too"


def test_proxy_writes_invalidate_the_concrete_entries_and_back(write: Any) -> None:
    from tests.factories import ArticleFactory
    from tests.testapp.models import Article, ProxyArticle

    article = ArticleFactory.create(title="old")
    Article.cached.get(pk=article.pk)
    proxied = ProxyArticle.cached.get(pk=article.pk)  # the same entry
    with write():
        proxied.title = "via the proxy"
        proxied.save()
    assert Article.cached.get(pk=article.pk).title == "via the proxy"
    with write():
        ProxyArticle.objects.filter(pk=article.pk).update(title="proxy update")
    assert Article.cached.get(pk=article.pk).title == "proxy update"
    with write():
        Article.objects.filter(pk=article.pk).update(title="concrete update")
    assert ProxyArticle.cached.get(pk=article.pk).title == "concrete update"
