"""The admin writes through the ORM, so its saves and deletes invalidate the cache like any other.

"Cache statistics" (django_cacheaside's own admin page) is listed under the app; the organisation
list adds an action that purges the selected organisations' cached articles by tag.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from django_cacheaside import invalidate_tags
from saas.models import Article, Dashboard, Organisation, Profile


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    list_display = ("name", "slug")
    search_fields = ("name",)
    actions = ("purge_cached_articles",)

    def has_purge_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("django_cacheaside.purge_cache")  # as the stats page's purge

    @admin.action(
        description="Purge the cached articles of the selected organisations",
        permissions=["purge"],
    )
    def purge_cached_articles(self, request: HttpRequest, queryset: QuerySet[Organisation]) -> None:
        """For writes the ORM did not see (an import, raw SQL): one call per batch of tenants. The
        purge also drops the cached article lists, so the next page view reads them again."""
        orgs = list(queryset)
        deleted = invalidate_tags(*(org.articles_tag for org in orgs))
        names = ", ".join(org.name for org in orgs)
        self.message_user(
            request,
            f"Purged {deleted} cached article entr{'y' if deleted == 1 else 'ies'} of {names}.",
            messages.SUCCESS,
        )


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ("display_name", "user", "org")
    list_filter = ("org",)
    list_select_related = ("user", "org")
    search_fields = ("display_name", "user__username")
    raw_id_fields = ("user",)


@admin.register(Article)
class ArticleAdmin(admin.ModelAdmin):
    list_display = ("title", "org", "slug", "published_at")
    list_filter = ("org",)
    list_select_related = ("org",)
    search_fields = ("title", "slug")
    date_hierarchy = "published_at"


@admin.register(Dashboard)
class DashboardAdmin(admin.ModelAdmin):
    list_display = ("org", "article_count", "member_count", "updated_at")
    list_select_related = ("org",)
