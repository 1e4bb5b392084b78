"""The admin writes through the ORM, so its saves and deletes invalidate the cache like any other."""

from __future__ import annotations

from django.contrib import admin

from saas.models import Article, Dashboard, Organisation, Profile


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    list_display = ("name", "slug")
    search_fields = ("name",)


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
