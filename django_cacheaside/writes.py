"""Bulk writes that send no signal: ``QuerySet.update()``, ``bulk_create()``, ``bulk_update()``.

Django sends ``post_save``/``post_delete`` for saves and deletes (``QuerySet.delete()`` included:
a model with receivers is never fast-deleted), but nothing for these three. The app wraps them on
``QuerySet`` itself, once, when it is ready, so that every manager, related manager
(``org.articles.update(...)``) and third-party model is covered without changing any of them. For
models that are not cached the wrapper costs one dictionary lookup.

* ``update(**values)`` reads the pks it is about to change, then updates exactly those rows
  (``pk__in``, 500 at a time, in one transaction) so that no row changes without being
  invalidated, even one that starts matching the filter meanwhile.
* ``bulk_update(objs, fields)`` and ``bulk_create(objs)`` invalidate the rows they wrote (for
  ``bulk_create``, the negative entries of the new pks and unique values). When the database does
  not return the new pks (``ignore_conflicts``, some backends), every entry of the model is dropped
  (``invalidate_model``).

Each runs inside ``atomic()``, so its invalidations happen at the write and again at commit, like
a save's. Writes naming their fields (``update``, ``bulk_update``) keep the cached query results
that do not depend on them.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import models, transaction
from django.db.models.query import QuerySet

from django_cacheaside import registry
from django_cacheaside.invalidation import attnames, invalidate_model, invalidate_rows

CHUNK = 500

_original: dict[str, Any] = {}
# Set while bulk_update runs: its internal update() calls are invalidated by bulk_update itself.
_inside_bulk_update = contextvars.ContextVar("cacheaside_inside_bulk_update", default=False)


def _unique_attnames(model: type[models.Model]) -> set[str]:
    names: set[str] = set()
    for member in registry.family(model):
        manager = registry.manager_for(member)
        assert manager is not None
        names.update(name for fields in manager._resolver._sets for name in fields)
    return names


def _write_db(queryset: QuerySet[Any]) -> str:
    """The database the write goes to, as Django's own write methods choose it."""
    queryset._for_write = True  # type: ignore[attr-defined]
    return queryset.db


def update(self: QuerySet[Any], **values: Any) -> int:
    model = self.model
    if not registry.family(model) or _inside_bulk_update.get() or self.query.is_sliced:
        return int(_original["update"](self, **values))
    db = _write_db(self)
    manager = registry.manager_for(model)
    spec = manager._tags if manager is not None else None
    # Field tags are read with the pks: the invalidated rows leave the tag sets they were in.
    tag_fields = spec.fields(model) if spec is not None and spec.by_fields else []
    with transaction.atomic(using=db, savepoint=False):
        found = list(self.values_list("pk", *(attname for _name, attname in tag_fields)))
        pks = [row[0] for row in found]
        tags = {
            row[0]: [
                f"{name}:{v}"
                for (name, _a), v in zip(tag_fields, row[1:], strict=True)
                if v is not None
            ]
            for row in found
        }
        rows = 0
        if not pks:
            rows = _original["update"](self.filter(pk__in=[]), **values)  # validates ``values``
        for start in range(0, len(pks), CHUNK):
            rows += _original["update"](self.filter(pk__in=pks[start : start + CHUNK]), **values)
        fields = attnames(model, values)
        instances: dict[Any, models.Model] = {}
        if set(fields) & _unique_attnames(model):
            # New unique values may have negative pointers ("does not exist") to clear.
            instances = model._base_manager.using(db).in_bulk(pks)
        invalidate_rows(model, pks, instances, fields, db, "bulk", tags if tag_fields else None)
    return rows


def bulk_update(
    self: QuerySet[Any], objs: Iterable[models.Model], fields: Sequence[str], *args: Any, **kw: Any
) -> int:
    model = self.model
    if not registry.family(model):
        return int(_original["bulk_update"](self, objs, fields, *args, **kw))
    objs = list(objs)
    db = _write_db(self)
    with transaction.atomic(using=db, savepoint=False):
        token = _inside_bulk_update.set(True)
        try:
            rows = int(_original["bulk_update"](self, objs, fields, *args, **kw))
        finally:
            _inside_bulk_update.reset(token)
        by_pk = {obj.pk: obj for obj in objs if obj.pk is not None}
        invalidate_rows(model, list(by_pk), by_pk, attnames(model, fields), db, "bulk")
    return rows


def bulk_create(self: QuerySet[Any], objs: Iterable[models.Model], *args: Any, **kw: Any) -> Any:
    model = self.model
    if not registry.family(model):
        return _original["bulk_create"](self, objs, *args, **kw)
    db = _write_db(self)
    with transaction.atomic(using=db, savepoint=False):
        created = _original["bulk_create"](self, objs, *args, **kw)
        by_pk = {obj.pk: obj for obj in created}
        if None in by_pk:
            invalidate_model(model, using=db)  # pks unknown: their negative entries can't be named
        else:
            invalidate_rows(model, list(by_pk), by_pk, None, db, "bulk")
    return created


def install() -> None:
    """Wrap the three methods on ``QuerySet`` (idempotent)."""
    wrappers: dict[str, Any] = {
        "update": update,
        "bulk_update": bulk_update,
        "bulk_create": bulk_create,
    }
    for name, wrapper in wrappers.items():
        current = QuerySet.__dict__[name]
        if getattr(current, "_cacheaside", False):
            continue
        _original[name] = current
        wrapper.__doc__ = current.__doc__
        wrapper.__wrapped__ = current
        wrapper._cacheaside = True
        setattr(QuerySet, name, wrapper)
