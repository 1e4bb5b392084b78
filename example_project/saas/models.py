"""A tiny multi-tenant app: organisations, their members' profiles, articles and a hot dashboard.

Every model keeps Django's ``objects`` as its default manager and adds ``cached``, a
``CacheAsideManager`` whose ``get()`` / ``get_many()`` / ``filter()`` read through Redis.
``auth.User`` gets its ``User.cached`` from ``register()`` in ``SaasConfig.ready()``. Articles are
tagged by organisation, so ``invalidate_tags(org.articles_tag)`` drops all of one tenant's articles.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from django_cacheaside import CacheAsideManager


class Organisation(models.Model):
    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)

    objects = models.Manager()
    cached: CacheAsideManager[Organisation] = CacheAsideManager(ttl=600)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("organisation", args=[self.slug])

    @property
    def articles_tag(self) -> str:
        """The tag of this organisation's cached articles (``Article.cached``'s ``tags=("org",)``)."""
        return f"org:{self.pk}"


class Profile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    org = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="profiles")
    display_name = models.CharField(max_length=150)
    bio = models.TextField(blank=True)

    objects = models.Manager()
    cached: CacheAsideManager[Profile] = CacheAsideManager(ttl=300)

    def __str__(self) -> str:
        return self.display_name


class Article(models.Model):
    org = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="articles")
    slug = models.SlugField(max_length=100)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    published_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = models.Manager()
    # TTL from settings.CACHEASIDE; each entry is tagged "org:<org_id>" (Organisation.articles_tag).
    cached: CacheAsideManager[Article] = CacheAsideManager(tags=("org",))

    class Meta:
        unique_together = (("org", "slug"),)

    def __str__(self) -> str:
        return self.title


class Dashboard(models.Model):
    """One hot row per organisation, read on every organisation page: the stampede candidate."""

    org = models.OneToOneField(Organisation, on_delete=models.CASCADE, related_name="dashboard")
    article_count = models.PositiveIntegerField(default=0)
    member_count = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = models.Manager()
    cached: CacheAsideManager[Dashboard] = CacheAsideManager(ttl=30)

    def __str__(self) -> str:
        return f"Dashboard of organisation #{self.org_id}"
