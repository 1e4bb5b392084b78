"""Cached querysets: ``Model.cached.filter(...)`` caches a query's pks (or count, existence).

Pks are resolved through the objects' own entries, so a change to one object never needs the query
run again. Invalidation is by **query generations**: per model, a hash ``Pca:{app.model:=q}`` maps
``"*"`` and field attnames to random generations. A query depends on ``"*"`` and on every field its
WHERE and ORDER BY read; its result ``...:=q}:<digest>`` is a hash ``{g, d}`` holding the
generations it was filled under. ``QUERY_READ`` (before the database is read) returns the result if
those are still current, else the generations a fill must match; ``QUERY_FILL`` writes only if they
did not change meanwhile (compare-and-set). Writes delete the hash (creates, deletes, full saves)
or the fields they name (``update_fields``, ``QuerySet.update``): a result survives exactly the
writes that cannot change it. See ``docs/querysets.md``.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import ipaddress
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, TypeVar, overload

from django.core.exceptions import EmptyResultSet, FieldDoesNotExist
from django.db import models, router
from django.db.models import Q
from django.db.models.expressions import Col, RawSQL
from django.db.models.functions import Now, Random
from django.db.models.sql.query import Query
from django.db.models.sql.where import ExtraWhere

from django_cacheaside import keys, signals
from django_cacheaside.backend import get_backend, report_error
from django_cacheaside.exceptions import CorruptEntry, NotCacheable

if TYPE_CHECKING:
    from django_cacheaside.codec import Codec
    from django_cacheaside.lookups import LookupResolver
    from django_cacheaside.options import DerivedSettings

M = TypeVar("M", bound=models.Model)

LIST, COUNT, EXISTS = "list", "count", "exists"
GENERATIONS_TTL_FACTOR = 4  # the generations outlive the results filled under them
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


class _Manager(Protocol[M]):
    """What a cached query needs from its ``CacheAsideManager``."""

    model: type[M] | None

    @property
    def codec(self) -> Codec: ...
    @property
    def schema(self) -> str: ...
    @property
    def _resolver(self) -> LookupResolver: ...
    @property
    def _label(self) -> str: ...
    def _settings(self) -> DerivedSettings: ...
    def _policy(self) -> tuple[str, bool | None]: ...
    def _ttl_ms(self, name: str = "TTL") -> int: ...
    def _base(self, db: str) -> models.QuerySet[M]: ...
    def get_many(self, pks: Iterable[Any]) -> dict[Any, M]: ...
    def key_for_pk(self, pk: Any) -> str: ...
    def _decode(self, db: str, key: str, entry: bytes | None) -> Any: ...


class _Unsupported:
    """A queryset method cached queries do not offer: using it says what to do instead."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type) -> Any:
        if instance is None:
            return self
        model = getattr(getattr(instance, "model", None), "__name__", "Model")
        raise NotImplementedError(
            f"{model}.cached does not support .{self.name}(): its result could not be kept correct "
            f"in the cache. Use {model}.objects.{self.name}(...) for this query."
        )


class _RejectsQuerysetMethods:
    pass


for _method in UNSUPPORTED:
    setattr(_RejectsQuerysetMethods, _method, _Unsupported(_method))


def _refuse(model: Any, problem: str) -> ValueError:
    name = model.__name__
    return ValueError(f"{name}.cached {problem} Use {name}.objects for this query.")


def _check_path(model: Any, name: str, method: str) -> None:
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
        raise _refuse(
            model,
            f"cannot {method} {name!r}: it spans a relation (a join), and a write to the other "
            f"table would not invalidate the cached result. Use fields of {model.__name__} itself "
            f"({hint}).",
        )


def _check_value(model: Any, name: str, value: Any) -> Any:
    """The value of a lookup, normalised (sets sorted); expressions are refused."""
    if hasattr(value, "resolve_expression"):
        raise _refuse(
            model,
            f"cannot use {type(value).__name__} as the value of {name!r}: an expression (F(), "
            "Now(), a subquery, a queryset) is evaluated by the database, so the key cannot "
            "describe its result. Pass a plain value.",
        )
    if not isinstance(value, set | frozenset | list | tuple):
        return value
    checked = [_check_value(model, name, v) for v in value]
    if not isinstance(value, set | frozenset):
        return tuple(checked) if isinstance(value, tuple) else checked
    try:  # a set's order changes from one process to the next: sort it, for one key
        return sorted(checked)
    except TypeError:
        return sorted(checked, key=repr)


