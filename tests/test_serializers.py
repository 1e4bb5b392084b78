"""Serializers: type-faithful round trips through the real database and Redis; nothing unpickled."""

from __future__ import annotations

import datetime
import os
import pickle
import uuid
import zoneinfo
from decimal import Decimal
from typing import Any

import pytest

from django_cacheaside import entries
from django_cacheaside.exceptions import CorruptEntry, NotCacheable
from django_cacheaside.serializers.msgpack import MsgpackSerializer
from django_cacheaside.serializers.pickle import PickleSerializer
from tests.factories import OrgFactory, all_types_values
from tests.testapp.models import AllTypes

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
