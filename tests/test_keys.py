from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import pytest
from django.db import models
from hypothesis import assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

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


# -- properties: arbitrary text cannot collide, escape its hash tag or change family -------------

LABEL = "testapp.article"
# Characters with a meaning in keys or escapes, whitespace, and characters beyond ASCII.
_SPECIAL = st.sampled_from([*":{}%=,* \n\t\r\x00\\é☃𝄞", "%25", "%7B", "u:", "=q"])
_text = st.lists(_SPECIAL | st.characters(exclude_categories=["Cs"]), max_size=30).map("".join)
_long = st.text(min_size=1, max_size=8).map(lambda s: (s * (10_240 // len(s) + 1))[:10_240])
values = _text | _long
prefixes = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="{} "), max_size=12)
property_settings = hypothesis_settings(max_examples=150, deadline=None)


def hash_tag(key: str) -> str:
    """What Redis Cluster hashes: the text between the first ``{`` and the next ``}``."""
    start = key.index("{")
    return key[start + 1 : key.index("}", start + 1)]


def other_families(namespace: str, value: str) -> list[str]:
    """The keys a value can be part of that are not an object's entry."""
    pointer = keys.lookup_key(namespace, LABEL, [("slug", value), ("org_id", 1)])
    tag = keys.tag_key(namespace, value)
    return [
        pointer,
        keys.lock_key(pointer),
        keys.query_generations_key(namespace, LABEL),
        keys.query_key(namespace, LABEL, "0" * 32),
        tag,
        keys.tag_marker_key(tag),
        keys.clock_key(namespace),
    ]


@property_settings
@given(value=values, prefix=prefixes)
def test_a_value_stays_inside_its_hash_tag(value: str, prefix: str) -> None:
    namespace = keys.namespace(prefix)
    part = keys.key_part(value)
    assert unquote(part) == value  # reversible, so distinct values give distinct parts
    assert not set(part) & set("{}=,")
    obj = keys.object_key(namespace, LABEL, value)
    assert obj == f"{namespace}{{{LABEL}:{part}}}" and hash_tag(obj) == f"{LABEL}:{part}"
    assert hash_tag(keys.lock_key(obj)) == hash_tag(obj)
    pointer = keys.lookup_key(namespace, LABEL, [("slug", value), ("org_id", value)])
    assert hash_tag(pointer) == f"{LABEL}:u:org_id={part},slug={part}"
    assert pointer.endswith("}") and hash_tag(keys.lock_key(pointer)) == hash_tag(pointer)
    tag = keys.tag_key(namespace, value)
    assert hash_tag(tag) == part and hash_tag(keys.tag_marker_key(tag)) == part
    # Every key of the model, and only those, is under the literal invalidate_model() scans.
    literal = f"{namespace}{{{LABEL}:"
    assert keys.model_pattern(namespace, LABEL) == keys.glob_escape(literal) + "*"
    assert obj.startswith(literal) and pointer.startswith(literal)
    assert not tag.startswith(literal)
    assert not keys.object_key(namespace, LABEL + "x", value).startswith(literal)


@property_settings
@given(found=st.lists(values, min_size=2, max_size=6, unique=True), prefix=prefixes)
def test_distinct_values_give_distinct_keys(found: list[str], prefix: str) -> None:
    namespace = keys.namespace(prefix)
    for build in (
        lambda v: keys.object_key(namespace, LABEL, v),
        lambda v: keys.lookup_key(namespace, LABEL, [("slug", v)]),
        lambda v: keys.lookup_key(namespace, LABEL, [("a", v), ("b", "x")]),
        lambda v: keys.lookup_key(namespace, LABEL, [("a", "x"), ("b", v)]),
        lambda v: keys.tag_key(namespace, v),
    ):
        assert len({build(v) for v in found}) == len(found)


@property_settings
@given(pk=values, other=values, prefix=prefixes)
def test_an_object_key_is_never_another_familys_key_or_its_prefix(
    pk: str, other: str, prefix: str
) -> None:
    namespace = keys.namespace(prefix)
    obj = keys.object_key(namespace, LABEL, pk)
    for key in other_families(namespace, other):
        assert not key.startswith(obj)
        assert not obj.startswith(key)
    if other != pk:
        lock = keys.lock_key(keys.object_key(namespace, LABEL, other))
        assert not lock.startswith(obj)


@property_settings
@given(a=prefixes, b=prefixes, value=values)
def test_one_prefix_never_scans_or_reads_anothers_keys(a: str, b: str, value: str) -> None:
    """Tenancy: purges and stats resets under prefix ``a`` match none of ``b``'s keys."""
    assume(a != b)
    ns_a, ns_b = keys.namespace(a), keys.namespace(b)
    scanned_by_a = (f"{ns_a}{{{LABEL}:", f"{ns_a}stats:{{")
    theirs = [
        keys.object_key(ns_b, LABEL, value),
        *other_families(ns_b, value),
        f"{ns_b}stats:{{1}}",
    ]
    for key in theirs:
        assert not key.startswith(scanned_by_a)
        assert key not in {keys.object_key(ns_a, LABEL, value), *other_families(ns_a, value)}
