"""Which querysets ``Model.cached`` can cache, and the text their keys are made of. No I/O.

A cached query may read only the model's own columns (and those of its multi-table parents), with
plain values: anything the database evaluates at each run (``Now()``, ``Random``, subqueries, raw
SQL), joins to other tables (whose writes would not invalidate the result) and the queryset methods
whose results cannot be kept correct are refused with an error that says what to use instead.
"""

from __future__ import annotations

import datetime
import decimal
import ipaddress
import uuid
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models import Q
from django.db.models.expressions import Col, RawSQL
from django.db.models.functions import Now, Random
from django.db.models.sql.query import Query
from django.db.models.sql.where import ExtraWhere

from django_cacheaside.exceptions import UnsupportedQuery

_UNSAFE_NODES = (Query, RawSQL, ExtraWhere, Now, Random)
_SCALARS = (
    type(None), bool, int, float, str, bytes, decimal.Decimal, datetime.date, datetime.time,
    datetime.timedelta, uuid.UUID, ipaddress.IPv4Address, ipaddress.IPv6Address,
    ipaddress.IPv4Network, ipaddress.IPv6Network, ipaddress.IPv4Interface, ipaddress.IPv6Interface,
)  # fmt: skip
UNSUPPORTED = (
    "extra", "select_for_update", "annotate", "alias", "aggregate", "values", "values_list", "raw",
    "select_related", "prefetch_related", "distinct", "union", "defer", "only",
)  # fmt: skip


class _Unsupported:
    """A queryset method cached queries do not offer: using it says what to do instead."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type) -> Any:
        if instance is None:
            return self
        model = getattr(getattr(instance, "model", None), "__name__", "Model")
        raise UnsupportedQuery(
            f"{model}.cached does not support .{self.name}(): its result could not be kept correct "
            f"in the cache. Use {model}.objects.{self.name}(...) for this query."
        )


class RejectsQuerysetMethods:
    pass


for _method in UNSUPPORTED:
    setattr(RejectsQuerysetMethods, _method, _Unsupported(_method))


def refuse(model: Any, problem: str) -> ValueError:
    name = model.__name__
    return ValueError(f"{name}.cached {problem} Use {name}.objects for this query.")


def check_path(model: Any, name: str, method: str) -> None:
    """``name`` (a lookup or an ordering) must start at a concrete field of the model itself."""
    first, *rest = name.split("__")
    try:
        field = model._meta.pk if first == "pk" else model._meta.get_field(first)
    except FieldDoesNotExist:
        return  # the ORM raises its own FieldError when the queryset is built
    spans = not field.concrete or field.many_to_many
    if not spans and field.is_relation and rest:
        try:  # org__name spans; org__in and org__isnull are lookups on the key itself
            spans = rest[0] == "pk" or bool(field.related_model._meta.get_field(rest[0]))
        except FieldDoesNotExist:
            spans = False
    if spans:
        local = field.concrete and not field.many_to_many
        hint = f"'{first}' or '{field.attname}'" if local else "its own columns"
        raise refuse(
            model,
            f"cannot {method} {name!r}: it spans a relation (a join), and a write to the other "
            f"table would not invalidate the cached result. Use fields of {model.__name__} itself "
            f"({hint}).",
        )


def check_value(model: Any, name: str, value: Any) -> Any:
    """The value of a lookup, normalised (sets sorted); expressions are refused."""
    if hasattr(value, "resolve_expression"):
        raise refuse(
            model,
            f"cannot use {type(value).__name__} as the value of {name!r}: an expression (F(), "
            "Now(), a subquery, a queryset) is evaluated by the database, so the key cannot "
            "describe its result. Pass a plain value.",
        )
    if not isinstance(value, set | frozenset | list | tuple):
        return value
    checked = [check_value(model, name, v) for v in value]
    if not isinstance(value, set | frozenset):
        return tuple(checked) if isinstance(value, tuple) else checked
    try:  # a set's order changes from one process to the next: sort it, for one key
        return sorted(checked)
    except TypeError:
        return sorted(checked, key=repr)


def check_q(model: Any, q: Any) -> Q:
    if not isinstance(q, Q):
        raise refuse(
            model, f"filter() takes Q objects and keyword lookups, not {type(q).__name__}."
        )
    children: list[Any] = []
    for child in q.children:
        if isinstance(child, tuple):
            check_path(model, child[0], "filter on")
            children.append((child[0], check_value(model, child[0], child[1])))
        else:
            children.append(check_q(model, child))
    return Q(*children, _connector=q.connector, _negated=q.negated)


def render(value: Any) -> str:
    """A stable text for one query parameter, its type included (``repr`` alone may truncate)."""
    kind = type(value)
    name = f"{kind.__module__}.{kind.__qualname__}"
    if isinstance(value, list | tuple):
        return f"{name}[{','.join(render(v) for v in value)}]"
    if isinstance(value, dict):
        return f"{name}{{{','.join(f'{render(k)}:{render(v)}' for k, v in value.items())}}}"
    if isinstance(value, _SCALARS):
        return f"{name}:{value!r}"
    if isinstance(value, memoryview | bytearray):
        return f"{name}:{bytes(value)!r}"
    if kind.__module__.startswith("psycopg"):  # Json, Jsonb, Binary: wrappers whose repr truncates
        for attr in ("obj", "adapted"):
            if hasattr(value, attr):
                return f"{name}({render(getattr(value, attr))})"
    raise ValueError(f"a query parameter of type {name} cannot be part of a cache key")


def inspect(model: Any, query: Query, ordering: list[Any]) -> set[str]:
    """The attnames the WHERE and ORDER BY of ``query`` read; refuses joins and opaque nodes."""
    allowed = set()
    for alias, join in query.alias_map.items():
        link = getattr(join, "join_field", None)
        if link is None or (
            isinstance(link, models.OneToOneField) and link.remote_field.parent_link
        ):
            allowed.add(alias)  # the model's table, or a multi-table parent's
        elif query.alias_refcount[alias]:  # (a join Django trimmed, org=1 reading org_id, is not)
            raise refuse(
                model,
                f"cannot cache a query that joins {join.table_name} (through {link.name}): a write "
                "to that table would not invalidate it. Use fields of the model itself (check "
                "order_by() and Meta.ordering too).",
            )
    fields: set[str] = set()
    todo = [query.where, *ordering]
    while todo:
        node = todo.pop()
        if isinstance(node, _UNSAFE_NODES):
            raise refuse(
                model,
                f"cannot cache a query that contains {type(node).__name__} (evaluated by the "
                "database at each run, or opaque): check the base manager and Meta.ordering.",
            )
        if isinstance(node, Col):
            if node.alias not in allowed:
                raise refuse(model, f"cannot cache a query that reads {node.alias} (a join).")
            fields.add(node.target.attname)
        elif hasattr(node, "get_source_expressions"):
            todo += [child for child in node.get_source_expressions() if child is not None]
    return fields
