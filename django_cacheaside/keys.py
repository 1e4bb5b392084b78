"""Key building: pure functions of a model, a prefix and lookup values. No I/O.

Layout (``P`` is ``KEY_PREFIX`` followed by ``:``, or nothing)::

    Pca:{app_label.model:<pk>}                  object entry: a hash {s: stamp, d: entry}
    Pca:{app_label.model:u:<f>=<v>,<g>=<w>}     unique-lookup pointer: same shape, entry holds a pk
    <either of those>:lock                      its refill lease: a token, with a short TTL
    Pca:{app_label.model:=q}                    the model's query generations: a hash {field: gen}
    Pca:{app_label.model:=q}:<digest>           one cached query result: a hash {g: gens, d: entry}
    Pca:tag:{<tag>}                             a tag set: a sorted set {object key: expiry ms}
    Pca:tag:{<tag>}:p                           when the tag was last purged (a clock value)
    Pca:clock                                   the purge clock (see ``django_cacheaside.tags``)

Everything that belongs to one object shares one Redis Cluster hash tag (the braces), so one Lua
script may touch it all; so does everything of one model's cached queries, and of one tag. Values
are escaped so that no value can end the hash tag early or be mistaken for a separator: an escaped
pk never holds a raw ``=``, so ``=q`` and pointers (``u:...=...``) can never be an object's key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from django.db import models

_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D", ",": "%2C", "=": "%3D"})


def key_part(value: Any) -> str:
    """The text of one lookup value inside a key."""
    if type(value) is int:
        return str(value)
    return str(value).translate(_ESCAPES)


def namespace(prefix: str) -> str:
    return f"{prefix}:ca:" if prefix else "ca:"


def model_label(model: type[models.Model]) -> str:
    """Proxies and their concrete model share entries: they share rows."""
    return model._meta.concrete_model._meta.label_lower  # type: ignore[union-attr]


def object_key(namespace: str, label: str, pk: Any) -> str:
    return f"{namespace}{{{label}:{key_part(pk)}}}"


def lock_key(object_key: str) -> str:
    """The refill lease of an object: beside its hash, in the same hash tag (the same slot)."""
    return f"{object_key}:lock"


def lookup_key(namespace: str, label: str, items: Iterable[tuple[str, Any]]) -> str:
    """Key of a unique-lookup pointer; ``items`` are (attname, normalised value) pairs."""
    body = ",".join(f"{name}={key_part(value)}" for name, value in sorted(items))
    return f"{namespace}{{{label}:u:{body}}}"


def query_generations_key(namespace: str, label: str) -> str:
    return f"{namespace}{{{label}:=q}}"


def query_key(namespace: str, label: str, digest: str) -> str:
    """One cached query result: beside the model's query generations, in the same slot."""
    return f"{namespace}{{{label}:=q}}:{digest}"


def tag_key(namespace: str, tag: str) -> str:
    return f"{namespace}tag:{{{key_part(tag)}}}"


def tag_marker_key(tag_key: str) -> str:
    return f"{tag_key}:p"


def clock_key(namespace: str) -> str:
    return f"{namespace}clock"


_GLOB = str.maketrans({c: f"\\{c}" for c in "*?[]\\"})


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a ``SCAN MATCH`` pattern."""
    return text.translate(_GLOB)


def model_pattern(namespace: str, label: str) -> str:
    """A ``SCAN MATCH`` pattern for every key of one model: entries, pointers, leases, queries."""
    return glob_escape(f"{namespace}{{{label}:") + "*"


def schema_stamp(model: type[models.Model], format_version: str) -> str:
    """Eight hex digits naming the model's concrete fields and the serializer format.

    A deploy that adds, removes, renames or retypes a field, or changes the serializer, gets a new
    stamp: entries written under the old one are never decoded, they are misses.
    """
    parts = [format_version]
    for field in model._meta.concrete_fields:
        kind = type(field)
        parts.append(f"{field.attname}:{field.column}:{kind.__module__}.{kind.__qualname__}")
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=4).hexdigest()
