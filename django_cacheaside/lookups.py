"""Which ``get()`` lookups can be cached, and their normal form. Pure model metadata, no I/O.

A lookup is cacheable when its fields are exactly the primary key, one unique field, or one
``unique_together`` / unconditional ``UniqueConstraint`` set. ``pk``, ``id``, ``name`` and
``name_id`` of a foreign key, ``__exact`` suffixes and model instances as foreign-key values are all
accepted and normalised, so ``get(pk="1")`` and ``get(id=1)`` share one entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from django.core.exceptions import ValidationError
from django.db import models


class Lookup(NamedTuple):
    """A normalised cacheable lookup: ``items`` are ``(attname, value)`` pairs, sorted."""

    items: tuple[tuple[str, Any], ...]
    is_pk: bool

    def as_filter(self) -> dict[str, Any]:
        return dict(self.items)


def _unique_sets(meta: Any) -> list[tuple[models.Field[Any, Any], ...]]:
    by_name = {f.name: f for f in meta.concrete_fields}
    sets: list[tuple[models.Field[Any, Any], ...]] = [(meta.pk,)]
    sets += [(f,) for f in meta.concrete_fields if f.unique and not f.primary_key]
    for names in meta.unique_together:
        sets.append(tuple(by_name[n] for n in names))
    for constraint in meta.total_unique_constraints:
        sets.append(tuple(by_name[n] for n in constraint.fields))
    return sets


class LookupResolver:
    def __init__(self, model: type[models.Model]) -> None:
        meta = model._meta
        self.model = model
        self.pk_attname: str = meta.pk.attname
        self._pk_field = meta.pk
        pk: Any = meta.pk
        pk_target = pk.target_field if pk.is_relation else pk
        # An int needs no to_python() for an integer pk: the common case, on every hit.
        self._int_pk = isinstance(pk_target, models.IntegerField)
        self._sets = {frozenset(f.attname for f in fields): fields for fields in _unique_sets(meta)}
        self._fields: dict[str, models.Field[Any, Any]] = {}
        for field in meta.concrete_fields:
            for alias in {field.name, field.attname}:
                self._fields[alias] = field
                self._fields[f"{alias}__exact"] = field
        self._fields["pk"] = self._fields["pk__exact"] = meta.pk

    def instance_lookups(self, obj: models.Model) -> list[Lookup]:
        """The unique (non-pk) lookups that would find ``obj`` now, skipping sets with a None and
        sets with a deferred field (loading it would cost a query; a save did not write it)."""
        result = []
        deferred = obj.get_deferred_fields()
        for fields in self._sets.values():
            if fields == (self._pk_field,):
                continue
            if deferred and any(f.attname in deferred for f in fields):
                continue
            values = [getattr(obj, f.attname) for f in fields]
            if any(v is None for v in values):
                continue
            try:
                items = tuple(
                    sorted(
                        (f.attname, self._normalise(f, v, f.name))
                        for f, v in zip(fields, values, strict=True)
                    )
                )
            except ValueError:
                continue  # a value the lookup could never be written with: nothing to clear
            result.append(Lookup(items, False))
        return result

    def describe(self) -> str:
        names = []
        for fields in self._sets.values():
            text = ", ".join(f.name for f in fields)
            names.append(f"({text})" if len(fields) > 1 else text)
        names[0] = "pk"
        return "; ".join(names)

    def _reject(self, why: str) -> ValueError:
        label = self.model._meta.label
        return ValueError(
            f"{label}.cached.get() {why}. Cacheable lookups are exact matches on one of: "
            f"{self.describe()}. Use the model's default manager for anything else."
        )

    def normalise_pk(self, value: Any) -> Any:
        if self._int_pk and type(value) is int:
            return value
        return self._normalise(self._pk_field, value, "pk")

    def _normalise(self, field: models.Field[Any, Any], value: Any, name: str) -> Any:
        if value is None:
            raise self._reject(f"got None for {name!r}")
        target = field
        if field.many_to_one or field.one_to_one:
            target = field.target_field  # type: ignore[attr-defined]
            if isinstance(value, models.Model):
                if not isinstance(value, field.related_model):  # type: ignore[arg-type]
                    raise self._reject(f"got a {type(value).__name__} for {name!r}")
                value = getattr(value, target.attname)
                if value is None:
                    raise self._reject(f"got an unsaved instance for {name!r}")
        try:
            return target.to_python(value)
        except ValidationError as exc:
            raise ValueError(
                f"Field {name!r} of {self.model._meta.label}: {exc.messages[0]}"
            ) from exc

    def resolve(self, lookups: Mapping[str, Any]) -> Lookup:
        if not lookups:
            raise self._reject("needs a lookup")
        items: dict[str, Any] = {}
        for name, value in lookups.items():
            field = self._fields.get(name)
            if field is None:
                raise self._reject(f"cannot use {name!r}")
            if field.attname in items:
                raise self._reject(f"got {field.name!r} twice")
            items[field.attname] = self._normalise(field, value, name)
        if frozenset(items) not in self._sets:
            raise self._reject(f"cannot use the combination {', '.join(sorted(lookups))}")
        is_pk = len(items) == 1 and self.pk_attname in items
        return Lookup(tuple(sorted(items.items())), is_pk)
