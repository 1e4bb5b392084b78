"""The app's only model: :class:`Statistics`, which owns no table.

It exists so that the Django admin lists a "Cache statistics" page under the app, and so that Django
creates the permissions guarding it: ``view_statistics`` to read it, ``purge_cache`` to purge cached
entries from it (``django_cacheaside.admin``).
"""

from __future__ import annotations

from typing import ClassVar

from django.db import models


class Statistics(models.Model):
    """No rows, no table (``managed = False``): a permission holder and an admin entry."""

    class Meta:
        managed = False
        db_table = "django_cacheaside_statistics"
        default_permissions = ("view",)
        permissions: ClassVar = [("purge_cache", "Can purge cached entries")]
        verbose_name = "Cache statistics"
        verbose_name_plural = "Cache statistics"

    def __str__(self) -> str:
        return "Cache statistics"
