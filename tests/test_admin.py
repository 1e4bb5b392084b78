"""The admin's "Cache statistics" page: permissions, its numbers, the purge actions, and a real
browser (Playwright driving the system Chromium) going through it."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from django_cacheaside import stats
from django_cacheaside.admin_views import chart
from django_cacheaside.backend import get_backend
from django_cacheaside.stats import ModelStats, counters
from tests.factories import ArticleFactory
from tests.testapp.models import Article, Label

pytestmark = pytest.mark.django_db(transaction=True)

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
UNREACHABLE = "redis://127.0.0.1:1/0?socket_connect_timeout=0.2&socket_timeout=0.2"


@pytest.fixture(autouse=True)
def no_stray_counts() -> Iterator[None]:
    counters.buffer.take()
    yield
    counters.buffer.take()


def stats_url(window: str = "") -> str:
    url = reverse("admin:django_cacheaside_stats")
    return f"{url}?window={window}" if window else url


def purge_url() -> str:
    return reverse("admin:django_cacheaside_purge")


def staff(*perms: str) -> User:
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def logged_in(user: User, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def workload() -> list[int]:
    """testapp.Article: 2 hits, 3 misses (a hit rate of 40%); answers the articles' pks."""
    first, second, third = ArticleFactory.create_batch(3)
    for _ in range(3):
        Article.cached.get(pk=first.pk)  # miss + fill, hit, hit
    Article.cached.get(pk=second.pk)  # miss + fill
    Article.cached.get(pk=third.pk)  # miss + fill
    return [first.pk, second.pk, third.pk]


def article_row(html: str) -> str:
    match = re.search(r'<tr data-model="testapp\.Article".*?</tr>', html, re.DOTALL)
    assert match, "no testapp.Article row"
    return match.group(0)


def cell(row: str, column: str) -> str:
    match = re.search(rf'data-col="{column}">([^<]*)<', row)
    assert match, f"no {column} cell"
    return match.group(1).strip()


# -- permissions -------------------------------------------------------------------------------


def test_the_page_is_linked_from_the_admin_index(admin_client: Client) -> None:
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert "Cache statistics" in html
    assert f'href="{stats_url()}"' in html
    assert reverse("admin:django_cacheaside_statistics_changelist") == stats_url()


def test_anonymous_is_sent_to_the_login_page(client: Client) -> None:
    response = client.get(stats_url())
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    response = client.post(purge_url(), {"model": "testapp.Article", "confirm": "yes"})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_staff_without_the_view_permission_is_refused() -> None:
    client = logged_in(staff())
    assert client.get(stats_url()).status_code == 403
    assert client.post(purge_url(), {"model": "testapp.Article"}).status_code == 403


def test_view_permission_reads_but_does_not_purge() -> None:
    ArticleFactory.create()
    pk = Article.objects.get().pk
    Article.cached.get(pk=pk)  # fills
    client = logged_in(staff("view_statistics"))
    response = client.get(stats_url())
    assert response.status_code == 200
    assert b"ca-purge-model" not in response.content  # no purge forms offered
    response = client.post(purge_url(), {"model": "testapp.Article", "confirm": "yes"})
    assert response.status_code == 403
    assert stats.snapshot(3600, ["testapp.Article"]).models[0].invalidations["model"] == 0
    Article.cached.get(pk=pk)
    assert stats.snapshot(3600, ["testapp.Article"]).models[0]["hits"] == 1  # still cached


def test_purge_permission_with_view_purges() -> None:
    client = logged_in(staff("view_statistics", "purge_cache"))
    response = client.post(purge_url(), {"model": "testapp.Article", "confirm": "yes"})
    assert response.status_code == 302


def test_superuser_reads_and_purges(admin_client: Client) -> None:
    assert admin_client.get(stats_url()).status_code == 200
    response = admin_client.post(purge_url(), {"model": "testapp.Article", "confirm": "yes"})
    assert response.status_code == 302
    assert response["Location"] == stats_url("1h")


def test_purge_is_post_only(admin_client: Client) -> None:
    response = admin_client.get(purge_url(), {"model": "testapp.Article", "confirm": "yes"})
    assert response.status_code == 405


def test_purge_without_a_csrf_token_is_refused(admin_user: User) -> None:
    client = logged_in(admin_user, enforce_csrf_checks=True)
    response = client.post(purge_url(), {"model": "testapp.Article", "confirm": "yes"})
    assert response.status_code == 403
    assert stats.snapshot(3600, ["testapp.Article"]).models == []  # nothing invalidated
    # With the token of the page's form, it goes through.
    page = client.get(stats_url()).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token
    data = {"model": "testapp.Article", "confirm": "yes", "csrfmiddlewaretoken": token.group(1)}
    assert client.post(purge_url(), data).status_code == 302


