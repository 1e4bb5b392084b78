"""Cached querysets: ``Model.cached.filter(...)`` caches a query's pks, not its rows.

A list result is the query's pks, stored under a key derived from the query's SQL and parameters,
and resolved through ``get_many``: a change to one object refreshes its own entry and never needs
the query to run again. ``count()`` and ``exists()`` are cached the same way.

Invalidation is by **query generations**: per model, a hash ``Pca:{app.model:=q}`` maps a field's
attname (and ``"*"``) to a random generation. A query depends on ``"*"`` and on every field its
WHERE and ORDER BY reference; its result ``Pca:{app.model:=q}:<digest>`` is a hash ``{g, d}``
holding the generations it was filled under. A read (``QUERY_READ``) returns the result only if
those are still the current generations, or else the generations (created where missing) a fill
must match; it happens *before* the database is read. The fill (``QUERY_FILL``) is a
compare-and-set: written only if no generation changed meanwhile. Writes delete the hash (a create,
a delete, a save of every field) or the fields they name (``update_fields``, ``QuerySet.update``),
so a result survives exactly the writes that cannot change it.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import ipaddress
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, NoReturn, Protocol, TypeVar, overload

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
_EMPTY: dict[str, Any] = {COUNT: 0, EXISTS: False}
_UNSAFE_NODES = (Query, RawSQL, ExtraWhere, Now, Random)
_SCALARS = (
    type(None), bool, int, float, str, bytes, decimal.Decimal, datetime.date, datetime.time,
    datetime.timedelta, uuid.UUID, ipaddress.IPv4Address, ipaddress.IPv6Address,
    ipaddress.IPv4Network, ipaddress.IPv6Network, ipaddress.IPv4Interface, ipaddress.IPv6Interface,
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


def _name(model: Any) -> str:
    return str(model.__name__)


class _Unsupported:
    """A queryset method the cached query does not offer: using it says what to do instead."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type) -> _Unsupported: ...
    @overload
    def __get__(self, instance: object, owner: type) -> NoReturn: ...
    def __get__(self, instance: object, owner: type) -> Any:
        if instance is None:
            return self
        model = getattr(instance, "model", None)
        name = _name(model) if model is not None else "Model"
        raise NotImplementedError(
            f"{name}.cached does not support .{self.name}(): its result could not be kept correct "
            f"in the cache. Use {name}.objects.{self.name}(...) for this query."
        )


class _RejectsQuerysetMethods:
    extra = _Unsupported()
    select_for_update = _Unsupported()
    annotate = _Unsupported()
    alias = _Unsupported()
    aggregate = _Unsupported()
    values = _Unsupported()
    values_list = _Unsupported()
    raw = _Unsupported()
    select_related = _Unsupported()
    prefetch_related = _Unsupported()
    distinct = _Unsupported()
    union = _Unsupported()


def _refuse(model: Any, problem: str) -> ValueError:
    return ValueError(f"{_name(model)}.cached {problem} Use {_name(model)}.objects for this query.")


