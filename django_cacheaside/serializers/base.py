from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from django_cacheaside.exceptions import CorruptEntry

if TYPE_CHECKING:
    from django.db.models import Field


class BaseSerializer:
    """Encodes the list of a row's concrete field values (``Model.from_db`` order) as bytes.

    Subclasses set :attr:`format_version`, which goes into every model's schema stamp: changing it
    moves every model to new entries, so an entry is never decoded by a format it was not written for.

    ``dumps`` raises :class:`~django_cacheaside.exceptions.NotCacheable` for a value it cannot encode;
    ``loads`` raises :class:`~django_cacheaside.exceptions.CorruptEntry` for bytes it cannot decode.
    Neither may raise anything else.
    """

    format_version: ClassVar[str]
    #: Whether decoding can run code named by the bytes (pickle can): system check cacheaside.W002
    #: warns when such a serializer reads unsigned entries.
    runs_code_from_input: ClassVar[bool] = False

    def dumps(self, values: Sequence[Any]) -> bytes:
        raise NotImplementedError

    def for_fields(self, fields: Sequence[Field[Any, Any]]) -> BaseSerializer:
        """The serializer for rows of ``fields`` (a model's concrete fields, in order).

        A serializer may return one specialised for those columns, with a ``format_version`` of
        its own; by default every row is encoded like any other list of values.
        """
        return self

    def loads(self, data: bytes) -> list[Any]:
        raise NotImplementedError

    def loads_rows(self, payloads: Sequence[bytes | None]) -> list[list[Any] | CorruptEntry | None]:
        """``loads`` of each payload, for ``get_many``: ``None`` stays ``None``, and a payload
        ``loads`` rejects is the ``CorruptEntry`` it raised, in its place.

        A serializer may decode the batch faster than row by row (``RowSerializer`` converts its
        typed columns one column at a time); the result must be the same.
        """
        rows: list[list[Any] | CorruptEntry | None] = []
        for data in payloads:
            if data is None:
                rows.append(None)
                continue
            try:
                rows.append(self.loads(data))
            except CorruptEntry as exc:
                rows.append(exc)
        return rows