# -- what it shows -----------------------------------------------------------------------------


def test_the_numbers_of_a_workload_are_on_the_page(admin_client: Client) -> None:
    workload()
    response = admin_client.get(stats_url("15m"))
    assert response.status_code == 200
    html = response.content.decode()
    row = article_row(html)
    assert f'data-schema="{Article.cached.schema}"' in row
    assert (cell(row, "reads"), cell(row, "hit_rate"), cell(row, "misses")) == ("5", "40.0%", "3")
    assert (cell(row, "fills"), cell(row, "locks"), cell(row, "errors")) == ("3", "0/0", "0")
    assert cell(row, "invalidations") == "3 (save 3)"
    assert cell(row, "memory").startswith("~")
    assert "last 15m" in html
    # The chart: one line for the model, its one minute at 40%.
    assert re.search(r'<polyline data-model="testapp\.Article" points="[\d.]+,[\d.]+"', html)
    assert "last minute with reads: 40.0%" in html
    # Redis's figures and its warnings.
    assert 'data-figure="used_memory"' in html and 'data-figure="evicted_keys"' in html
    # A table per primary on a Redis Cluster (CACHEASIDE_TEST_CLUSTER) only.
    assert ('id="ca-redis-nodes"' in html) == get_backend().cluster
    assert ("ca-warnings" in html) or ("No warnings." in html)


