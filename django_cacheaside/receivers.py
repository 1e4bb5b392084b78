"""Signal receivers: every ORM save or delete of a cached row invalidates its entries.

Bulk writes that send no signal (``QuerySet.update``, ``bulk_create``, ``bulk_update``) are caught
in :mod:`django_cacheaside.writes`; m2m changes need nothing: entries hold a row's own columns and
cached queries never span relations, and a cached through model's rows are written by
``bulk_create`` and deleted with signals.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import models
from django.db.models.signals import post_delete, post_save

from django_cacheaside import registry
from django_cacheaside.invalidation import attnames, invalidate_instance


def on_save(
    sender: type[models.Model],
    instance: models.Model,
    using: str,
    created: bool = False,
    update_fields: Iterable[str] | None = None,
    **kwargs: Any,
) -> None:
    # A save that names its fields changes only those; any other may change every column.
    fields = None if created or update_fields is None else attnames(sender, update_fields)
    invalidate_instance(instance, using, "save", fields)


def on_delete(
    sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any
) -> None:
    invalidate_instance(instance, using, "delete")


def connect_all(also: Iterable[type[models.Model]] = ()) -> None:
    """Connect the receivers for every model whose writes touch a cached row (idempotent), and
    for the cached models in ``also`` (models the app registry does not list)."""
    for model in [*registry.models_to_watch(), *(m for m in also if registry.family(m))]:
        label = model._meta.label_lower
        post_save.connect(on_save, sender=model, dispatch_uid=f"cacheaside.save.{label}")
        post_delete.connect(on_delete, sender=model, dispatch_uid=f"cacheaside.delete.{label}")
