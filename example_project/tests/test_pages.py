"""The pages answer, read through the cache, and a write is visible on the next read."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission, User
from django.db import connection, connections
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_cacheaside.backend import get_backend
from saas import cachekeys
from saas.factories import ArticleFactory, DashboardFactory, OrganisationFactory, ProfileFactory
from saas.models import Article, Organisation
from saas.stats import CacheCounter

pytestmark = pytest.mark.django_db(transaction=True)  # fills and invalidations need real commits


def test_user_is_registered_in_app_ready() -> None:
    user = ProfileFactory().user
    assert User.cached.get(username=user.username) == user  # type: ignore[attr-defined]


def test_home_lists_the_organisations(client: Any) -> None:
    orgs = OrganisationFactory.create_batch(3)
    response = client.get(reverse("home"))
    assert response.status_code == 200
    for org in orgs:
        assert org.name in response.content.decode()


def test_organisation_page(client: Any) -> None:
    org = OrganisationFactory()
    DashboardFactory(org=org, article_count=2, member_count=1)
    articles = ArticleFactory.create_batch(2, org=org)
    member = ProfileFactory(org=org)
    url = reverse("organisation", args=[org.slug])
    assert client.get(url).status_code == 200
    response = client.get(url)
    body = response.content.decode()
    assert response.status_code == 200
    assert member.display_name in body
    assert all(a.title in body for a in articles)
    assert client.get(reverse("organisation", args=["nope"])).status_code == 404


def test_profile_page_is_served_from_the_cache(client: Any, django_assert_num_queries: Any) -> None:
    member = ProfileFactory()
    url = reverse("profile", args=[member.user.username])

    with CaptureQueriesContext(connection) as first:
        response = client.get(url)
    assert response.status_code == 200
    assert member.display_name in response.content.decode()
    assert len(first) == 3  # user by username, profile by user, organisation by pk

    # A get() by a unique field caches a pointer (username -> pk) first and the row on the next
    # read, so the second request still loads the user and profile rows, by pk; never by username.
    with CaptureQueriesContext(connection) as second:
        assert client.get(url).status_code == 200
    assert len(second) <= 2
    wheres = [q["sql"].rpartition("WHERE")[2] for q in second.captured_queries]
    assert not any("username" in w or "user_id" in w for w in wheres), wheres

    with django_assert_num_queries(0):
        response = client.get(url)
    assert response.status_code == 200
    assert member.display_name in response.content.decode()
    assert response["X-Cache-Aside"] == "hits=5 misses=0 db-queries=0"
    assert "<strong>0</strong> database" in response.content.decode()


def test_unknown_member_is_404(client: Any) -> None:
    assert client.get(reverse("profile", args=["nobody"])).status_code == 404
    assert client.get(reverse("profile", args=["nobody"])).status_code == 404  # cached "missing"


def test_edit_title_invalidates(client: Any, django_assert_num_queries: Any) -> None:
    article = ArticleFactory(title="Old title")
    url = reverse("article", args=[article.org.slug, article.slug])
    for _ in range(2):  # the second request fills the rows behind the lookup pointers
        assert "Old title" in client.get(url).content.decode()
    with django_assert_num_queries(0):
        assert "Old title" in client.get(url).content.decode()

    edit = reverse("article-edit", args=[article.org.slug, article.slug])
    response = client.post(edit, {"title": "New title"})
    assert response.status_code == 302
    assert response["Location"] == url

    response = client.get(url)
    body = response.content.decode()
    assert "New title" in body
    assert "Old title" not in body
    assert "Title saved" in body  # the message survived the redirect
    assert Article.cached.get(pk=article.pk).title == "New title"
    assert Article.objects.get(pk=article.pk).title == "New title"


def test_edit_rejects_an_empty_title(client: Any) -> None:
    article = ArticleFactory(title="Kept")
    edit = reverse("article-edit", args=[article.org.slug, article.slug])
    assert client.post(edit, {"title": "  "}).status_code == 400
    assert client.get(edit).status_code == 405
    assert Article.cached.get(pk=article.pk).title == "Kept"


def test_admin_index_answers(admin_client: Any) -> None:
    assert admin_client.get(reverse("admin:index")).status_code == 200
    assert admin_client.get(reverse("admin:saas_article_changelist")).status_code == 200


def test_the_article_list_is_a_cached_query(client: Any, django_assert_num_queries: Any) -> None:
    org = OrganisationFactory()
    DashboardFactory(org=org)
    now = timezone.now()
    older = ArticleFactory(org=org, title="Older", published_at=now - timedelta(days=2))
    newer = ArticleFactory(org=org, title="Newer", published_at=now - timedelta(days=1))
    ArticleFactory(title="Another tenant's")  # not in this organisation's list
    url = reverse("organisation", args=[org.slug])
    for _ in range(2):  # the second request fills the rows behind the lookup pointers
        client.get(url)
    with django_assert_num_queries(0):
        body = client.get(url).content.decode()
    assert body.index("Newer") < body.index("Older")
    assert "Another tenant" not in body

    # A new article changes which rows match: the list's query runs again (and the new row loads).
    ArticleFactory(org=org, title="Newest", published_at=now)
    with CaptureQueriesContext(connection) as after_create:
        body = client.get(url).content.decode()
    assert body.index("Newest") < body.index("Newer") < body.index("Older")
    assert any("ORDER BY" in q["sql"] for q in after_create.captured_queries)

    # A title saved with update_fields changes no row's membership or order: the list's pks stay
    # cached, only the edited article is read again, by pk.
    newer.title = "Newer, renamed"
    newer.save(update_fields=["title"])
    with CaptureQueriesContext(connection) as after_rename:
        body = client.get(url).content.decode()
    assert "Newer, renamed" in body
    assert len(after_rename) == 1, after_rename.captured_queries
    assert str(newer.pk) in after_rename.captured_queries[0]["sql"]
    assert older.title in body


def purge_action(admin_client: Any, *orgs: Organisation) -> str:
    response = admin_client.post(
        reverse("admin:saas_organisation_changelist"),
        {"action": "purge_cached_articles", "_selected_action": [o.pk for o in orgs]},
        follow=True,
    )
    assert response.status_code == 200
    return str(response.content.decode())


def test_admin_action_purges_an_organisations_articles_by_tag(
    admin_client: Any, django_assert_num_queries: Any
) -> None:
    purged, kept = OrganisationFactory(), OrganisationFactory()
    assert purged.articles_tag == f"org:{purged.pk}"
    gone = ArticleFactory.create_batch(2, org=purged)
    stays = ArticleFactory(org=kept)
    for article in [*gone, stays]:
        Article.cached.get(pk=article.pk)  # fill

    body = purge_action(admin_client, purged)
    assert f"Purged 2 cached article entries of {purged.name}." in body

    with django_assert_num_queries(0):
        assert Article.cached.get(pk=stays.pk) == stays  # another tenant's tag: still cached
    for article in gone:
        with django_assert_num_queries(1):
            assert Article.cached.get(pk=article.pk) == article


def test_purge_action_needs_the_purge_permission(client: Any) -> None:
    OrganisationFactory()  # the admin shows no actions over an empty list
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_organisation"))
    client.force_login(staff)
    response = client.get(reverse("admin:saas_organisation_changelist"))
    assert response.status_code == 200
    assert "purge_cached_articles" not in response.content.decode()

    staff.user_permissions.add(Permission.objects.get(codename="purge_cache"))
    staff = User.objects.get(pk=staff.pk)  # permissions are cached on the instance
    client.force_login(staff)
    response = client.get(reverse("admin:saas_organisation_changelist"))
    assert "purge_cached_articles" in response.content.decode()


def test_cache_statistics_page_is_in_the_admin(admin_client: Any) -> None:
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:django_cacheaside_stats") in index
    response = admin_client.get(reverse("admin:django_cacheaside_stats"))
    assert response.status_code == 200
    assert "Cache statistics" in response.content.decode()


def test_with_the_cache_off_pages_read_the_database_only(
    client: Any, settings: Any, cache_prefix: str
) -> None:
    settings.READ_THROUGH_CACHE = False
    member = ProfileFactory()
    DashboardFactory(org=member.org)
    ArticleFactory.create_batch(2, org=member.org)
    pages = [
        reverse("profile", args=[member.user.username]),
        reverse("organisation", args=[member.org.slug]),
        reverse("home"),
    ]
    for url in pages:
        for _ in range(3):  # never served from the cache, however often it is read
            with CacheCounter() as counter, CaptureQueriesContext(connection) as queries:
                response = client.get(url)
            assert response.status_code == 200
            assert counter.lookups == 0 and counter.fills == 0
            assert len(queries) > 0
            hits, misses, db = response["X-Cache-Aside"].split()
            assert (hits, misses) == ("hits=0", "misses=0")
            assert db == f"db-queries={len(queries)}"
    assert "The cache is <strong>off</strong>" in response.content.decode()
    client_redis = get_backend().client
    assert list(client_redis.scan_iter(match=cachekeys.pattern(cache_prefix))) == []

    settings.READ_THROUGH_CACHE = True  # the same switch turns it back on, at once
    with CacheCounter() as counter:
        assert client.get(pages[0]).status_code == 200
    assert counter.lookups > 0


def test_the_async_dashboard_view_reads_with_aget_through_the_asgi_handler() -> None:
    dashboard = DashboardFactory(article_count=7)
    url = reverse("dashboard-json", args=[dashboard.org.slug])
    counter = CacheCounter()

    async def fetch() -> list[Any]:
        client = AsyncClient()  # Django's ASGI handler: the view runs on the event loop
        responses = [await client.get(url) for _ in range(3)]
        responses.append(await client.get(reverse("dashboard-json", args=["no-such-org"])))
        await sync_to_async(connections.close_all)()  # the worker thread's connection
        return responses

    with counter:
        *found, missing = asyncio.run(fetch())
    assert [r.status_code for r in found] == [200, 200, 200]
    assert {r.json()["articles"] for r in found} == {7}
    assert found[0].json()["organisation"] == dashboard.org.name
    assert missing.status_code == 404
    assert counter.hits >= 4  # the 2nd and 3rd requests: the org's pointer and row, the dashboard's
