"""Benchmark models. Table names carry the run's prefix (``settings.BENCH_TABLE_PREFIX``, e.g.
``bench_1a2b3c4d``), so concurrent runs never share tables; ``run.py`` creates them with the schema
editor (no migrations, no ``django_migrations`` rows) and drops them when it ends. The columns are
in ``columns.py``, shared with the comparison processes' ``peerapp``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from benchapp.columns import OwnerColumns, RowColumns
from django_cacheaside import CacheAsideManager

TABLE_PREFIX: str = getattr(settings, "BENCH_TABLE_PREFIX", "bench")


class Owner(OwnerColumns):
    objects = models.Manager()

    class Meta:
        db_table = f"{TABLE_PREFIX}_owner"


class CachedRow(RowColumns):
    objects = models.Manager()
    cached: CacheAsideManager[CachedRow] = CacheAsideManager(ttl=300)

    class Meta:
        db_table = f"{TABLE_PREFIX}_cachedrow"


class PlainRow(RowColumns):
    """The same columns and no cache manager: the baseline for ``save()``."""

    objects = models.Manager()

    class Meta:
        db_table = f"{TABLE_PREFIX}_plainrow"


class TaggedRow(RowColumns):
    """The same columns, every row tagged ``owner:<owner_id>`` (``benchmarks/invalidation.py``)."""

    objects = models.Manager()
    cached: CacheAsideManager[TaggedRow] = CacheAsideManager(ttl=300, tags=("owner",))

    class Meta:
        db_table = f"{TABLE_PREFIX}_taggedrow"
