"""Serializers: type-faithful round trips through the real database and Redis; nothing unpickled."""

from __future__ import annotations

import datetime
import os
import pickle
import uuid
import zoneinfo
from decimal import Decimal
from typing import Any

import msgpack
import pytest

from django_cacheaside import entries
from django_cacheaside.exceptions import CorruptEntry, NotCacheable
from django_cacheaside.serializers.msgpack import MsgpackSerializer
from django_cacheaside.serializers.pickle import PickleSerializer
from tests.factories import OrgFactory, all_types_values
from tests.testapp.models import AllTypes, Org

PICKLE = "django_cacheaside.serializers.pickle.PickleSerializer"


def assert_same_values(cached: Any, orm: Any) -> None:
    for field in AllTypes._meta.concrete_fields:
        ours, theirs = getattr(cached, field.attname), getattr(orm, field.attname)
        assert type(ours) is type(theirs), field.name
        if isinstance(theirs, memoryview):
            ours, theirs = ours.tobytes(), theirs.tobytes()
        assert ours == theirs, field.name
        if isinstance(theirs, datetime.datetime | datetime.time):
            assert ours.tzinfo == theirs.tzinfo, field.name


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("serializer", [None, PICKLE])
def test_every_builtin_field_type_round_trips(
    serializer: str | None, settings: Any, django_assert_num_queries: Any
) -> None:
    if serializer:
        settings.CACHEASIDE = {**settings.CACHEASIDE, "SERIALIZER": serializer}
    row = AllTypes.objects.create(**all_types_values(org=OrgFactory.create()))
    AllTypes.cached.get(pk=row.pk)
    with django_assert_num_queries(0):
        cached = AllTypes.cached.get(pk=row.pk)
    orm = AllTypes.objects.get(pk=row.pk)
    assert_same_values(cached, orm)
    assert cached.file.name == "files/report.pdf"
    assert cached.image.name == "images/logo.png"


@pytest.mark.django_db(transaction=True)
def test_other_timezones_and_naive_values_round_trip() -> None:
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    row = AllTypes.objects.create(
        **all_types_values(
            moment=datetime.datetime(2021, 10, 31, 2, 30, tzinfo=paris),
            json=[],
            decimal=Decimal("0.0001"),
            duration=datetime.timedelta(0),
        )
    )
    AllTypes.cached.get(pk=row.pk)
    assert_same_values(AllTypes.cached.get(pk=row.pk), AllTypes.objects.get(pk=row.pk))


@pytest.mark.parametrize(
    "value",
    [
        datetime.datetime(2021, 10, 31, 2, 30, fold=1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
        datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))),
        datetime.datetime(1, 1, 1),
        datetime.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=datetime.UTC),
        datetime.time(0, 0),
        datetime.time(12, 0, tzinfo=datetime.UTC),
        datetime.date(1, 1, 1),
        datetime.timedelta(days=-999_999_999),
        Decimal("NaN"),
        Decimal("-0.00"),
        uuid.uuid4(),
        memoryview(b"\x00\x01"),
        {"a": [1, {"b": None}]},
        b"",
        "",
        2**64 - 1,
    ],
)
def test_msgpack_values_keep_type_and_value(value: Any) -> None:
    serializer = MsgpackSerializer()
    (back,) = serializer.loads(serializer.dumps([value]))
    assert type(back) is type(value)
    if isinstance(value, memoryview):
        assert back.tobytes() == value.tobytes()
    elif isinstance(value, Decimal) and value.is_nan():
        assert back.is_nan()
    else:
        assert back == value
        assert str(back) == str(value)
    if isinstance(value, datetime.datetime | datetime.time):
        assert back.tzinfo == value.tzinfo and back.fold == value.fold


def test_msgpack_rejects_what_it_cannot_encode() -> None:
    with pytest.raises(NotCacheable):
        MsgpackSerializer().dumps([object()])
    with pytest.raises(NotCacheable):
        MsgpackSerializer().dumps([2**70])


@pytest.mark.parametrize("payload", [b"", b"\xc1", b"\x91\xd4\x63\x00", b"\x92\x01", b"\x01"])
def test_msgpack_garbage_is_a_corrupt_entry(payload: bytes) -> None:
    with pytest.raises(CorruptEntry):
        MsgpackSerializer().loads(payload)


class _Boom:
    def __reduce__(self) -> Any:
        return (os.system, ("touch /tmp/cacheaside-pwned",))


