from __future__ import annotations

import datetime
import struct
import uuid
import zoneinfo
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from django.db.models import Field

import msgpack
from django.conf import settings
from django.db.models.fields.files import FieldFile

from django_cacheaside.exceptions import CorruptEntry, NotCacheable
from django_cacheaside.serializers.base import BaseSerializer

# Extension type codes. They are part of the format: never renumber, only add (and bump
# format_version if a code's meaning changes).
EXT_DECIMAL = 1
EXT_DATE = 2
EXT_TIME = 3
EXT_DATETIME = 4
EXT_TIMEDELTA = 5
EXT_UUID = 6
EXT_MEMORYVIEW = 7
EXT_DATETIME_UTC = 8  # the common case with USE_TZ: microseconds since the epoch, one int64
EXT_DATETIME_NAIVE = 9  # the common case without: microseconds since 0001-01-01, one int64
EXT_PLAIN = 10  # in a typed column of a row (see RowSerializer), a value stored as is

_DATE = struct.Struct(">i")
_INT64 = struct.Struct(">q")
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_NAIVE_ORIGIN = datetime.datetime(1, 1, 1)
_TIMEDELTA = struct.Struct(">iiI")
_US_PER_SECOND = 1_000_000
_UTC = datetime.UTC
_timedelta = datetime.timedelta


def _tz_token(tz: datetime.tzinfo | None, when: datetime.datetime | None) -> int | str | None:
    """A plain-data name for a tzinfo: None (naive), "UTC", a zoneinfo key, or fixed offset seconds."""
    if tz is None:
        return None
    if tz is _UTC:
        return "UTC"
    if isinstance(tz, zoneinfo.ZoneInfo):
        return f"zi:{tz.key}"
    if isinstance(tz, datetime.timezone):
        offset = tz.utcoffset(when)
        return int(offset.total_seconds() * _US_PER_SECOND)
    raise TypeError(f"cannot encode tzinfo of type {type(tz).__name__}")


def _tz_from_token(token: int | str | None) -> datetime.tzinfo | None:
    if token is None:
        return None
    if token == "UTC":
        return _UTC
    if isinstance(token, str):
        return zoneinfo.ZoneInfo(token.removeprefix("zi:"))
    return datetime.timezone(datetime.timedelta(microseconds=token))


def _us_of_day(t: datetime.time | datetime.datetime) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * _US_PER_SECOND + t.microsecond


