"""Tags: name groups of entries (``org:5``) so that one call drops them all.

A manager's ``tags`` are field names (``tags=("org",)`` tags each row ``org:<org_id>``) or a callable
``obj -> iterable of str``. Each tag has a set of the object keys filled under it
(``ca:tag:{org:5}``, a sorted set scored by expiry), so a purge knows what to delete.

The race to close: a fill that loaded a row *before* a purge and writes it *after* the purge read
the set would leave a stale entry that nothing will ever delete. So a fill:

1. reads the **purge clock** before it loads (a counter that only moves forward, ``ca:clock``);
2. loads the row and computes its tags;
3. joins each tag set, which answers when the tag was last purged (the clock value of its purge);
4. writes (compare-and-set on the object's stamp, as every fill) only if no tag was purged after
   step 1.

A purge first takes a new clock value, then in one script per tag records it as the tag's last purge
and takes the set's members, then deletes those object keys. A fill that joined before the record
is among the members, so its entry is deleted (or its compare-and-set fails); one that joins after
sees the record, and skips its write if it began before the purge. A fill that began after the purge
loaded a row committed before it: fine to keep.

Tag sets stay bounded: members are scored by the expiry of the entry they name and pruned on every
join, a set expires with its last member, an invalidated object leaves the sets of its tags, and a
purge deletes the set. Markers live an hour, so a fill slower than half an hour is never written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import models

from django_cacheaside import keys
from django_cacheaside.backend import Backend
from django_cacheaside.backend.tagging import MARKER_TTL_MS

TagsOption = Iterable[str] | Callable[[Any], Iterable[str]] | None

# Seconds a fill may take from reading the clock to writing (half the markers' life).
MAX_FILL_SECONDS = MARKER_TTL_MS / 1000 / 2
# Milliseconds a tag-set member outlives its entry: covers the time from joining to writing. A join
# that took more than half of it is not followed by a write.
JOIN_SLACK_MS = 1000


class TagSpec:
    """What a manager's ``tags`` option says, applied to rows."""

    def __init__(self, tags: TagsOption) -> None:
        self.option = tags
        self._callable: Callable[[Any], Iterable[str]] | None = None
        self._names: tuple[str, ...] = ()
        if tags is None:
            pass
        elif callable(tags):
            self._callable = tags
        elif isinstance(tags, str) or not all(isinstance(n, str) for n in tags):
            raise TypeError(
                f"tags= takes field names (e.g. tags=('org',)) or a callable, not {tags!r}."
            )
        else:
            self._names = tuple(tags)
        self.enabled = tags is not None and (self._callable is not None or bool(self._names))
        self.by_fields = bool(self._names)
        self._fields: list[tuple[str, str]] | None = None

    def fields(self, model: type[models.Model]) -> list[tuple[str, str]]:
        """``(name, attname)`` of each tag field; ``ImproperlyConfigured`` for a bad name."""
        if self._fields is None:
            resolved = []
            for name in self._names:
                try:
                    field = model._meta.get_field(name)
                except FieldDoesNotExist:
                    field = None
                if field is None or not getattr(field, "concrete", False) or field.many_to_many:
                    raise ImproperlyConfigured(
                        f"{model._meta.label}: tags names {name!r}, which is not a concrete field "
                        "of the model. Name one of its fields or pass a callable."
                    )
                resolved.append((name, field.attname))  # type: ignore[union-attr]
            self._fields = resolved
        return self._fields

    def of(self, obj: models.Model) -> list[str]:
        """The tags of a row (empty if none apply)."""
        if self._callable is not None:
            result = list(self._callable(obj))
            for tag in result:
                if not isinstance(tag, str) or not tag:
                    raise TypeError(
                        f"The tags callable of {type(obj).__name__} returned {tag!r}; "
                        "tags are non-empty strings."
                    )
            return result
        return [
            f"{name}:{value}"
            for name, attname in self.fields(type(obj))
            if (value := getattr(obj, attname)) is not None
        ]

    def of_loaded(self, obj: models.Model) -> list[str] | None:
        """The tags of an instance a write handed us, or ``None`` if finding them would need a
        query (deferred fields): then its tag-set memberships simply expire."""
        deferred = obj.get_deferred_fields()
        if deferred:
            if self._callable is not None:
                return None
            if any(attname in deferred for _name, attname in self.fields(type(obj))):
                return None
        return self.of(obj)


def check_tags(tags: Iterable[str]) -> list[str]:
    result = list(tags)
    for tag in result:
        if not isinstance(tag, str) or not tag:
            raise TypeError(f"Tags are non-empty strings, not {tag!r}.")
    return result


def fill_start(backend: Backend, namespace: str, spec: TagSpec) -> FillStart | None:
    """Before a fill of a tagged model loads: read the purge clock (``None`` if untagged)."""
    return FillStart(backend, namespace) if spec.enabled else None


class FillStart:
    """The purge clock read before a tagged fill loads (``None``: Redis failed, do not fill)."""

    def __init__(self, backend: Backend, namespace: str) -> None:
        self.namespace = namespace
        self.clock = backend.read_clock(keys.clock_key(namespace))
        self.started = time.monotonic()

    def admit(
        self, backend: Backend, members: Mapping[str, Iterable[str]], ttl_ms: int
    ) -> set[str]:
        """Join the tag sets of each object key in ``members`` (``{key: tags}``) for ``ttl_ms``;
        answer the keys that may be written: those none of whose tags was purged since the start.
        """
        if self.clock is None or time.monotonic() - self.started > MAX_FILL_SECONDS:
            return set()
        joins: dict[str, list[str]] = {}
        tags_of_key: dict[str, list[str]] = {}
        for key, tags in members.items():
            tag_keys = [keys.tag_key(self.namespace, tag) for tag in tags]
            tags_of_key[key] = tag_keys
            for tag_key in tag_keys:
                joins.setdefault(tag_key, []).append(key)
        if not joins:
            return set(members)
        joined = time.monotonic()
        purged = backend.join_tags(joins, ttl_ms + JOIN_SLACK_MS)
        if purged is None or (time.monotonic() - joined) * 1000 > JOIN_SLACK_MS / 2:
            return set()
        clock = self.clock
        return {
            key
            for key, tag_keys in tags_of_key.items()
            if all(purged[t] <= clock for t in tag_keys)
        }

    def admits(
        self, backend: Backend, spec: TagSpec, objects: Mapping[str, Any], ttl_ms: int
    ) -> set[str]:
        """The keys of ``objects`` (``{key: row or "does not exist"}``) whose fills may write."""
        if self.clock is None:
            return set()
        rows = {key: obj for key, obj in objects.items() if isinstance(obj, models.Model)}
        members = {key: spec.of(obj) for key, obj in rows.items()}
        admitted = self.admit(backend, members, ttl_ms) if members else set()
        return admitted | {key for key in objects if key not in rows}
