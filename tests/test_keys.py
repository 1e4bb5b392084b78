from __future__ import annotations

from typing import Any

import pytest
from django.db import models

from django_cacheaside import entries, keys
from tests.testapp.models import Article, Org


def test_object_key_layout(cache_namespace: str) -> None:
    assert Article.cached.key_for_pk(42) == f"{cache_namespace}:ca:{{testapp.article:42}}"


def test_unprefixed_namespace() -> None:
    assert keys.namespace("") == "ca:"
    assert keys.object_key("ca:", "blog.article", 1) == "ca:{blog.article:1}"


@pytest.mark.parametrize("value", ["a}b", "{x}", "50%", "a,b=c", "ünï"])
def test_values_cannot_break_the_hash_tag_or_the_separators(value: str) -> None:
    key = keys.lookup_key("ca:", "blog.article", [("slug", value), ("org_id", 1)])
    tag = key[key.index("{") + 1 : key.index("}")]
    assert key.endswith("}") and tag == key[len("ca:{") : -1]
    assert tag.count("=") == 2 and tag.count(",") == 1


def test_lookup_key_is_order_independent() -> None:
    a = keys.lookup_key("ca:", "m", [("b", 1), ("a", 2)])
    b = keys.lookup_key("ca:", "m", [("a", 2), ("b", 1)])
    assert a == b == "ca:{m:u:a=2,b=1}"


def test_schema_stamp_follows_fields_and_format() -> None:
    stamp = keys.schema_stamp(Org, "mp-1")
    assert len(stamp) == 8 and stamp == keys.schema_stamp(Org, "mp-1")
    assert stamp != keys.schema_stamp(Org, "mp-2")
    assert stamp != keys.schema_stamp(Article, "mp-1")

    def variant(field: Any, name: str) -> str:
        attrs = {
            "__module__": "tests.testapp.models",
            "name": field,
            "Meta": type("Meta", (), {"app_label": "testapp", "db_table": "x"}),
        }
        return keys.schema_stamp(type(name, (models.Model,), attrs), "mp-1")

    char = variant(models.CharField(max_length=10), "SchemaA")
    text = variant(models.TextField(), "SchemaB")
    renamed = variant(models.CharField(max_length=10, db_column="other"), "SchemaC")
    assert len({char, text, renamed}) == 3


def test_entry_header_rejects_other_schemas() -> None:
    prefix = entries.header("abcdef12")
    entry = entries.encode(prefix, entries.ROW, b"payload")
    assert entries.split(entry, prefix) == (entries.ROW, b"payload")
    assert entries.split(entry, entries.header("abcdef13")) is None
    assert entries.split(b"\x01", prefix) is None
    with pytest.raises(ValueError):
        entries.header("short")
