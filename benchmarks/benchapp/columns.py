"""The benchmark models' columns, in a module that imports nothing of django_cacheaside, so that the
comparison processes (``peerapp``, without the library installed) build the very same tables.

``"Owner"`` is resolved in the app of each concrete model (``benchapp.Owner``, ``peerapp.Owner``).
"""

from __future__ import annotations

from django.db import models


class OwnerColumns(models.Model):
    name = models.CharField(max_length=100)

    class Meta:
        abstract = True

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
    owner = models.ForeignKey("Owner", on_delete=models.CASCADE, related_name="+")
    uid = models.UUIDField()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.title