def test_default_serializer_never_unpickles() -> None:
    """Invariant 6: bytes planted by whoever can write to Redis cannot run code."""
    poisoned = pickle.dumps([_Boom()])
    with pytest.raises(CorruptEntry):
        MsgpackSerializer().loads(poisoned)
    assert not os.path.exists("/tmp/cacheaside-pwned")


@pytest.mark.django_db(transaction=True)
def test_poisoned_entry_in_redis_is_served_from_the_database(redis_client: Any) -> None:
    org = OrgFactory.create()
    AllTypes.objects.create(**all_types_values(org=org))
    row = AllTypes.objects.get()
    AllTypes.cached.get(pk=row.pk)
    key = AllTypes.cached.key_for_pk(row.pk)
    header = redis_client.hget(key, "d")[: entries.HEADER_LEN]
    redis_client.hset(key, "d", header + pickle.dumps([_Boom()]))
    assert AllTypes.cached.get(pk=row.pk).pk == row.pk
    assert not os.path.exists("/tmp/cacheaside-pwned")


def test_pickle_serializer_reports_garbage() -> None:
    with pytest.raises(CorruptEntry):
        PickleSerializer().loads(b"not a pickle")
    with pytest.raises(CorruptEntry):
        PickleSerializer().loads(pickle.dumps({"not": "a list"}))
    with pytest.raises(NotCacheable):
        PickleSerializer().dumps([lambda: None])


def test_format_versions_differ() -> None:
    assert MsgpackSerializer.format_version != PickleSerializer.format_version


# -- rows: MsgpackSerializer.for_fields ------------------------------------------------------------

ROW = MsgpackSerializer().for_fields(AllTypes._meta.concrete_fields)
NAMES = [field.attname for field in AllTypes._meta.concrete_fields]
PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def _row(**values: Any) -> list[Any]:
    base = {name: None for name in NAMES}
    base.update(values)
    return [base[name] for name in NAMES]


def _stored(payload: bytes) -> dict[str, Any]:
    """The payload as msgpack holds it (extension types not decoded)."""
    return dict(zip(NAMES, msgpack.unpackb(payload, raw=False), strict=True))


def test_row_stores_the_databases_values_without_extension_types() -> None:
    values: dict[str, Any] = dict(
        moment=datetime.datetime(2024, 2, 29, 12, 0, 0, 7, tzinfo=datetime.UTC),
        decimal=Decimal("12.5000"),
        uuid=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        date=datetime.date(2024, 2, 29),
        duration=datetime.timedelta(days=-1, microseconds=3),
    )
    payload = ROW.dumps(_row(**values))
    stored = _stored(payload)
    assert isinstance(stored["moment"], msgpack.Timestamp)
    assert stored["decimal"] == "12.5000"
    assert stored["uuid"] == values["uuid"].bytes
    assert stored["date"] == values["date"].toordinal()
    assert stored["duration"] == -86_400_000_000 + 3
    back = dict(zip(NAMES, ROW.loads(payload), strict=True))
    for name, value in values.items():
        assert type(back[name]) is type(value) and back[name] == value, name
        assert str(back[name]) == str(value), name
    assert back["moment"].tzinfo is datetime.UTC


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("moment", datetime.datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=datetime.UTC)),
        ("moment", datetime.datetime(1, 1, 1, tzinfo=datetime.UTC)),
        ("moment", datetime.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=datetime.UTC)),
        ("moment", datetime.datetime(2021, 10, 31, 2, 30, fold=1, tzinfo=PARIS)),  # not UTC
        ("moment", datetime.datetime(2021, 10, 31, 2, 30)),  # naive under USE_TZ
        ("moment", 1_700_000_000),  # a plain value where a stored one would be: wrapped
        ("decimal", Decimal("NaN")),
        ("decimal", Decimal("-0.00")),
        ("decimal", "12.5"),
        ("decimal", 3),
        ("uuid", "12345678-1234-5678-1234-567812345678"),
        ("uuid", b"\x00" * 16),
        ("date", datetime.date(1, 1, 1)),
        ("date", datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)),  # a datetime, not a date
        ("date", 737_000),
        ("duration", datetime.timedelta(days=-999_999_999)),
        ("duration", 5),
        ("char", 7),  # untyped columns are as any other list value
    ],
)
def test_row_values_keep_type_and_value(name: str, value: Any) -> None:
    (back,) = (
        v
        for n, v in zip(NAMES, ROW.loads(ROW.dumps(_row(**{name: value}))), strict=True)
        if n == name
    )
    assert type(back) is type(value)
    if isinstance(value, Decimal) and value.is_nan():
        assert back.is_nan()
    else:
        assert back == value and str(back) == str(value)
    if isinstance(value, datetime.datetime):
        assert back.tzinfo == value.tzinfo and back.fold == value.fold


