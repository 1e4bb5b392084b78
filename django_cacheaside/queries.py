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

import hashlib
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, TypeVar, overload

from django.core.exceptions import EmptyResultSet
from django.db import models
from django.db.models import Q

from django_cacheaside import coalescing, keys, querycheck, signals
from django_cacheaside.backend import get_backend, report_error
from django_cacheaside.exceptions import CorruptEntry, NotCacheable

if TYPE_CHECKING:
    from django_cacheaside.coalescing import Flights
    from django_cacheaside.codec import Codec
    from django_cacheaside.lookups import LookupResolver
    from django_cacheaside.options import DerivedSettings

M = TypeVar("M", bound=models.Model)

LIST, COUNT, EXISTS = "list", "count", "exists"
GENERATIONS_TTL_FACTOR = 4  # the generations outlive the results filled under them


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

    _flights: Flights

    def option(self, name: str) -> Any: ...
    def _db(self) -> str: ...
    def _policy(self) -> tuple[str, bool | None]: ...
    def _ttl_ms(self, name: str = "TTL") -> int: ...
    def _base(self, db: str) -> models.QuerySet[M]: ...
    def get_many(self, pks: Iterable[Any]) -> dict[Any, M]: ...
    def key_for_pk(self, pk: Any) -> str: ...
    def _decode(self, db: str, key: str, entry: bytes | None) -> Any: ...


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


class CachedQuery(querycheck.RejectsQuerysetMethods, Generic[M]):
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
        checked = [querycheck.check_q(model, one) for one in q]
        for name in lookups:
            querycheck.check_path(model, name, "filter on")
        normal = {
            name: querycheck.check_value(model, name, lookups[name]) for name in sorted(lookups)
        }
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
                raise querycheck.refuse(
                    self.model, f"cannot order by an expression ({field!r}): use names."
                )
            if field == "?":
                raise querycheck.refuse(
                    self.model, "cannot order by '?' (random): it would freeze one order."
                )
            querycheck.check_path(self.model, field.removeprefix("-"), "order by")
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
                signals.cache_hit.send(sender=self.model, key=plan.key, negative=False)
                return result
        signals.cache_miss.send(sender=self.model, key=plan.key)
        if not fill or read.gens is None:
            return _direct(qs, kind)
        gens = read.gens

        def load() -> Any:
            coalescing.observing()
            started = time.perf_counter()
            value = _direct(_pks(qs, kind), kind)
            duration = time.perf_counter() - started
            self._fill(plan, gens, value if kind == LIST else [value], gens_ttl, duration)
            return value

        # Concurrent misses of one result in this process run the query once (as for get()).
        joined = time.monotonic()
        leading, value = manager._flights.run(
            ("query", db, plan.key), load, float(manager.option("LOCK_WAIT"))
        )
        if not leading and value is coalescing.LATE:
            value = load()  # the leader ran the query before we arrived: run it again
        elif not leading:
            outcome, waited = "coalesced", 0.0
            if value is None:  # LOCK_WAIT ran out waiting for this process's own query
                outcome, waited = "timeout", time.monotonic() - joined
            signals.cache_lease.send(
                sender=self.model, key=plan.key, outcome=outcome, waited=waited
            )
            value = _direct(_pks(qs, kind), kind) if value is None else value
            value = list(value) if kind == LIST else value  # never share the leader's list
        return self._resolve(db, value, hit=False) if kind == LIST else value

    def _resolve(self, db: str, pks: list[Any], hit: bool) -> list[M] | None:
        """The objects of ``pks`` in order, through ``get_many`` (one round trip of ``HGET``s when
        all are cached); after a hit, ``None`` says one no longer exists: the list predates its
        delete, run the query instead. A hit's pks were normalised by ``_decode``."""
        wanted = pks if hit else [self._manager._resolver.normalise_pk(pk) for pk in pks]
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
        fields = querycheck.inspect(
            self.model, query, ordering
        )  # after get_order_by: it adds its joins
        try:
            rendered = querycheck.render(list(params))
        except ValueError as error:
            raise querycheck.refuse(self.model, f"cannot cache this query: {error}.") from None
        manager = self._manager
        parts = [kind, db, manager.schema, sql, rendered]
        if manager.codec.signed:
            parts.append("signed")  # signed and unsigned results never share a key
        text = "\0".join(parts)
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
            found = self._manager.codec.decode_query(plan.key, entry)
            expected = {COUNT: int, EXISTS: bool}.get(kind)  # exact types: a bool is an int
            if expected is not None and not (len(found) == 1 and type(found[0]) is expected):
                raise CorruptEntry(f"{kind} entry holds {found!r}")
            if kind == LIST:
                found = self._pks_of(found)
        except CorruptEntry as error:
            report_error("decode", error)
            get_backend().delete([plan.key])  # the next read fills it again
            return None
        return found

    def _pks_of(self, found: list[Any]) -> list[Any]:
        """A list entry's pks, normalised; ``CorruptEntry`` if one could not be a pk."""
        normalise = self._manager._resolver.normalise_pk
        try:
            pks = [normalise(pk) for pk in found]
            dict.fromkeys(pks)  # get_many keys a dict by them
        except (ValueError, TypeError) as error:
            raise CorruptEntry(f"list entry holds a value that is not a pk: {error}") from None
        return pks

    def _fill(
        self, plan: _Plan, gens: bytes, values: list[Any], gens_ttl: int, duration: float
    ) -> None:
        try:
            entry = self._manager.codec.encode_query(plan.key, values)
        except NotCacheable:
            signals.cache_bypass.send(sender=self.model, reason="not_cacheable")
            return
        ttl = self._manager._ttl_ms()
        written = coalescing.confirming(
            lambda: get_backend().query_fill(
                plan.gens_key, plan.key, plan.fields, gens, entry, ttl, gens_ttl
            )
        )
        signals.cache_fill.send(sender=self.model, key=plan.key, written=written, duration=duration)


def _start(manager: _Manager[M]) -> CachedQuery[M]:
    model = manager.model
    assert model is not None, "the manager of an abstract model has no queries"
    return CachedQuery(manager, manager._base(manager._db()))


class QueryMethods(querycheck.RejectsQuerysetMethods):
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
