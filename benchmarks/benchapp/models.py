"""Benchmark models. Table names carry the run's prefix (``settings.BENCH_TABLE_PREFIX``, e.g.
``bench_1a2b3c4d``), so concurrent runs never share tables; ``run.py`` creates them with the schema
editor (no migrations, no ``django_migrations`` rows) and drops them when it ends.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from django_cacheaside import CacheAsideManager

TABLE_PREFIX: str = getattr(settings, "BENCH_TABLE_PREFIX", "bench")


class Owner(models.Model):
    name = models.CharField(max_length=100)

    objects = models.Manager()

    class Meta:
        db_table = f"{TABLE_PREFIX}_owner"

    def __str__(self) -> str:
        return self.name


class RowColumns(models.Model):
    """Eleven typical columns: id, two chars, ~500 bytes of text, two ints, a datetime, a decimal, a
    bool, a foreign key id and a UUID."""

    title = models.CharField(max_length=200)
    slug = models.CharField(max_length=100)
    body = models.TextField()
    views = models.IntegerField(default=0)
    rank = models.SmallIntegerField(default=0)
    created = models.DateTimeField()
    price = models.DecimalField(max_digits=10, decimal_places=2)
    active = models.BooleanField(default=True)
    owner = models.ForeignKey(Owner, on_delete=models.CASCADE, related_name="+")
    uid = models.UUIDField()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.title


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