def test_row_of_nones_and_wrong_widths() -> None:
    assert ROW.loads(ROW.dumps(_row())) == _row()
    with pytest.raises(NotCacheable):
        ROW.dumps(_row()[:-1])
    with pytest.raises(CorruptEntry):
        ROW.loads(MsgpackSerializer().dumps(_row()[:-1]))
    with pytest.raises(NotCacheable):  # msgpack would give it back as a datetime
        ROW.dumps(_row(moment=msgpack.Timestamp(0, 0)))


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("decimal", "twelve"),
        ("uuid", b"\x00" * 3),
        ("date", 0),
        ("date", 10**7),  # past 9999-12-31
        ("moment", msgpack.Timestamp(2**40, 0)),  # past 9999 too
        ("char", msgpack.ExtType(10, msgpack.packb([1]))),  # only int, str and bytes are wrapped
    ],
)
def test_row_garbage_in_a_typed_column_is_a_corrupt_entry(name: str, stored: Any) -> None:
    row = _row()
    row[NAMES.index(name)] = stored
    with pytest.raises(CorruptEntry):
        ROW.loads(msgpack.packb(row, use_bin_type=True))


def _garbage_row(name: str, stored: Any) -> bytes:
    row = _row()
    row[NAMES.index(name)] = stored
    return msgpack.packb(row, use_bin_type=True)  # type: ignore[no-any-return]


def _outcome(loads: Any, payload: bytes) -> Any:
    try:
        return loads(payload)
    except CorruptEntry as exc:
        return exc


@pytest.mark.parametrize("bad", [("decimal", "twelve"), ("uuid", b"\x00" * 3), ("date", 10**7)])
@pytest.mark.parametrize(
    ("serializer", "corrupt"),
    # ROW: the bad column, the junk and the short row; msgpack takes a short row as any list;
    # pickle rejects the msgpack one
    [(ROW, 3), (MsgpackSerializer(), 1), (PickleSerializer(), 2)],
)
def test_loads_rows_is_loads_of_each_row(
    serializer: Any, corrupt: int, bad: tuple[str, Any]
) -> None:
    good = [
        _row(decimal=Decimal(i), uuid=uuid.UUID(int=i), date=datetime.date(2020, 1, 1 + i))
        for i in range(5)
    ]
    payloads: list[Any] = [serializer.dumps(values) for values in good]
    if serializer is ROW:  # a value its column cannot take, unpacked fine: after the 2nd row
        payloads.insert(2, _garbage_row(*bad))
    short = MsgpackSerializer().dumps(_row()[:-1])  # a valid list, one value short
    payloads[3:3] = [None, b"\xc1 not a payload", short]
    rows = serializer.loads_rows(payloads)
    assert len(rows) == len(payloads)
    for payload, row in zip(payloads, rows, strict=True):
        if payload is None:
            assert row is None
            continue
        expected = _outcome(serializer.loads, payload)
        if isinstance(expected, CorruptEntry):
            assert isinstance(row, CorruptEntry), row
        else:
            assert [(type(v), v) for v in row] == [(type(v), v) for v in expected]
    assert [r for r in rows if type(r) is list][:2] == good[:2]
    assert sum(isinstance(r, CorruptEntry) for r in rows) == corrupt


def test_row_format_follows_the_columns_and_use_tz(settings: Any) -> None:
    serializer = MsgpackSerializer()
    assert ROW.format_version.startswith(f"{serializer.format_version}/{len(NAMES)}:")
    assert serializer.for_fields(Org._meta.concrete_fields) is serializer  # no typed column
    settings.USE_TZ = False
    naive = serializer.for_fields(AllTypes._meta.concrete_fields)
    assert naive.format_version != ROW.format_version
    moment = datetime.datetime(2021, 10, 31, 2, 30, 0, 1)
    payload = naive.dumps(_row(moment=moment))
    assert type(_stored(payload)["moment"]) is int
    assert naive.loads(payload)[NAMES.index("moment")] == moment