def _check_path(model: Any, name: str, method: str) -> None:
    """``name`` (a lookup or an ordering) must start at a concrete field of the model itself."""
    parts = name.split("__")
    meta = model._meta
    try:
        field = meta.pk if parts[0] == "pk" else meta.get_field(parts[0])
    except FieldDoesNotExist:
        return  # the ORM raises its own FieldError when the queryset is built
    spans = not field.concrete or field.many_to_many
    if not spans and field.is_relation and len(parts) > 1:
        related = field.related_model._meta
        try:
            spans = parts[1] == "pk" or bool(related.get_field(parts[1]))
        except FieldDoesNotExist:
            spans = False  # a lookup on the key itself: org__in, org__isnull
    if spans:
        raise _refuse(
            model,
            f"cannot {method} {name!r}: it spans a relation (a join), and a write to the other "
            f"table would not invalidate the cached result. Use fields of {_name(model)} itself "
            f"(e.g. '{parts[0]}' or '{parts[0]}_id' for a foreign key).",
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
    if isinstance(value, set | frozenset):
        value = [_check_value(model, name, v) for v in value]
        try:
            return sorted(value)
        except TypeError:
            return sorted(value, key=repr)
    if isinstance(value, list | tuple):
        checked = [_check_value(model, name, v) for v in value]
        return tuple(checked) if isinstance(value, tuple) else checked
    return value


def _check_q(model: Any, q: Any) -> Q:
    if not isinstance(q, Q):
        raise _refuse(
            model,
            f"filter()/exclude() takes Q objects and keyword lookups, not {type(q).__name__} "
            "(an expression).",
        )
    children: list[Any] = []
    for child in q.children:
        if isinstance(child, tuple):
            _check_path(model, child[0], "filter on")
            children.append((child[0], _check_value(model, child[0], child[1])))
        else:
            children.append(_check_q(model, child))
    return Q(*children, _connector=q.connector, _negated=q.negated)


def _check_ordering(model: Any, fields: tuple[Any, ...]) -> None:
    for field in fields:
        if not isinstance(field, str):
            raise _refuse(
                model,
                f"cannot order by an expression ({field!r}): pass field names, e.g. "
                "order_by('-title').",
            )
        if field == "?":
            raise _refuse(
                model, "cannot order by '?' (random): a cached list would freeze one order."
            )
        _check_path(model, field.removeprefix("-"), "order by")


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
        return f"<CachedQuery of {_name(self.model)}: {state}>"

    # -- chaining ------------------------------------------------------------------------------

    def _chain(self, queryset: models.QuerySet[M]) -> CachedQuery[M]:
        return CachedQuery(self._manager, queryset)

    def _where(self, negate: bool, q: tuple[Any, ...], lookups: dict[str, Any]) -> CachedQuery[M]:
        model = self.model
        checked = [_check_q(model, one) for one in q]
        normal = {}
        for name in sorted(lookups):
            _check_path(model, name, "filter on")
            normal[name] = _check_value(model, name, lookups[name])
        method = self._qs.exclude if negate else self._qs.filter
        return self._chain(method(*checked, **normal))

    def filter(self, *q: Q, **lookups: Any) -> CachedQuery[M]:
        return self._where(False, q, lookups)

    def exclude(self, *q: Q, **lookups: Any) -> CachedQuery[M]:
        return self._where(True, q, lookups)

    def all(self) -> CachedQuery[M]:
        return self._chain(self._qs.all())

    def order_by(self, *fields: str) -> CachedQuery[M]:
        _check_ordering(self.model, fields)
        return self._chain(self._qs.order_by(*fields))

    @overload
    def __getitem__(self, k: int) -> M: ...
    @overload
    def __getitem__(self, k: slice) -> CachedQuery[M]: ...
    def __getitem__(self, k: int | slice) -> M | CachedQuery[M]:
        if isinstance(k, slice):
            if k.step is not None:
                raise ValueError("A cached query does not take a step: slice its list() instead.")
            sliced = CachedQuery(self._manager, self._qs[k])
            if self._result is not None:
                sliced._result = self._result[k]
            return sliced
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
        if self._result is not None:
            return len(self._result)
        return int(self._evaluate(COUNT))

    def exists(self) -> bool:
        if self._result is not None:
            return bool(self._result)
        return bool(self._evaluate(EXISTS))

    def first(self) -> M | None:
        if self._result is not None:
            return self._result[0] if self._result else None
        query = self if self._qs.ordered else self.order_by("pk")
        found = query[:1]._fetch_all()
        return found[0] if found else None

    def _evaluate(self, kind: str) -> Any:
        manager = self._manager
        db, fill = manager._policy()
        qs = self._qs if self._qs.db == db else self._qs.using(db)
        plan = self._plan(qs, db, kind)  # validated in every case, even when bypassing
        if plan is None:
            return [] if kind == LIST else _EMPTY[kind]
        if fill is None:  # this transaction wrote the model: read its own writes
            return self._direct(qs, kind)
        backend = get_backend()
        gens_ttl = GENERATIONS_TTL_FACTOR * manager._ttl_ms()
        read = backend.query_read(plan.gens_key, plan.key, plan.fields, gens_ttl)
        if read.entry is not None:
            found = self._decode(plan, read.entry, kind)
            if found is not None and kind != LIST:
                signals.cache_hit.send(sender=self.model, key=plan.key)
                return found[0]
            if found is not None:
                objs = self._resolve(db, found, hit=True)
                if objs is not None:
                    signals.cache_hit.send(sender=self.model, key=plan.key)
                    return objs
        signals.cache_miss.send(sender=self.model, key=plan.key)
        if not fill or read.gens is None:
            return self._direct(qs, kind)
        started = time.perf_counter()
        pk_qs = self._pks(qs, kind)
        if kind == LIST:
            value: Any = list(pk_qs)
        else:
            value = pk_qs.count() if kind == COUNT else pk_qs.exists()
        duration = time.perf_counter() - started
        self._fill(plan, read.gens, value if kind == LIST else [value], gens_ttl, duration)
        if kind != LIST:
            return value
        objs = self._resolve(db, value, hit=False)
        assert objs is not None
        return objs

    def _direct(self, qs: models.QuerySet[M], kind: str) -> Any:
        if kind == LIST:
            return list(qs)
        return qs.count() if kind == COUNT else qs.exists()

    def _resolve(self, db: str, pks: list[Any], hit: bool) -> list[M] | None:
        """The objects of ``pks`` in order. After a hit, their entries are read with plain ``HGET``s
        first (one round trip, no leases), ``get_many`` loads only those missing, and ``None`` says
        one no longer exists: the list predates its delete, run the query instead."""
        if not pks:
            return []
        manager = self._manager
        normalise = manager._resolver.normalise_pk
        wanted = [normalise(pk) for pk in pks]
        found: dict[Any, M] = {}
        missing = wanted
        if hit:
            model = self.model
            keys_ = [manager.key_for_pk(pk) for pk in wanted]
            missing = []
            for pk, key, entry in zip(wanted, keys_, get_backend().read_many(keys_), strict=True):
                obj = manager._decode(db, key, entry) if entry is not None else None
                if isinstance(obj, model):
                    found[pk] = obj
                else:
                    missing.append(pk)
        if missing:
            found.update(manager.get_many(missing))
        if hit and len(found) < len(set(wanted)):
            return None
        return [found[pk] for pk in wanted if pk in found]

    @staticmethod
    def _pks(qs: models.QuerySet[M], kind: str) -> models.QuerySet[Any]:
        """The query that is run and cached: the pks (their order matters only for a list)."""
        pk_qs: models.QuerySet[Any] = qs.values_list("pk", flat=True)
        if kind != LIST and not qs.query.is_sliced:
            pk_qs = pk_qs.order_by()
        return pk_qs

    def _plan(self, qs: models.QuerySet[M], db: str, kind: str) -> _Plan | None:
        """The key, the fields the result depends on, and the pk query; ``None``: empty result."""
        pk_qs = self._pks(qs, kind)
        query = pk_qs.query
        compiler = query.get_compiler(using=db)
        try:
            sql, params = compiler.as_sql()
        except EmptyResultSet:
            return None
        # Inspected after compiling (which resets the joins' counts), on this copy alone.
        ordering = [expression for expression, _sql in compiler.get_order_by()]
        allowed = self._allowed_aliases(query)
        fields: set[str] = set()
        for node in (query.where, *ordering):
            self._collect(node, allowed, fields)
        manager = self._manager
        try:
            rendered = _render(list(params))
        except ValueError as error:
            raise _refuse(self.model, f"cannot cache this query: {error}.") from None
        text = "\0".join((kind, db, manager.schema, sql, rendered))
        digest = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
        namespace = manager._settings().namespace
        return _Plan(
            keys.query_generations_key(namespace, manager._label),
            keys.query_key(namespace, manager._label, digest),
            ["*", *sorted(fields)],
        )

    def _allowed_aliases(self, query: Query) -> set[str]:
        """The model's own table and its multi-table parents; any other join is refused."""
        allowed = set()
        for alias, join in query.alias_map.items():
            if not query.alias_refcount[alias] and alias != query.base_table:
                continue  # a join Django trimmed (org=1 reads org_id): not in the SQL
            link = getattr(join, "join_field", None)
            if link is None or (
                isinstance(link, models.OneToOneField) and link.remote_field.parent_link
            ):
                allowed.add(alias)
                continue
            raise _refuse(
                self.model,
                f"cannot cache a query that joins {join.table_name} (through {link.name}): a write "
                "to that table would not invalidate it. Use fields of the model itself (check "
                "order_by() and Meta.ordering too).",
            )
        return allowed

    def _collect(self, node: Any, allowed: set[str], fields: set[str]) -> None:
        """Add the attnames ``node`` reads to ``fields``; refuse what the key cannot describe."""
        if isinstance(node, _UNSAFE_NODES):
            raise _refuse(
                self.model,
                f"cannot cache a query that contains {type(node).__name__} (it is evaluated by "
                "the database at each run, or opaque); check the base manager and Meta.ordering.",
            )
        if isinstance(node, Col):
            if node.alias not in allowed:
                raise _refuse(self.model, f"cannot cache a query that reads {node.alias} (a join).")
            fields.add(node.target.attname)
            return
        sources = getattr(node, "get_source_expressions", None)
        if sources is not None:
            for child in sources():
                if child is not None:
                    self._collect(child, allowed, fields)

    def _decode(self, plan: _Plan, entry: bytes, kind: str) -> list[Any] | None:
        """The stored pks (or ``[count]``, ``[exists]``), ``None`` for an entry that is unusable."""
        try:
            found = self._manager.codec.serializer.loads(entry)
            expected = {COUNT: int, EXISTS: bool}.get(kind)
            if expected is not None and not (
                len(found) == 1 and type(found[0]) is expected  # bool is an int: exact types
            ):
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
    """The cached-query entry points of ``CacheAsideManager``."""

    def all(self: _Manager[M]) -> CachedQuery[M]:
        """Every row, as a cached query (``Model.cached.all()[:20]``)."""
        return _start(self)

    def filter(self: _Manager[M], *q: Q, **lookups: Any) -> CachedQuery[M]:
        """A cached query: its pks are cached under the model's query generations."""
        return _start(self).filter(*q, **lookups)

    def exclude(self: _Manager[M], *q: Q, **lookups: Any) -> CachedQuery[M]:
        return _start(self).exclude(*q, **lookups)

    def order_by(self: _Manager[M], *fields: str) -> CachedQuery[M]:
        return _start(self).order_by(*fields)

    def count(self: _Manager[M]) -> int:
        return _start(self).count()

    def exists(self: _Manager[M]) -> bool:
        return _start(self).exists()