def test_warnings_are_shown(admin_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from django_cacheaside.stats import health

    monkeypatch.setattr(health, "health_warnings", lambda h: ["maxmemory is not set: test."])
    html = admin_client.get(stats_url()).content.decode()
    assert "Warning: maxmemory is not set: test." in html


def test_idle_models_are_listed_on_request(admin_client: Client) -> None:
    workload()
    html = admin_client.get(stats_url()).content.decode()
    assert 'data-model="testapp.Article"' in html
    assert 'data-model="testapp.Token"' not in html and 'id="ca-idle"' in html
    html = admin_client.get(stats_url() + "?all=1").content.decode()
    assert 'data-model="testapp.Token"' in html and 'id="ca-idle"' not in html


def test_unknown_windows_fall_back_to_an_hour(admin_client: Client) -> None:
    html = admin_client.get(stats_url("2y")).content.decode()
    assert "last 1h" in html
    assert "last 24h" in admin_client.get(stats_url("24h")).content.decode()


def test_unreachable_redis_still_renders(admin_client: Client, settings: Any) -> None:
    # ERROR_LOG_INTERVAL 0: the failures logged here hold back no later test's log of its own.
    settings.CACHEASIDE = {**settings.CACHEASIDE, "REDIS": UNREACHABLE, "ERROR_LOG_INTERVAL": 0}
    response = admin_client.get(stats_url())
    assert response.status_code == 200
    assert b'id="ca-error"' in response.content
    assert b"did not answer" in response.content


def test_the_chart_draws_each_minute_with_reads() -> None:
    now = 1_000_000 * 60.0
    row = ModelStats("testapp.Article", "x", series={1_000_000: (3, 1), 999_990: (0, 2)})
    drawn = chart([row, ModelStats("testapp.Org", "y")], 900, now=now)
    (series,) = drawn["series"]
    points = [tuple(map(float, p.split(","))) for p in series.points.split()]
    assert len(points) == 2
    (x0, y0), (x1, y1) = points
    assert x0 < x1 and y0 > y1  # 0% lower than 75%, earlier minute to the left
    assert series.latest == "75.0%"


# -- purging -----------------------------------------------------------------------------------


def test_purge_asks_first_then_drops_the_model_and_counts_it(
    admin_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    pks = workload()
    response = admin_client.post(purge_url(), {"model": "testapp.article", "window": "15m"})
    assert response.status_code == 200  # the confirmation page; nothing purged yet
    assert b'id="ca-confirm"' in response.content and b"model testapp.Article" in response.content
    assert stats.snapshot(3600, ["testapp.Article"]).models[0].invalidations["model"] == 0
    with caplog.at_level(logging.INFO, logger="django_cacheaside.admin"):
        response = admin_client.post(
            purge_url(),
            {"model": "testapp.Article", "window": "15m", "confirm": "yes"},
            follow=True,
        )
    assert response.redirect_chain == [(stats_url("15m"), 302)]
    html = response.content.decode()
    assert "Purged model testapp.Article: 3 cached entries dropped." in html
    assert "admin purged the cached entries of model testapp.Article (3 keys)" in caplog.text
    (row,) = stats.snapshot(3600, ["testapp.Article"]).models
    assert row.invalidations["model"] == 1
    assert cell(article_row(html), "invalidations") == "4 (save 3, model 1)"
    hits = row["hits"]
    for pk in pks:
        Article.cached.get(pk=pk)  # misses: the entries are gone
    (row,) = stats.snapshot(3600, ["testapp.Article"]).models
    assert row["hits"] == hits and row["misses"] == 6


def test_purge_a_tag(admin_client: Client, caplog: pytest.LogCaptureFixture) -> None:
    label = Label.objects.create(name="red")
    Label.cached.get(pk=label.pk)  # miss + fill, under the tags "labels" and "label:red"
    Label.cached.get(pk=label.pk)  # hit
    with caplog.at_level(logging.INFO, logger="django_cacheaside.admin"):
        response = admin_client.post(purge_url(), {"tag": "labels", "confirm": "yes"}, follow=True)
    assert "Purged tag &#x27;labels&#x27;: 1 cached entries dropped." in response.content.decode()
    assert "purged the cached entries of tag 'labels'" in caplog.text
    (row,) = stats.snapshot(3600, ["testapp.Label"]).models
    assert row.invalidations["tag"] == 1
    Label.cached.get(pk=label.pk)
    (row,) = stats.snapshot(3600, ["testapp.Label"]).models
    assert (row["hits"], row["misses"]) == (1, 2)


def test_purge_refuses_what_it_cannot_purge(admin_client: Client) -> None:
    for data in ({"model": "testapp.Uncached"}, {}, {"model": "testapp.Article", "tag": "x"}):
        response = admin_client.post(purge_url(), {**data, "confirm": "yes"}, follow=True)
        assert response.status_code == 200
        assert b'class="error"' in response.content
    for row in stats.snapshot(3600).models:  # the admin's logins save auth.User, nothing else
        assert (row.invalidations["model"], row.invalidations["tag"]) == (0, 0)


def test_a_purge_redis_refuses_is_an_error(
    admin_client: Client, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.CACHEASIDE = {**settings.CACHEASIDE, "REDIS": UNREACHABLE, "ERROR_LOG_INTERVAL": 0}
    with caplog.at_level(logging.INFO, logger="django_cacheaside.admin"):
        response = admin_client.post(
            purge_url(), {"model": "testapp.Article", "confirm": "yes"}, follow=True
        )
    assert response.status_code == 200
    assert "Could not purge model testapp.Article: Redis failed" in response.content.decode()
    assert "could not purge model testapp.Article" in caplog.text
    assert "purged the cached entries" not in caplog.text


# -- in a real browser -------------------------------------------------------------------------


def test_in_a_browser(live_server: Any, django_user_model: type[User]) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian package 'chromium')")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    django_user_model.objects.create_superuser("boss", "boss@example.com", "s3cret-pw")
    pks = workload()
    ARTIFACTS.mkdir(exist_ok=True)
    # The ORM is not used while Playwright runs (its sync API keeps an event loop in this thread).
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{live_server.url}{stats_url('15m')}")
            assert "/login/" in page.url  # not logged in yet
            page.fill("#id_username", "boss")
            page.fill("#id_password", "s3cret-pw")
            page.click("input[type=submit]")
            page.wait_for_selector("#ca-models")
            row = page.locator('tr[data-model="testapp.Article"]')
            assert row.locator('[data-col="reads"]').inner_text() == "5"
            assert row.locator('[data-col="hit_rate"]').inner_text() == "40.0%"
            assert row.locator('[data-col="misses"]').inner_text() == "3"
            assert page.locator('#ca-chart polyline[data-model="testapp.Article"]').count() == 1
            page.select_option("#ca-model", "testapp.Article")
            page.click("#ca-purge-model input[type=submit]")
            page.wait_for_selector("#ca-confirm")
            assert page.inner_text("#ca-purge-what") == "model testapp.Article"
            page.click("#ca-confirm input[type=submit]")
            page.wait_for_selector("ul.messagelist")
            assert "Purged model testapp.Article: 3 cached entries dropped." in page.inner_text(
                "ul.messagelist"
            )
            assert "model 1" in row.locator('[data-col="invalidations"]').inner_text()
            page.screenshot(path=str(ARTIFACTS / "admin-stats.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "admin-stats.png").stat().st_size > 0
    (counted,) = stats.snapshot(900, ["testapp.Article"]).models
    assert counted.invalidations["model"] == 1
    for pk in pks:
        Article.cached.get(pk=pk)
    (counted,) = stats.snapshot(900, ["testapp.Article"]).models
    assert counted["misses"] == 6
