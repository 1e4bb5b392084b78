"""Pages that read through ``Model.cached`` (or ``Model.objects`` with the cache off: ``saas.reads``).

``cached.get()`` takes exact lookups on the pk or a unique field (set); a list is
``cached.filter(...).order_by(...)[:n]``, which caches the pks of the query and builds each object
from its own entry (docs/querysets.md).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from saas import reads
from saas.models import Article, Dashboard, Organisation, Profile

ARTICLES_PER_PAGE = 20
MEMBERS_PER_PAGE = 24


class ArticleTitleForm(forms.Form):
    title = forms.CharField(max_length=200, strip=True)


def _org_or_404(slug: str) -> Organisation:
    try:
        org: Organisation = reads.manager(Organisation).get(slug=slug)
    except Organisation.DoesNotExist:
        raise Http404("No such organisation.") from None
    return org


def _article_or_404(org: Organisation, slug: str) -> Article:
    try:
        article: Article = reads.manager(Article).get(org=org, slug=slug)
    except Article.DoesNotExist:
        raise Http404("No such article.") from None
    return article


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    orgs = list(reads.manager(Organisation).order_by("name"))
    return render(request, "saas/home.html", {"orgs": orgs})


@require_GET
def organisation(request: HttpRequest, org_slug: str) -> HttpResponse:
    org = _org_or_404(org_slug)
    try:
        dashboard: Dashboard | None = reads.manager(Dashboard).get(org=org)
    except Dashboard.DoesNotExist:
        dashboard = None
    # Cached queries: the pks of each list are cached, and invalidated when a write could change
    # which rows match or their order; the rows come from their own entries.
    articles = list(
        reads.manager(Article).filter(org=org).order_by("-published_at", "pk")[:ARTICLES_PER_PAGE]
    )
    profiles = list(reads.manager(Profile).filter(org=org).order_by("pk")[:MEMBERS_PER_PAGE])
    users = reads.get_many(User, (p.user_id for p in profiles))
    members = [(p, users[p.user_id]) for p in profiles if p.user_id in users]
    context = {"org": org, "dashboard": dashboard, "articles": articles, "members": members}
    return render(request, "saas/organisation.html", context)


@require_GET
def profile(request: HttpRequest, username: str) -> HttpResponse:
    try:
        user = reads.manager(User).get(username=username)
        member = reads.manager(Profile).get(user=user)
    except (User.DoesNotExist, Profile.DoesNotExist):
        raise Http404("No such member.") from None
    org = reads.manager(Organisation).get(pk=member.org_id)
    return render(request, "saas/profile.html", {"member": member, "person": user, "org": org})


def _article_page(
    request: HttpRequest, org: Organisation, article: Article, form: ArticleTitleForm, status: int
) -> HttpResponse:
    context: dict[str, Any] = {"org": org, "article": article, "form": form}
    return render(request, "saas/article.html", context, status=status)


@require_GET
def article(request: HttpRequest, org_slug: str, slug: str) -> HttpResponse:
    org = _org_or_404(org_slug)
    obj = _article_or_404(org, slug)
    return _article_page(request, org, obj, ArticleTitleForm(initial={"title": obj.title}), 200)


@require_POST
def article_edit(request: HttpRequest, org_slug: str, slug: str) -> HttpResponse:
    """Change the title, then redirect: the next read (a cache miss) shows the new title."""
    org = _org_or_404(org_slug)
    obj = _article_or_404(org, slug)
    form = ArticleTitleForm(request.POST)
    if not form.is_valid():
        return _article_page(request, org, obj, form, 400)
    obj.title = form.cleaned_data["title"]
    obj.save(update_fields=["title"])  # post_save drops the cached entry once this commits
    messages.success(request, "Title saved. Its cache entry was invalidated: this read was fresh.")
    return HttpResponseRedirect(reverse("article", args=[org.slug, obj.slug]))


async def dashboard_json(request: HttpRequest, org_slug: str) -> JsonResponse:
    """An async view: an organisation's hot dashboard row as JSON, read with ``aget``.

    Under an ASGI server (``example/asgi.py``) the hit's Redis read runs on the event loop; a miss
    loads in a worker thread, once for all the requests missing it at the same moment.
    """
    if request.method != "GET":
        return JsonResponse({"error": "GET only"}, status=405)
    try:
        org = await Organisation.cached.aget(slug=org_slug)
        dashboard = await Dashboard.cached.aget(org=org)
    except (Organisation.DoesNotExist, Dashboard.DoesNotExist):
        return JsonResponse({"error": "no such organisation"}, status=404)
    return JsonResponse(
        {
            "organisation": org.name,
            "articles": dashboard.article_count,
            "members": dashboard.member_count,
            "updated_at": dashboard.updated_at.isoformat(),
        }
    )
