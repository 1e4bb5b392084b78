from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

from django.db.models.fields.files import FieldFile

from django_cacheaside.exceptions import CorruptEntry, NotCacheable
from django_cacheaside.serializers.base import BaseSerializer


class PickleSerializer(BaseSerializer):
    """Pickle: encodes anything picklable. Unpickling runs code named by the bytes, so use this only
    when nobody but your application can write to the Redis it reads (see the security notes)."""

    format_version = "pickle-1"
    runs_code_from_input = True

    def dumps(self, values: Sequence[Any]) -> bytes:
        # A FieldFile pickles its storage too; the column only holds the name.
        plain = [v.name if isinstance(v, FieldFile) else v for v in values]
        try:
            return pickle.dumps(plain, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise NotCacheable(str(exc)) from exc

    def loads(self, data: bytes) -> list[Any]:
        try:
            values = pickle.loads(data)
        except Exception as exc:  # pickle raises anything the payload makes it raise
            raise CorruptEntry(str(exc)) from exc
        if not isinstance(values, list):
            raise CorruptEntry("pickled entry is not a list")
        return values