def _check_q(model: Any, q: Any) -> Q:
    if not isinstance(q, Q):
        raise _refuse(
            model, f"filter() takes Q objects and keyword lookups, not {type(q).__name__}."
        )
    children: list[Any] = []
    for child in q.children:
        if isinstance(child, tuple):
            _check_path(model, child[0], "filter on")
            children.append((child[0], _check_value(model, child[0], child[1])))
        else:
            children.append(_check_q(model, child))
    return Q(*children, _connector=q.connector, _negated=q.negated)


def _render(value: Any) -> str:
    """A stable text for one query parameter, its type included (``repr`` alone may truncate)."""
    kind = type(value)
    name = f"{kind.__module__}.{kind.__qualname__}"
    if isinstance(value, list | tuple):
        return f"{name}[{','.join(_render(v) for v in value)}]"
    if isinstance(value, dict):
        return f"{name}{{{','.join(f'{_render(k)}:{_render(v)}' for k, v in value.items())}}}"
    if isinstance(value, _SCALARS):
        return f"{name}:{value!r}"
    if isinstance(value, memoryview | bytearray):
        return f"{name}:{bytes(value)!r}"
    if kind.__module__.startswith("psycopg"):  # Json, Jsonb, Binary: wrappers whose repr truncates
        for attr in ("obj", "adapted"):
            if hasattr(value, attr):
                return f"{name}({_render(getattr(value, attr))})"
    raise ValueError(f"a query parameter of type {name} cannot be part of a cache key")


