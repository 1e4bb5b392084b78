"""Entry bytes <-> model instances, for one model and one serializer.

Instances are built as ``Model.from_db`` builds them. Where that is provably the same thing, the
codec skips ``Model.__init__`` and fills the instance's ``__dict__`` directly, which is most of the
cost of building it: only for models that keep Django's ``__init__`` and ``from_db``, whose fields
all use Django's own attribute descriptors, and while nobody listens to ``pre_init``/``post_init``
for the model (``ImageField`` dimension fields do, for one).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
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
from django_cacheaside.signing import Signer

_new = object.__new__

# What a decoded entry can be besides an instance or a pointer.
NOT_FOUND: Final = object()
# decode()'s pk when the entry was not read for a primary key (a unique-lookup pointer).
ANY_PK: Final = object()

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
    """Unsigned entries. :class:`SignedCodec` adds a MAC (``SIGN_ENTRIES``).

    ``key`` arguments name the Redis key the entry is written to or was read from; only the signed
    codec uses them. ``pk``, when given to :meth:`decode`, is the primary key that was asked for: a
    row entry holding another pk (an entry copied under the wrong key) is corrupt.
    """

    signed = False

    def __init__(self, model: type[models.Model], serializer: BaseSerializer) -> None:
        self.model = model
        self.serializer = serializer  # pointers and query results
        fields = model._meta.concrete_fields
        self.row_serializer = serializer.for_fields(fields)  # rows: may know their columns' types
        self.attnames = tuple(f.attname for f in fields)
        self._values: Callable[[models.Model], Any] = operator.attrgetter(*self.attnames)
        self._pk_index = self.attnames.index(model._meta.pk.attname)
        self.schema = keys.schema_stamp(model, self.row_serializer.format_version)
        self.prefix = entries.header(self.schema, self.signed)
        self._plain = _builds_plainly(model, self.attnames)

    def seal(self, key: str, entry: bytes) -> bytes:
        """The bytes to store for ``entry`` under ``key``."""
        return entry

    def encode_row(
        self, obj: models.Model, timing: tuple[int, float] = (0, 0.0), key: str = ""
    ) -> bytes:
        values = self._values(obj)
        if len(self.attnames) == 1:
            values = (values,)
        payload = self.row_serializer.dumps(values)
        return self.seal(key, entries.encode(self.prefix, entries.ROW, payload, timing))

    def encode_missing(self, timing: tuple[int, float] = (0, 0.0), key: str = "") -> bytes:
        return self.seal(key, entries.encode(self.prefix, entries.MISSING, b"", timing))

    def encode_pointer(self, pk: Any, timing: tuple[int, float] = (0, 0.0), key: str = "") -> bytes:
        payload = self.serializer.dumps([pk])
        return self.seal(key, entries.encode(self.prefix, entries.POINTER, payload, timing))

    def encode_query(self, key: str, values: list[Any]) -> bytes:
        """A cached query's result (pks, or ``[count]``, ``[exists]``): the bare payload."""
        return self.seal(key, self.serializer.dumps(values))

    def decode_query(self, key: str, entry: bytes) -> list[Any]:
        """Raises ``CorruptEntry`` for bytes that are not a query result written under ``key``."""
        return self.serializer.loads(entry)

    def _builds_plainly_now(self) -> bool:
        """Whether instances may skip ``Model.__init__`` now (nobody listens to its signals)."""
        model = self.model
        return self._plain and not (
            (pre_init.receivers and pre_init.has_listeners(model))
            or (post_init.receivers and post_init.has_listeners(model))
        )

    def _plain_instance(self, db: str, values: list[Any]) -> models.Model:
        """What ``from_db`` builds, without its ``__init__`` call (see the module docstring)."""
        model = self.model
        obj = _new(model)
        state = _new(ModelState)
        state.__dict__.update(db=db, adding=False)
        attributes = obj.__dict__
        attributes.update(zip(self.attnames, values, strict=True))
        attributes["_state"] = state
        return obj

    def instance(self, db: str, values: list[Any]) -> models.Model:
        if self._builds_plainly_now():
            return self._plain_instance(db, values)
        return self.model.from_db(db, self.attnames, values)

    def decode_rows(
        self, db: str, found: Sequence[bytes | None], keys: Sequence[str], pks: Sequence[Any]
    ) -> list[Any]:
        """``decode()`` of each entry (``None`` for a missing one), for ``get_many``; a
        ``CorruptEntry`` is returned in its place, not raised.

        The same result as calling ``decode()`` per entry. Row entries of an unsigned codec, for a
        model whose instances are built plainly, are decoded as one batch (``loads_rows``) and
        their instances built in one loop, without the calls between the steps (each costs about
        a tenth of decoding the row).
        """
        fast = type(self) is Codec and self._builds_plainly_now()
        prefix, start = self.prefix + entries.ROW, entries.HEADER_LEN  # a row of this schema
        # The row payloads, decoded as one batch; every other entry (and every entry of a signed
        # codec, or of a model built through from_db) goes through decode() below.
        payloads = [
            entry[start:]
            if fast and entry is not None and entry.startswith(prefix) and len(entry) >= start
            else None
            for entry in found
        ]
        rows = self.row_serializer.loads_rows(payloads)
        model, attnames, at = self.model, self.attnames, self._pk_index
        width = len(attnames)
        state = {"db": db, "adding": False}
        results: list[Any] = []
        for entry, key, pk, values in zip(found, keys, pks, rows, strict=True):
            if type(values) is list and len(values) == width and values[at] == pk:
                # _plain_instance(), inline: a call per row is a tenth of the row's cost
                obj, own_state = _new(model), _new(ModelState)
                own_state.__dict__.update(state)
                attributes = obj.__dict__
                attributes.update(zip(attnames, values, strict=False))  # same length
                attributes["_state"] = own_state
                results.append(obj)
            elif entry is None:
                results.append(None)
            elif isinstance(values, CorruptEntry):
                results.append(values)
            else:
                try:  # every other case, and a row holding another pk (corrupt, said there)
                    results.append(self.decode(db, entry, key, pk))
                except CorruptEntry as exc:
                    results.append(exc)
        return results

    def decode(self, db: str, entry: bytes, key: str = "", pk: Any = ANY_PK) -> Any:
        """An instance, ``NOT_FOUND``, a pointer's pk wrapped in a tuple, or ``None`` (unusable)."""
        parts = entries.split(entry, self.prefix)
        if parts is None:
            return None  # written for another schema or format: a miss
        kind, payload = parts
        if kind == entries.MISSING:
            return NOT_FOUND
        if kind == entries.ROW:
            values = self.row_serializer.loads(payload)
        else:
            values = self.serializer.loads(payload)
        if kind == entries.POINTER and len(values) == 1 and pk is ANY_PK:
            return (values[0],)  # read under a lookup key; under an object's key it is corrupt
        if kind == entries.ROW and len(values) == len(self.attnames):
            if pk is not ANY_PK and values[self._pk_index] != pk:
                raise CorruptEntry(f"entry of pk {values[self._pk_index]!r} read for pk {pk!r}")
            return self.instance(db, values)
        raise CorruptEntry(f"entry of kind {kind!r} with {len(values)} values")


class SignedCodec(Codec):
    """Entries that end with a MAC of their key and bytes; one that does not verify is never
    decoded (so not unpickled either)."""

    signed = True

    def __init__(
        self, model: type[models.Model], serializer: BaseSerializer, signer: Signer
    ) -> None:
        super().__init__(model, serializer)
        self._signer = signer

    def seal(self, key: str, entry: bytes) -> bytes:
        if not key:
            raise ValueError("a signed entry needs the name of the key it is written to")
        return self._signer.sign(key, entry)

    def _open(self, key: str, entry: bytes) -> bytes:
        data = self._signer.open(key, entry)
        if data is None:
            raise CorruptEntry("entry signature does not verify (not written by this app here)")
        return data

    def decode_query(self, key: str, entry: bytes) -> list[Any]:
        return self.serializer.loads(self._open(key, entry))

    def decode(self, db: str, entry: bytes, key: str = "", pk: Any = ANY_PK) -> Any:
        if not entry.startswith(self.prefix):
            return None  # unsigned, or another schema: a miss, as for the unsigned codec
        return super().decode(db, self._open(key, entry), key, pk)
