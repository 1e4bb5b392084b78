"""Which manager the views read with: ``Model.cached``, or ``Model.objects`` with the cache off.

``settings.READ_THROUGH_CACHE`` is the switch (``EXAMPLE_CACHE=off`` in the environment turns it
off; ``manage.py load`` flips it between its two runs). The views make the same calls either way:
``get()``, ``filter().order_by()[:n]`` and ``get_many(pks)`` (``in_bulk()`` on the ORM), so "off"
does the same work against the database alone. Writes are not switched: a save invalidates its
entries whether or not the pages read them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from django.conf import settings
from django.db.models import Model

from django_cacheaside import CacheAsideManager

M = TypeVar("M", bound=Model)


def cache_on() -> bool:
    """Whether the pages read through the cache (read on every call: tests and the load flip it)."""
    return bool(getattr(settings, "READ_THROUGH_CACHE", True))


def manager(model: type[M]) -> Any:
    """``model.cached`` when the cache is on, else the model's default manager (``objects``)."""
    if cache_on():
        cached: CacheAsideManager[M] = model.cached  # type: ignore[attr-defined]
        return cached
    return model._default_manager


def get_many(model: type[M], pks: Iterable[Any]) -> dict[Any, M]:
    """``{pk: obj}`` of those pks that exist: ``cached.get_many()``, or the ORM's ``in_bulk()``."""
    pks = list(pks)
    if cache_on():
        cached: CacheAsideManager[M] = model.cached  # type: ignore[attr-defined]
        return cached.get_many(pks)
    return model._default_manager.in_bulk(pks)
