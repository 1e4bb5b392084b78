"""``benchapp``'s models for the comparison processes (``peers.py``): the same columns
(``benchapp.columns``), the same table names under the process's own prefix, and no cache-aside
manager, so django_cacheaside is not even installed there. ``CachedRow`` is the table the compared
library caches, ``PlainRow`` the uncached baseline for reads and ``save()``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from benchapp.columns import OwnerColumns, RowColumns

TABLE_PREFIX: str = getattr(settings, "BENCH_TABLE_PREFIX", "bench")


class Owner(OwnerColumns):
    objects = models.Manager()

    class Meta:
        db_table = f"{TABLE_PREFIX}_owner"


class CachedRow(RowColumns):
    objects = models.Manager()

    class Meta:
        db_table = f"{TABLE_PREFIX}_cachedrow"


class PlainRow(RowColumns):
    objects = models.Manager()

    class Meta:
        db_table = f"{TABLE_PREFIX}_plainrow"
