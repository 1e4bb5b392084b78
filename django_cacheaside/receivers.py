"""Signal receivers: every ORM save or delete of a cached row invalidates its entries."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.signals import post_delete, post_save

from django_cacheaside import registry
from django_cacheaside.invalidation import invalidate_instance


def on_save(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    invalidate_instance(instance, using, "save")


def on_delete(
    sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any
) -> None:
    invalidate_instance(instance, using, "delete")


def connect_all() -> None:
    """Connect the receivers for every model whose writes touch a cached row (idempotent)."""
    for model in registry.models_to_watch():
        label = model._meta.label_lower
        post_save.connect(on_save, sender=model, dispatch_uid=f"cacheaside.save.{label}")
        post_delete.connect(on_delete, sender=model, dispatch_uid=f"cacheaside.delete.{label}")
