"""Entry bytes <-> model instances, for one model and one serializer.

Instances are built as ``Model.from_db`` builds them. Where that is provably the same thing, the
codec skips ``Model.__init__`` and fills the instance's ``__dict__`` directly, which is most of the
cost of building it: only for models that keep Django's ``__init__`` and ``from_db``, whose fields
all use Django's own attribute descriptors, and while nobody listens to ``pre_init``/``post_init``
for the model (``ImageField`` dimension fields do, for one).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, Final

from django.db import models
from django.db.models.base import ModelState
from django.db.models.fields.files import FileDescriptor, ImageFileDescriptor
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, pre_init

from django_cacheaside import entries, keys
from django_cacheaside.exceptions import CorruptEntry
from django_cacheaside.serializers.base import BaseSerializer

# What a decoded entry can be besides an instance or a pointer.
NOT_FOUND: Final = object()

# Descriptors whose __set__ on a new instance amounts to writing __dict__ (or that have none).
_PLAIN_DESCRIPTORS = frozenset(
    {DeferredAttribute, ForeignKeyDeferredAttribute, FileDescriptor, ImageFileDescriptor}
)


def _builds_plainly(model: type[models.Model], attnames: tuple[str, ...]) -> bool:
    if model.__init__ is not models.Model.__init__:
        return False
    if model.from_db.__func__ is not models.Model.from_db.__func__:  # type: ignore[attr-defined]
        return False
    for attname in attnames:
        descriptor = next(
            (k.__dict__[attname] for k in model.__mro__ if attname in k.__dict__), None
        )
        if type(descriptor) not in _PLAIN_DESCRIPTORS:
            return False
    return True


class Codec:
    def __init__(self, model: type[models.Model], serializer: BaseSerializer) -> None:
        self.model = model
        self.serializer = serializer
        self.attnames = tuple(f.attname for f in model._meta.concrete_fields)
        self._values: Callable[[models.Model], Any] = operator.attrgetter(*self.attnames)
        self.schema = keys.schema_stamp(model, serializer.format_version)
        self.prefix = entries.header(self.schema)
        self._plain = _builds_plainly(model, self.attnames)

    def encode_row(self, obj: models.Model, timing: tuple[int, float] = (0, 0.0)) -> bytes:
        values = self._values(obj)
        if len(self.attnames) == 1:
            values = (values,)
        return entries.encode(self.prefix, entries.ROW, self.serializer.dumps(values), timing)

    def encode_missing(self, timing: tuple[int, float] = (0, 0.0)) -> bytes:
        return entries.encode(self.prefix, entries.MISSING, b"", timing)

    def encode_pointer(self, pk: Any, timing: tuple[int, float] = (0, 0.0)) -> bytes:
        return entries.encode(self.prefix, entries.POINTER, self.serializer.dumps([pk]), timing)

    def instance(self, db: str, values: list[Any]) -> models.Model:
        model = self.model
        if self._plain and not (
            (pre_init.receivers and pre_init.has_listeners(model))
            or (post_init.receivers and post_init.has_listeners(model))
        ):
            obj = model.__new__(model)
            obj.__dict__.update(zip(self.attnames, values, strict=True))
            state = ModelState()
            state.adding = False
            state.db = db
            obj._state = state
            return obj
        return model.from_db(db, self.attnames, values)

    def decode(self, db: str, entry: bytes) -> Any:
        """An instance, ``NOT_FOUND``, a pointer's pk wrapped in a tuple, or ``None`` (unusable)."""
        parts = entries.split(entry, self.prefix)
        if parts is None:
            return None  # written for another schema or format: a miss
        kind, payload = parts
        if kind == entries.MISSING:
            return NOT_FOUND
        values = self.serializer.loads(payload)
        if kind == entries.POINTER and len(values) == 1:
            return (values[0],)
        if kind == entries.ROW and len(values) == len(self.attnames):
            return self.instance(db, values)
        raise CorruptEntry(f"entry of kind {kind!r} with {len(values)} values")