def _micros(delta: datetime.timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * _US_PER_SECOND + delta.microseconds


def _encode_datetime(value: datetime.datetime) -> msgpack.ExtType:
    tz = value.tzinfo
    if tz is _UTC:
        return msgpack.ExtType(EXT_DATETIME_UTC, _INT64.pack(_micros(value - _EPOCH)))
    if tz is None and not value.fold:
        return msgpack.ExtType(EXT_DATETIME_NAIVE, _INT64.pack(_micros(value - _NAIVE_ORIGIN)))
    token = _tz_token(tz, value)
    body = msgpack.packb([value.toordinal(), _us_of_day(value), token, value.fold])
    return msgpack.ExtType(EXT_DATETIME, body)


def _encode_time(value: datetime.time) -> msgpack.ExtType:
    body = msgpack.packb([_us_of_day(value), _tz_token(value.tzinfo, None), value.fold])
    return msgpack.ExtType(EXT_TIME, body)


def _default(value: Any) -> Any:
    # Called by msgpack for every value it has no native encoding for. Order: most common first.
    if isinstance(value, datetime.datetime):
        return _encode_datetime(value)
    if isinstance(value, Decimal):
        return msgpack.ExtType(EXT_DECIMAL, str(value).encode("ascii"))
    if isinstance(value, datetime.date):
        return msgpack.ExtType(EXT_DATE, _DATE.pack(value.toordinal()))
    if isinstance(value, uuid.UUID):
        return msgpack.ExtType(EXT_UUID, value.bytes)
    if isinstance(value, datetime.time):
        return _encode_time(value)
    if isinstance(value, datetime.timedelta):
        return msgpack.ExtType(
            EXT_TIMEDELTA, _TIMEDELTA.pack(value.days, value.seconds, value.microseconds)
        )
    if isinstance(value, FieldFile):
        # The column stores the file's name; the model's descriptor wraps it again on access.
        return value.name
    raise TypeError(f"cannot encode {type(value).__name__}")


def _split_day(ordinal: int, us: int) -> datetime.datetime:
    seconds, micro = divmod(us, _US_PER_SECOND)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    day = datetime.date.fromordinal(ordinal)
    return datetime.datetime(day.year, day.month, day.day, hour, minute, second, micro)


def _decode_datetime(body: bytes) -> datetime.datetime:
    ordinal, us, token, fold = msgpack.unpackb(body)
    naive = _split_day(ordinal, us)
    return naive.replace(tzinfo=_tz_from_token(token), fold=fold)


def _decode_time(body: bytes) -> datetime.time:
    us, token, fold = msgpack.unpackb(body)
    return _split_day(1, us).time().replace(tzinfo=_tz_from_token(token), fold=fold)


def _decode_timedelta(body: bytes) -> datetime.timedelta:
    days, seconds, micro = _TIMEDELTA.unpack(body)
    return datetime.timedelta(days=days, seconds=seconds, microseconds=micro)


_unpack_int64 = _INT64.unpack


# timedelta(0, 0, us) rather than timedelta(microseconds=us): keywords cost a third of the call.
def _decode_datetime_utc(body: bytes) -> datetime.datetime:
    return _EPOCH + _timedelta(0, 0, _unpack_int64(body)[0])


def _decode_datetime_naive(body: bytes) -> datetime.datetime:
    return _NAIVE_ORIGIN + _timedelta(0, 0, _unpack_int64(body)[0])


_new = object.__new__
_set = object.__setattr__


_UUID = uuid.UUID
_UNKNOWN = uuid.SafeUUID.unknown  # an enum member: looking it up each time costs a descriptor call
_from_bytes = int.from_bytes


def _fast_uuid(body: bytes) -> uuid.UUID:
    # uuid.UUID(bytes=...) validates its many keyword forms in Python; a hit pays for that on
    # every UUID column. The instance is the same: a UUID holds exactly `int` and `is_safe`.
    if len(body) != 16:
        raise ValueError("a UUID is 16 bytes")
    value = _new(_UUID)
    _set(value, "int", _from_bytes(body, "big"))
    _set(value, "is_safe", _UNKNOWN)
    return value


def _plain_uuid(body: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=body)


_SAMPLE = uuid.UUID("12345678-1234-5678-1234-567812345678")
# Where UUID is built differently (another Python), the documented constructor.
_uuid_from_bytes = (
    _fast_uuid
    if uuid.UUID.__slots__ == ("int", "is_safe", "__weakref__")
    and _fast_uuid(_SAMPLE.bytes) == _SAMPLE
    and str(_fast_uuid(_SAMPLE.bytes)) == str(_SAMPLE)
    else _plain_uuid
)


class _Plain(NamedTuple):
    """An ``EXT_PLAIN`` value, until ``RowSerializer.loads`` puts it in its column as it is."""

    value: int | str | bytes


def _decode_plain(body: bytes) -> _Plain:
    value = msgpack.unpackb(body, raw=False)
    if type(value) not in (int, str, bytes):  # RowSerializer wraps nothing else
        raise CorruptEntry(f"a wrapped plain value of type {type(value).__name__}")
    return _Plain(value)


_DECODERS: dict[int, Callable[[bytes], Any]] = {
    EXT_DATETIME_UTC: _decode_datetime_utc,
    EXT_DATETIME_NAIVE: _decode_datetime_naive,
    EXT_DECIMAL: lambda body: Decimal(body.decode("ascii")),
    EXT_DATE: lambda body: datetime.date.fromordinal(_DATE.unpack(body)[0]),
    EXT_TIME: _decode_time,
    EXT_DATETIME: _decode_datetime,
    EXT_TIMEDELTA: _decode_timedelta,
    EXT_UUID: _uuid_from_bytes,
    EXT_MEMORYVIEW: memoryview,
    EXT_PLAIN: _decode_plain,
}


def _ext_hook(code: int, body: bytes) -> Any:
    try:
        return _DECODERS[code](body)
    except KeyError:
        raise CorruptEntry(f"unknown msgpack extension type {code}") from None


class MsgpackSerializer(BaseSerializer):
    """The default: MessagePack with extension types for the values Django's fields return.

    Type-faithful for every built-in concrete field (a ``Decimal`` comes back a ``Decimal``, an aware
    ``datetime`` with the same ``tzinfo``, a PostgreSQL ``memoryview`` a ``memoryview``) and decodes
    nothing but plain data: no class is ever looked up from the bytes.
    """

    format_version = "mp-2"

    def dumps(self, values: Sequence[Any]) -> bytes:
        # psycopg2 returns BinaryField values as memoryview, which msgpack would pack as plain bytes
        # without asking _default: tag them so they come back as memoryview.
        values = [
            msgpack.ExtType(EXT_MEMORYVIEW, v.tobytes()) if type(v) is memoryview else v
            for v in values
        ]
        try:
            data: bytes = msgpack.packb(values, default=_default, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise NotCacheable(str(exc)) from exc
        return data

    def for_fields(self, fields: Sequence[Field[Any, Any]]) -> BaseSerializer:
        columns = tuple(
            (index, column)
            for index, field in enumerate(fields)
            if (column := _column(field)) is not None
        )
        if not columns:
            return self
        return RowSerializer(self, len(fields), columns)

    def loads(self, data: bytes) -> list[Any]:
        return _unpack_list(data, _OPTIONS)


_unpackb = msgpack.unpackb
_OPTIONS: dict[str, Any] = {
    "ext_hook": _ext_hook,
    "raw": False,
    "strict_map_key": False,
    "use_list": True,
}
# A row's: msgpack timestamps come back as aware UTC datetimes.
_ROW_OPTIONS: dict[str, Any] = {**_OPTIONS, "timestamp": 3}


def _unpack_list(data: bytes, options: dict[str, Any]) -> list[Any]:
    """The list ``data`` holds, unpacked with ``options`` (``_OPTIONS`` or ``_ROW_OPTIONS``)."""
    try:
        values = _unpackb(data, **options)
    except CorruptEntry:
        raise
    except Exception as exc:  # msgpack raises several unrelated types for malformed input
        raise CorruptEntry(str(exc)) from exc
    if type(values) is not list:
        raise CorruptEntry("entry payload is not a list")
    return values


class _Column(NamedTuple):
    """How a row stores a typed column's usual values without an extension type (one C-level
    msgpack value, converted back in a loop) rather than with one (a Python call from msgpack)."""

    code: str  # the column's letter in the row serializer's format_version
    python_type: type  # values of exactly this type may be stored plainly...
    plain: Callable[[Any], Any]  # ...as this, unless it returns None (stored as any other value)
    stored_type: type  # the type of a plainly stored value in the payload
    decode: Callable[[Any], Any] | None  # the stored value back (None: msgpack's C code does it)


def _utc_timestamp(value: datetime.datetime) -> msgpack.Timestamp | None:
    if value.tzinfo is not _UTC:
        return None
    # Not Timestamp.from_datetime: it goes through a float and truncates before 1970.
    seconds, micro = divmod(_micros(value - _EPOCH), _US_PER_SECOND)
    return msgpack.Timestamp(seconds, micro * 1000)


def _naive_micros(value: datetime.datetime) -> int | None:
    return _micros(value - _NAIVE_ORIGIN) if value.tzinfo is None and not value.fold else None


def _duration_micros(value: datetime.timedelta) -> int | None:
    micros = _micros(value)
    return micros if -(2**63) <= micros < 2**63 else None  # else an EXT_TIMEDELTA


def _uuid_bytes(value: uuid.UUID) -> bytes:
    return value.bytes


_COLUMNS: dict[str, _Column] = {
    "DecimalField": _Column("m", Decimal, str, str, Decimal),
    "UUIDField": _Column("u", uuid.UUID, _uuid_bytes, bytes, _uuid_from_bytes),
    "DateField": _Column(
        "d", datetime.date, datetime.date.toordinal, int, datetime.date.fromordinal
    ),
    "DurationField": _Column(
        "r", datetime.timedelta, _duration_micros, int, lambda us: _timedelta(0, 0, us)
    ),
}
# With USE_TZ the database's datetimes are aware, in UTC: msgpack's own timestamp, which its C
# decoder turns back into an aware UTC datetime itself. Without, naive ones: an int.
_AWARE_DATETIME = _Column("t", datetime.datetime, _utc_timestamp, msgpack.Timestamp, None)
_NAIVE_DATETIME = _Column(
    "n", datetime.datetime, _naive_micros, int, lambda us: _NAIVE_ORIGIN + _timedelta(0, 0, us)
)


def _column(field: Field[Any, Any]) -> _Column | None:
    internal = field.get_internal_type()
    if internal == "DateTimeField":
        return _AWARE_DATETIME if settings.USE_TZ else _NAIVE_DATETIME
    return _COLUMNS.get(internal)


class RowSerializer(BaseSerializer):
    """:class:`MsgpackSerializer` for the rows of one model, from ``for_fields``.

    The same values, but a datetime, ``Decimal``, UUID, date or duration column stores the values
    the database returns (a UTC datetime with ``USE_TZ``, a naive one without) as a plain msgpack
    int, str or bin, turned back into its type by the column's position. Decoding a row of such
    columns takes a fraction of the time extension types take: msgpack calls Python once for each
    of those. Any other value in such a column (another timezone, a value assigned but not saved)
    is stored as in any other column; a plain value that would be mistaken for a stored one is
    wrapped in ``EXT_PLAIN``.
    """

    def __init__(
        self, base: MsgpackSerializer, width: int, columns: tuple[tuple[int, _Column], ...]
    ) -> None:
        self._base = base
        self._width = width
        self._columns = columns
        self._decoders = tuple(
            (at, c.stored_type, c.decode) for at, c in columns if c.decode is not None
        )
        layout = "".join(f"{at}{column.code}" for at, column in columns)
        self.format_version = f"{base.format_version}/{width}:{layout}"  # type: ignore[misc]

    def dumps(self, values: Sequence[Any]) -> bytes:
        if len(values) != self._width:
            raise NotCacheable(f"a row of {len(values)} values, not {self._width}")
        row = list(values)
        for at, column in self._columns:
            value = row[at]
            kind = type(value)
            if kind is column.python_type:
                stored = column.plain(value)
                if stored is not None:
                    row[at] = stored
                    continue
            if kind is column.stored_type:
                if column.decode is None:
                    raise NotCacheable(
                        f"a {kind.__name__} in a {column.python_type.__name__} column"
                    )
                row[at] = msgpack.ExtType(EXT_PLAIN, msgpack.packb(value, use_bin_type=True))
        return self._base.dumps(row)

    def loads_rows(self, payloads: Sequence[bytes | None]) -> list[list[Any] | CorruptEntry | None]:
        # Unpack every row, then convert the typed columns one column at a time: about a third
        # less time than converting row by row (measured on get_many(100) of the benchmark rows).
        rows: list[Any] = []
        append, width = rows.append, self._width
        for data in payloads:
            if data is None:
                append(None)
                continue
            try:
                values = _unpackb(data, **_ROW_OPTIONS)
            except CorruptEntry as exc:
                append(exc)
                continue
            except Exception as exc:  # as in _unpack_list
                append(CorruptEntry(str(exc)))
                continue
            if type(values) is not list:
                append(CorruptEntry("entry payload is not a list"))
            elif len(values) != width:
                append(CorruptEntry(f"a row of {len(values)} values, not {width}"))
            else:
                append(values)
        try:
            for at, stored_type, decode in self._decoders:
                for values in rows:
                    if type(values) is list:
                        value = values[at]
                        if type(value) is stored_type:
                            values[at] = decode(value)
                        elif type(value) is _Plain:
                            values[at] = value.value
        except (ArithmeticError, ValueError, OverflowError):
            # A value its column cannot take: row by row, so that only its row is rejected.
            return super().loads_rows(payloads)
        return rows

    def loads(self, data: bytes) -> list[Any]:
        values = _unpack_list(data, _ROW_OPTIONS)
        if len(values) != self._width:
            raise CorruptEntry(f"a row of {len(values)} values, not {self._width}")
        try:
            for at, stored_type, decode in self._decoders:
                value = values[at]
                if type(value) is stored_type:
                    values[at] = decode(value)
                elif type(value) is _Plain:
                    values[at] = value.value
        except (ArithmeticError, ValueError, OverflowError) as exc:
            raise CorruptEntry(f"column {at}: {exc}") from exc
        return values
