"""The pages answer, read through the cache, and a write is visible on the next read."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from saas.factories import ArticleFactory, DashboardFactory, OrganisationFactory, ProfileFactory
from saas.models import Article

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
