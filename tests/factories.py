from __future__ import annotations

import datetime
import decimal
import ipaddress
import uuid
from typing import Any

import factory
from factory.declarations import Sequence, SubFactory

from tests.testapp import models


class OrgFactory(factory.django.DjangoModelFactory[models.Org]):
    class Meta:
        model = models.Org

    name = Sequence(lambda n: f"org-{n}")


class ArticleFactory(factory.django.DjangoModelFactory[models.Article]):
    class Meta:
        model = models.Article

    org = SubFactory(OrgFactory)
    slug = Sequence(lambda n: f"article-{n}")
    title = Sequence(lambda n: f"Title {n}")
    body = "Some text."


class MembershipFactory(factory.django.DjangoModelFactory[models.Membership]):
    class Meta:
        model = models.Membership

    org = SubFactory(OrgFactory)
    email = Sequence(lambda n: f"user{n}@example.com")


class PostFactory(factory.django.DjangoModelFactory[models.Post]):
    class Meta:
        model = models.Post

    org = SubFactory(OrgFactory)
    slug = Sequence(lambda n: f"post-{n}")
    title = Sequence(lambda n: f"Post {n}")


class LabelFactory(factory.django.DjangoModelFactory[models.Label]):
    class Meta:
        model = models.Label

    name = Sequence(lambda n: f"label-{n}")


class PersonFactory(factory.django.DjangoModelFactory[models.Person]):
    class Meta:
        model = models.Person

    name = Sequence(lambda n: f"person-{n}")


class TeamFactory(factory.django.DjangoModelFactory[models.Team]):
    class Meta:
        model = models.Team

    name = Sequence(lambda n: f"team-{n}")


def all_types_values(**overrides: Any) -> dict[str, Any]:
    """Values for every column of AllTypes, chosen to catch lossy round trips."""
    values: dict[str, Any] = {
        "char": "ünïcødé {braces} %",
        "text": "line one\nline two",
        "slug": "a-slug",
        "email": "a@example.com",
        "url": "https://example.com/x?y=1",
        "small": -32768,
        "integer": -2147483648,
        "big": -9223372036854775808,
        "positive_small": 32767,
        "positive": 2147483647,
        "positive_big": 9223372036854775807,
        "floating": 0.1 + 0.2,
        "decimal": decimal.Decimal("-12345678.1250"),
        "boolean": True,
        "nullable_boolean": None,
        "date": datetime.date(1999, 12, 31),
        "time": datetime.time(23, 59, 58, 999999),
        "moment": datetime.datetime(2024, 2, 29, 12, 30, 15, 123456, tzinfo=datetime.UTC),
        "duration": datetime.timedelta(days=-3, seconds=7, microseconds=11),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "binary": b"\x00\xffbytes\x80",
        "json": {"list": [1, 2.5, "x", None, True], "nested": {"k": "v"}, "n": 10**18},
        "ip": str(ipaddress.ip_address("2001:db8::1")),
        "file": "files/report.pdf",
        "image": "images/logo.png",
        "nothing": None,
    }
    values.update(overrides)
    return values


def update_behind_our_back(model: Any, pk: Any, **values: Any) -> None:
    """UPDATE one row with raw SQL: a write no signal or wrapper of the app can see."""
    from django.db import connections, router

    connection = connections[router.db_for_write(model)]
    meta = model._meta
    fields = [meta.get_field(name) for name in values]
    assignments = ", ".join(f"{connection.ops.quote_name(f.column)} = %s" for f in fields)
    params = [f.get_db_prep_save(values[f.name], connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {connection.ops.quote_name(meta.db_table)} SET {assignments} "
            f"WHERE {connection.ops.quote_name(meta.pk.column)} = %s",
            [*params, pk],
        )
