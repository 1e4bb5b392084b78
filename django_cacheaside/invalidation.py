"""Dropping entries: by hand (``invalidate``) and from the receivers.

An invalidation deletes the object's hash (stamp and entry) at once, so other processes stop serving
the old row as early as possible, and, inside ``atomic()``, once more when the transaction commits:
a read that filled the old row in between is undone. See :mod:`django_cacheaside.transactions`.
"""

from __future__ import annotations

from typing import Any

from django.db import models, router

from django_cacheaside import keys, registry, signals, transactions
from django_cacheaside.backend import get_backend


def _deliver(keys: list[str]) -> None:
    get_backend().delete(keys)


def keys_for(model: type[models.Model], pk: Any, instance: models.Model | None = None) -> list[str]:
    """The keys a write to the row ``pk`` of ``model`` makes stale.

    The object key of every cached model sharing the row (proxies, multi-table parents and
    children), and for each of them that ``instance`` carries the fields of, the unique-lookup
    pointers for its current values, so a negative ("does not exist") pointer is cleared when a row
    with those values appears. Pointers for old values need no deleting: a pointer is checked
    against the object's own entry before it is trusted.
    """
    result: list[str] = []
    for member in registry.family(model):
        manager = registry.manager_for(member)
        assert manager is not None
        resolver = manager._resolver
        pk_value = resolver.normalise_pk(pk)
        result.append(manager.key_for_pk(pk_value))
        if instance is None or not isinstance(instance, member._meta.concrete_model):  # type: ignore[arg-type]
            continue
        for lookup in resolver.instance_lookups(instance):
            result.append(manager.key_for_lookup(lookup))
    return result


def invalidate_keys(model: type[models.Model], stale: list[str], using: str, cause: str) -> None:
    """Delete ``stale`` keys now and, inside a transaction on ``using``, again when it commits."""
    if not stale:
        return
    get_backend().delete(stale)
    labels = [keys.model_label(member) for member in registry.family(model)]
    transactions.queue(using, labels, stale, _deliver)
    signals.cache_invalidate.send(sender=model, keys=stale, cause=cause)


def invalidate_instance(instance: models.Model, using: str, cause: str) -> None:
    model = type(instance)
    if instance.pk is None:
        return
    invalidate_keys(model, keys_for(model, instance.pk, instance), using, cause)


def invalidate(obj: models.Model | type[models.Model], *, pk: Any = None) -> None:
    """Drop the cached entries of one object: ``invalidate(article)`` or ``invalidate(Article, pk=1)``.

    Saves and deletes through the ORM already do this; call it after writes Django cannot see (raw
    SQL, another program writing the table).
    """
    if isinstance(obj, models.Model):
        if pk is not None:
            raise TypeError("invalidate(instance) takes no pk; use invalidate(Model, pk=...).")
        if not registry.family(type(obj)):
            raise ValueError(f"{type(obj).__name__} is not cached by django-cacheaside.")
        invalidate_instance(obj, obj._state.db or router.db_for_write(type(obj)), "manual")
        return
    if not (isinstance(obj, type) and issubclass(obj, models.Model)):
        raise TypeError(f"invalidate() takes a model instance or a model class, not {obj!r}.")
    if pk is None:
        raise TypeError("invalidate(Model) needs pk=...")
    if not registry.family(obj):
        raise ValueError(f"{obj.__name__} is not cached by django-cacheaside.")
    invalidate_keys(obj, keys_for(obj, pk), router.db_for_write(obj), "manual")