def _inspect(model: Any, query: Query, ordering: list[Any]) -> set[str]:
    """The attnames the WHERE and ORDER BY of ``query`` read; refuses joins and opaque nodes."""
    allowed = set()
    for alias, join in query.alias_map.items():
        link = getattr(join, "join_field", None)
        if link is None or (
            isinstance(link, models.OneToOneField) and link.remote_field.parent_link
        ):
            allowed.add(alias)  # the model's table, or a multi-table parent's
        elif query.alias_refcount[alias]:  # (a join Django trimmed, org=1 reading org_id, is not)
            raise _refuse(
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
            raise _refuse(
                model,
                f"cannot cache a query that contains {type(node).__name__} (evaluated by the "
                "database at each run, or opaque): check the base manager and Meta.ordering.",
            )
        if isinstance(node, Col):
            if node.alias not in allowed:
                raise _refuse(model, f"cannot cache a query that reads {node.alias} (a join).")
            fields.add(node.target.attname)
        elif hasattr(node, "get_source_expressions"):
            todo += [child for child in node.get_source_expressions() if child is not None]
    return fields


def _direct(qs: models.QuerySet[Any], kind: str) -> Any:
    if kind == LIST:
        return list(qs)
    return qs.count() if kind == COUNT else qs.exists()


def _pks(qs: models.QuerySet[Any], kind: str) -> models.QuerySet[Any]:
    """The query that is run and cached: the pks (their order matters only for a list)."""
    pk_qs = qs.values_list("pk", flat=True)
    return pk_qs.order_by() if kind != LIST and not qs.query.is_sliced else pk_qs


class _Plan(NamedTuple):
    gens_key: str
    key: str
    fields: list[str]


class CachedQuery(_RejectsQuerysetMethods, Generic[M]):
    """A lazy, chainable cached query: ``filter``, ``exclude``, ``order_by``, ``all``, slicing.

    Evaluated (iteration, ``len()``, ``list()``, ``[i]``) once, like a queryset; ``count()``,
    ``exists()`` and ``first()`` are cached queries of their own.
    """

    def __init__(
        self, manager: _Manager[M], queryset: models.QuerySet[M], result: list[M] | None = None
    ) -> None:
        self._manager = manager
        self._qs = queryset
        self._result = result

    @property
    def model(self) -> type[M]:
        return self._qs.model

    def __repr__(self) -> str:
        state = f"{len(self._result)} rows" if self._result is not None else "not evaluated"
        return f"<CachedQuery of {self.model.__name__}: {state}>"

    # -- chaining ------------------------------------------------------------------------------

    def _where(self, negate: bool, q: tuple[Any, ...], lookups: dict[str, Any]) -> CachedQuery[M]:
        model = self.model
        checked = [_check_q(model, one) for one in q]
        for name in lookups:
            _check_path(model, name, "filter on")
        normal = {name: _check_value(model, name, lookups[name]) for name in sorted(lookups)}
        method = self._qs.exclude if negate else self._qs.filter
        return CachedQuery(self._manager, method(*checked, **normal))

    def filter(self, *q: Q, **lookups: Any) -> CachedQuery[M]:
        return self._where(False, q, lookups)

    def exclude(self, *q: Q, **lookups: Any) -> CachedQuery[M]:
        return self._where(True, q, lookups)

    def all(self) -> CachedQuery[M]:
        return CachedQuery(self._manager, self._qs.all())

    def order_by(self, *fields: str) -> CachedQuery[M]:
        for field in fields:
            if not isinstance(field, str):
                raise _refuse(self.model, f"cannot order by an expression ({field!r}): use names.")
            if field == "?":
                raise _refuse(
                    self.model, "cannot order by '?' (random): it would freeze one order."
                )
            _check_path(self.model, field.removeprefix("-"), "order by")
        return CachedQuery(self._manager, self._qs.order_by(*fields))

    @overload
    def __getitem__(self, k: int) -> M: ...
    @overload
    def __getitem__(self, k: slice) -> CachedQuery[M]: ...
    def __getitem__(self, k: int | slice) -> M | CachedQuery[M]:
        if isinstance(k, slice):
            if k.step is not None:
                raise ValueError("A cached query does not take a step: slice its list() instead.")
            result = self._result[k] if self._result is not None else None
            return CachedQuery(self._manager, self._qs[k], result)
        if not isinstance(k, int):
            raise TypeError(f"CachedQuery indices must be integers or slices, not {type(k)}.")
        if k < 0:
            raise ValueError("Negative indexing is not supported.")
        if self._result is not None:
            return self._result[k]
        found = self[k : k + 1]._fetch_all()
        if not found:
            raise IndexError("CachedQuery index out of range")
        return found[0]

    # -- evaluation ----------------------------------------------------------------------------

    def _fetch_all(self) -> list[M]:
        if self._result is None:
            self._result = self._evaluate(LIST)
        return self._result

    def __iter__(self) -> Iterator[M]:
        return iter(self._fetch_all())

    def __len__(self) -> int:
        return len(self._fetch_all())

    def __bool__(self) -> bool:
        return bool(self._fetch_all())

    def count(self) -> int:
        return len(self._result) if self._result is not None else int(self._evaluate(COUNT))

    def exists(self) -> bool:
        return bool(self._result) if self._result is not None else bool(self._evaluate(EXISTS))

    def first(self) -> M | None:
        if self._result is not None:
            return self._result[0] if self._result else None
        found = (self if self._qs.ordered else self.order_by("pk"))[:1]._fetch_all()
        return found[0] if found else None

    def _evaluate(self, kind: str) -> Any:
        manager = self._manager
        db, fill = manager._policy()
        qs = self._qs if self._qs.db == db else self._qs.using(db)
        plan = self._plan(qs, db, kind)  # validated in every case, even when bypassing
        if plan is None:
            return {LIST: [], COUNT: 0, EXISTS: False}[kind]
        if fill is None:  # this transaction wrote the model: read its own writes
            return _direct(qs, kind)
        gens_ttl = GENERATIONS_TTL_FACTOR * manager._ttl_ms()
        read = get_backend().query_read(plan.gens_key, plan.key, plan.fields, gens_ttl)
        found = self._decode(plan, read.entry, kind) if read.entry is not None else None
        if found is not None:
            result = found[0] if kind != LIST else self._resolve(db, found, hit=True)
            if result is not None:
                signals.cache_hit.send(sender=self.model, key=plan.key)
                return result
        signals.cache_miss.send(sender=self.model, key=plan.key)
        if not fill or read.gens is None:
            return _direct(qs, kind)
        started = time.perf_counter()
        value = _direct(_pks(qs, kind), kind)
        duration = time.perf_counter() - started
        self._fill(plan, read.gens, value if kind == LIST else [value], gens_ttl, duration)
        return self._resolve(db, value, hit=False) if kind == LIST else value

    def _resolve(self, db: str, pks: list[Any], hit: bool) -> list[M] | None:
        """The objects of ``pks`` in order, through ``get_many`` (one round trip of ``HGET``s when
        all are cached); after a hit, ``None`` says one no longer exists: the list predates its
        delete, run the query instead."""
        wanted = [self._manager._resolver.normalise_pk(pk) for pk in pks]
        found = self._manager.get_many(wanted) if wanted else {}
        if hit and len(found) < len(set(wanted)):
            return None
        return [found[pk] for pk in wanted if pk in found]

    def _plan(self, qs: models.QuerySet[M], db: str, kind: str) -> _Plan | None:
        """The key and the fields the result depends on; ``None``: the result is empty."""
        query = _pks(qs, kind).query  # a copy of its own: compiling it changes it
        compiler = query.get_compiler(using=db)
        try:
            sql, params = compiler.as_sql()
        except EmptyResultSet:
            return None
        ordering = [expression for expression, _sql in compiler.get_order_by()]
        fields = _inspect(self.model, query, ordering)  # after get_order_by: it adds its joins
        try:
            rendered = _render(list(params))
        except ValueError as error:
            raise _refuse(self.model, f"cannot cache this query: {error}.") from None
        manager = self._manager
        text = "\0".join((kind, db, manager.schema, sql, rendered))
        digest = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
        namespace, label = manager._settings().namespace, manager._label
        return _Plan(
            keys.query_generations_key(namespace, label),
            keys.query_key(namespace, label, digest),
            ["*", *sorted(fields)],
        )

    def _decode(self, plan: _Plan, entry: bytes, kind: str) -> list[Any] | None:
        """The stored pks (or ``[count]``, ``[exists]``), ``None`` for an entry that is unusable."""
        try:
            found = self._manager.codec.serializer.loads(entry)
            expected = {COUNT: int, EXISTS: bool}.get(kind)  # exact types: a bool is an int
            if expected is not None and not (len(found) == 1 and type(found[0]) is expected):
                raise CorruptEntry(f"{kind} entry holds {found!r}")
        except CorruptEntry as error:
            report_error("decode", error)
            get_backend().delete([plan.key])  # the next read fills it again
            return None
        return found

    def _fill(
        self, plan: _Plan, gens: bytes, values: list[Any], gens_ttl: int, duration: float
    ) -> None:
        try:
            entry = self._manager.codec.serializer.dumps(values)
        except NotCacheable:
            signals.cache_bypass.send(sender=self.model, reason="not_cacheable")
            return
        written = get_backend().query_fill(
            plan.gens_key, plan.key, plan.fields, gens, entry, self._manager._ttl_ms(), gens_ttl
        )
        signals.cache_fill.send(sender=self.model, key=plan.key, written=written, duration=duration)


def _start(manager: _Manager[M]) -> CachedQuery[M]:
    model = manager.model
    assert model is not None, "the manager of an abstract model has no queries"
    db = router.db_for_write(model) if router.routers else "default"  # as in _policy()
    return CachedQuery(manager, manager._base(db))


class QueryMethods(_RejectsQuerysetMethods):
    """The cached-query entry points of ``CacheAsideManager``: ``Model.cached.filter(...)``."""

    def all(self: _Manager[M]) -> CachedQuery[M]:
        return _start(self)

    def filter(self: _Manager[M], *q: Q, **lookups: Any) -> CachedQuery[M]:
        return _start(self).filter(*q, **lookups)

    def exclude(self: _Manager[M], *q: Q, **lookups: Any) -> CachedQuery[M]:
        return _start(self).exclude(*q, **lookups)

    def order_by(self: _Manager[M], *fields: str) -> CachedQuery[M]:
        return _start(self).order_by(*fields)

    def count(self: _Manager[M]) -> int:
        return _start(self).count()

    def exists(self: _Manager[M]) -> bool:
        return _start(self).exists()
