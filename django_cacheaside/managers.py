"""``CacheAsideManager``: read through Redis, fill from the database, never serve a stale row.

A read is: normalise the lookup (``lookups``), build the key (``keys``), ``HGET`` the entry
(``backend``), decode it (``serializers``) and build the instance with ``Model.from_db``. A miss reads
the object's stamp, loads the row, and fills only if the stamp did not change meanwhile.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Generic, cast

from django.db import connections, models, router

from django_cacheaside import (
    aio,
    batch,
    coalescing,
    fills,
    keys,
    locks,
    nearby,
    registry,
    signals,
    transactions,
)
from django_cacheaside.backend import UNAVAILABLE, Read, get_backend, report_error
from django_cacheaside.coalescing import Flights
from django_cacheaside.codec import ANY_PK, NOT_FOUND, Codec
from django_cacheaside.conf import app_settings
from django_cacheaside.exceptions import CorruptEntry
from django_cacheaside.lookups import Lookup, LookupResolver
from django_cacheaside.near import clone, mutable_attnames
from django_cacheaside.options import UNSET, DerivedSettings, ManagerOptions
from django_cacheaside.queries import QueryMethods
from django_cacheaside.refresh import RefreshPolicy
from django_cacheaside.tags import TagsOption, TagSpec

if TYPE_CHECKING:
    from typing_extensions import TypeVar

    # A default, so `cached = CacheAsideManager()` needs no annotation; `Article.cached` is then
    # typed CacheAsideManager[Article] through __get__.
    M = TypeVar("M", bound=models.Model, default=models.Model)
    Owner = TypeVar("Owner", bound=models.Model)
else:
    from typing import TypeVar

    M = TypeVar("M", bound=models.Model)
    Owner = TypeVar("Owner", bound=models.Model)


class CacheAsideManager(QueryMethods, Generic[M]):
    """Cache-aside reads for one model: ``Model.cached.get(pk=1)``, ``Model.cached.get_many(pks)``.

    Not a Django ``Manager``: it never becomes the default manager, never appears in migrations and
    offers only the reads it can keep correct. Every option defaults to the ``CACHEASIDE`` setting of
    the same name.

    :param ttl: seconds an entry lives (``TTL``), jittered by ``jitter``.
    :param negative_ttl: seconds a "does not exist" answer lives (``NEGATIVE_TTL``).
    :param jitter: fraction of the TTL added or removed at random (``TTL_JITTER``).
    :param lock_ttl: seconds a refill lease lives (``LOCK_TTL``).
    :param lock_wait: seconds a reader waits for another's refill before reading the database
        itself (``LOCK_WAIT``).
    :param early_refresh: refresh hot entries shortly before they expire (XFetch), see
        :mod:`django_cacheaside.refresh`; ``beta`` scales how early (default 1).
    :param stale_ttl: seconds an expired entry may still be served while one caller refreshes it.
    :param tags: field names (``tags=("org",)`` tags a row ``org:<org_id>``) or a callable
        ``obj -> iterable of str``; ``invalidate_tags("org:5")`` drops every entry filled under a
        tag. See :mod:`django_cacheaside.tags`.
    :param near_cache: keep hits of ``get(pk=...)`` in process memory too, invalidated by Redis
        pushing every write (``True``, or a dict of ``max_entries``, ``max_bytes`` and ``ttl``,
        defaults 1000, 8 MiB and 2 s). See :mod:`django_cacheaside.nearby`.
    """

    def __init__(
        self,
        *,
        ttl: float | None = UNSET,
        negative_ttl: float | None = UNSET,
        jitter: float | None = UNSET,
        lock_ttl: float | None = UNSET,
        lock_wait: float | None = UNSET,
        early_refresh: bool = False,
        beta: float = 1.0,
        stale_ttl: float = 0,
        tags: TagsOption = None,
        near_cache: bool | dict[str, Any] = False,
    ) -> None:
        self._options = ManagerOptions(
            TTL=ttl, NEGATIVE_TTL=negative_ttl, TTL_JITTER=jitter, LOCK_TTL=lock_ttl,
            LOCK_WAIT=lock_wait,
        )  # fmt: skip
        self.model: type[M] | None = None
        self.name: str | None = None
        self._current: DerivedSettings | None = None
        self._flights = Flights()
        self._aflights = aio.AsyncFlights()
        self._refresh = RefreshPolicy(early_refresh, beta, stale_ttl)
        self._tags = TagSpec(tags)
        self._near_option = near_cache
        self._near = nearby.near_cache(near_cache)

    # -- wiring --------------------------------------------------------------------------------

    def copy(self) -> CacheAsideManager[M]:
        given = self._options.given
        return CacheAsideManager(
            ttl=given["TTL"],
            negative_ttl=given["NEGATIVE_TTL"],
            jitter=given["TTL_JITTER"],
            lock_ttl=given["LOCK_TTL"],
            lock_wait=given["LOCK_WAIT"],
            early_refresh=self._refresh.early_refresh,
            beta=self._refresh.beta,
            stale_ttl=self._refresh.stale_ms / 1000,
            tags=self._tags.option,
            near_cache=self._near_option,
        )

    def contribute_to_class(self, model: type[M], name: str) -> None:
        self.name = name
        setattr(model, name, self)
        if model._meta.abstract:
            return  # concrete subclasses get their own copy in AppConfig.ready()
        self.model = model
        registry.add(model, self)

    # The model's fields are not all there yet when contribute_to_class runs: derive lazily.
    @functools.cached_property
    def _resolver(self) -> LookupResolver:
        assert self.model is not None
        return LookupResolver(self.model)

    @functools.cached_property
    def _mutable(self) -> tuple[str, ...]:
        """The columns whose values a near hit copies deeply (JSON and the like)."""
        assert self.model is not None
        return mutable_attnames(self.model)

    @functools.cached_property
    def _label(self) -> str:
        assert self.model is not None
        return keys.model_label(self.model)

    def __get__(self, instance: Any, owner: type[Owner]) -> CacheAsideManager[Owner]:
        if instance is not None:
            raise AttributeError(
                f"{self.name} is accessible via {owner.__name__}, not its instances."
            )
        if owner is self.model:
            return cast("CacheAsideManager[Owner]", self)
        bound = registry.manager_for(owner)
        if bound is None:
            raise AttributeError(
                f"{owner.__name__}.{self.name} is not bound to {owner.__name__} yet: "
                "add django_cacheaside to INSTALLED_APPS (it binds inherited managers when ready)."
            )
        return bound

    # -- options -------------------------------------------------------------------------------

    def explicit_options(self) -> dict[str, Any]:
        """The options given to the constructor (setting names as keys), defaults left out."""
        return self._options.explicit()

    def option(self, name: str) -> Any:
        return self._options.get(name)

    def _ttl_ms(self, name: str = "TTL") -> int:
        return self._options.ttl_ms(name)

    def _settings(self) -> DerivedSettings:
        current = self._current
        if current is None or current.generation != app_settings.generation:
            assert self.model is not None
            current = self._current = DerivedSettings(self.model, self._label)
        return current

    @property
    def codec(self) -> Codec:
        return self._settings().codec

    @property
    def schema(self) -> str:
        """The schema stamp entries of this model are written under (see ``keys.schema_stamp``)."""
        return self._settings().codec.schema

    def key_for_pk(self, pk: Any) -> str:
        head = self._settings().key_head
        return f"{head}{keys.key_part(pk)}}}"

    def key_for_lookup(self, lookup: Lookup) -> str:
        return keys.lookup_key(self._settings().namespace, self._label, lookup.items)

    # -- reads ---------------------------------------------------------------------------------

    def _db(self) -> str:
        """Where rows are read from: the primary, as a write would go (every row, never a lagging
        replica)."""
        model = self.model
        assert model is not None
        return router.db_for_write(model) if router.routers else "default"

    def _policy(self) -> tuple[str, bool | None]:
        """``(db, fill)``: fill is ``None`` when this transaction wrote the model (bypass)."""
        model = self.model
        assert model is not None
        db = self._db()
        conn = connections[db]
        if not conn.in_atomic_block:
            return db, True
        if transactions.wrote(conn, self._label):
            signals.cache_bypass.send(sender=model, reason="dirty")
            return db, None
        return db, transactions.fill_is_safe(conn)

    def get(self, **lookups: Any) -> M:
        """The instance matching a cacheable lookup; raises ``DoesNotExist`` like the ORM.

        Cacheable lookups: the primary key, one unique field, or one unique-together set, by exact
        value (see :mod:`django_cacheaside.lookups`). Anything else is a ``ValueError``.
        """
        if len(lookups) == 1 and "pk" in lookups:
            resolver = self._resolver
            lookup = Lookup(((resolver.pk_attname, resolver.normalise_pk(lookups["pk"])),), True)
        else:
            lookup = self._resolver.resolve(lookups)
        db, fill = self._policy()
        if fill is None:
            return self._load_or_raise(db, lookup)
        if lookup.is_pk:
            return self._get_pk(db, lookup, fill)
        return self._get_unique(db, lookup, fill)

    def _decode(self, db: str, key: str, entry: bytes | None, pk: Any = ANY_PK) -> Any:
        """``entry`` read under ``key`` (for primary key ``pk``, if given), decoded; ``None`` when
        it is absent or unusable (reported)."""
        if entry is None:
            return None
        try:
            found = self.codec.decode(db, entry, key, pk)
        except CorruptEntry as exc:
            report_error("decode", exc)
            return None
        if found is not None:
            signals.cache_hit.send(sender=self.model, key=key, negative=found is NOT_FOUND)
        return found

    def _lookup_entry(self, db: str, key: str, fill: bool) -> tuple[Any, Read]:
        """The decoded entry under ``key`` (or ``None``) and, on a miss, the stamp to fill with."""
        entry = get_backend().read(key)
        found = self._decode(db, key, entry)
        if found is not None:
            return found, UNAVAILABLE
        found, read, _raw = self._begin(db, key, fill, replace=entry is not None)
        return found, read

    def _begin(
        self, db: str, key: str, fill: bool, replace: bool, pk: Any = ANY_PK
    ) -> tuple[Any, Read, bytes | None]:
        """After a miss: the stamp and the refill lease, or another process's fill to wait for.

        ``(found, read, raw)``: ``found`` decoded from ``raw`` if an entry appeared meanwhile; else
        ``read`` says what to fill with (``read.lease`` set when this call must fill or release it).
        ``replace`` asks for the stamp even though an (unusable) entry is there.
        """
        found, read, raw = None, UNAVAILABLE, None
        if fill:
            backend = get_backend()
            lease = locks.new_lease(key, float(self.option("LOCK_TTL")))
            ttl = self._ttl_ms()
            coalescing.observing()
            read = backend.read_or_begin(key, ttl, entry=not replace, lease=lease)
            raw = read.entry
            found = self._decode(db, key, raw, pk)
            if found is None and read.stamp is not None and read.lease is None:
                waited_for: list[bytes | None] = []

                def decode(entry: bytes | None) -> Any:
                    waited_for.append(entry)
                    return self._decode(db, key, entry, pk)

                found, read, waited = locks.wait_for_fill(
                    backend, key, ttl, lease, decode, float(self.option("LOCK_WAIT"))
                )
                raw = waited_for[-1] if found is not None else None
                outcome = "waited" if found is not None else "acquired" if read.lease else "timeout"
                signals.cache_lease.send(sender=self.model, key=key, outcome=outcome, waited=waited)
            elif read.lease is not None:
                signals.cache_lease.send(sender=self.model, key=key, outcome="acquired", waited=0.0)
        if found is None:
            signals.cache_miss.send(sender=self.model, key=key)
        return found, read, raw

    def _refill(self, db: str, lookup: Lookup, key: str, replace: bool) -> tuple[Any, bytes | None]:
        """Leader of a miss: ``(row or NOT_FOUND, its entry bytes or None if not cacheable)``."""
        found, read, raw = self._begin(db, key, True, replace, lookup.items[0][1])
        if found is not None:
            return found, raw
        return fills.load_and_fill(self, db, lookup, key, read)

    def _refresh_now(self, db: str, lookup: Lookup, key: str, reason: str) -> Any:
        """Refresh a hit's entry if no one else is: the new row, or ``None`` (serve the entry)."""
        lease = locks.new_lease(key, float(self.option("LOCK_TTL")))
        read = get_backend().read_or_begin(key, self._ttl_ms(), entry=False, lease=lease)
        if read.lease is None or read.stamp is None:
            return None
        signals.cache_refresh.send(sender=self.model, key=key, reason=reason)
        try:
            return fills.load_and_fill(self, db, lookup, key, read)[0]
        except Exception as error:  # the entry we have is still good: serve it
            report_error("refresh", error)
            return None

    def _refreshed(self, db: str, lookup: Lookup, key: str, reason: str, found: Any) -> Any:
        """A hit whose entry is due for a refresh (``reason``): the refreshed row, or ``found``."""
        refreshed = self._refresh_now(db, lookup, key, reason)
        if refreshed is not None:
            return refreshed
        if reason == "stale":
            signals.cache_stale.send(sender=self.model, key=key)
        return found

    def _near_hit(self, backend: Any, key: str, fill: bool) -> tuple[Any, int | None]:
        """``(a copy of the near entry, None)`` on a near hit; else ``(None, a ticket for
        _near_keep)``, or ``(None, None)`` when the near cache may not be used now."""
        near = self._near
        assert near is not None
        if not fill or nearby.bypassed():
            return None, None
        nearby.ensure_tracking(backend, self._settings().namespace)
        # Whether an invalidation is pending, first: one applied after that check has emptied
        # the entry before the get below (the other order could serve what it just discarded).
        kept = None if nearby.behind() else near.get(key)
        if kept is not None:
            signals.cache_hit.send(sender=self.model, key=key, negative=False)
            return clone(kept, self._mutable), None
        return None, near.ticket()  # before the read: an invalidation after it refuses the put

    def _near_keep(self, key: str, ticket: int, entry: bytes | None, found: Any) -> None:
        """Keep ``found``, a hit read from Redis under ``ticket``, in the near cache."""
        if entry is not None and isinstance(found, self.model):  # type: ignore[arg-type]
            assert self._near is not None
            self._near.put(key, clone(found, self._mutable), len(entry), ticket)

    def _get_pk(self, db: str, lookup: Lookup, fill: bool) -> M:
        pk = lookup.items[0][1]
        key = self.key_for_pk(pk)
        backend = get_backend()
        ticket = None
        if self._near is not None:
            kept, ticket = self._near_hit(backend, key, fill)
            if kept is not None:
                return kept  # type: ignore[no-any-return]
        entry = backend.read(key)
        found = self._decode(db, key, entry, pk)
        if found is not None and self._refresh.enabled and fill:
            assert entry is not None
            reason = self._refresh.due(entry)
            if reason is not None:
                found = self._refreshed(db, lookup, key, reason, found)
                ticket = None  # a refreshed row: the next read keeps it
        if ticket is not None:
            self._near_keep(key, ticket, entry, found)
        if found is None and not fill:
            signals.cache_miss.send(sender=self.model, key=key)
            found, _duration = self._load(db, lookup)
        elif found is None:
            replace = entry is not None
            joined = time.monotonic()
            leading, result = self._flights.run(
                (db, key),
                lambda: self._refill(db, lookup, key, replace),
                float(self.option("LOCK_WAIT")),
            )
            if leading:
                found = result[0]
            elif result is coalescing.LATE:
                # The leader read before we arrived: do it again ourselves (a hit, if its fill
                # was written).
                found = self._refill(db, lookup, key, replace)[0]
            elif result is None:
                # LOCK_WAIT ran out waiting for this process's own load: read, do not fill.
                waited = time.monotonic() - joined
                signals.cache_lease.send(
                    sender=self.model, key=key, outcome="timeout", waited=waited
                )
                signals.cache_miss.send(sender=self.model, key=key)
                found, _duration = self._load(db, lookup)
            else:
                # A concurrent caller in this process loaded the row: build our own instance from
                # its entry bytes (never share an instance between callers).
                signals.cache_lease.send(
                    sender=self.model, key=key, outcome="coalesced", waited=0.0
                )
                shared = result[1]
                found = self._decode(db, key, shared, pk) if shared is not None else None
                if found is None:
                    found, _duration = self._load(db, lookup)
        if found is NOT_FOUND:
            raise self._does_not_exist()
        if not isinstance(found, self.model):  # type: ignore[arg-type]
            raise self._does_not_exist()  # a pointer under an object key: treat as absent
        return found

    def _get_unique(self, db: str, lookup: Lookup, fill: bool) -> M:
        key = self.key_for_lookup(lookup)
        found, read = self._lookup_entry(db, key, fill)
        if found is NOT_FOUND:
            raise self._does_not_exist()
        if isinstance(found, tuple):
            # A pointer is a hint: the object's own entry (kept exact by invalidation) must still
            # carry the looked-up values, or the pointer is stale (the value moved to another row).
            pk_lookup = Lookup(((self._resolver.pk_attname, found[0]),), True)
            try:
                obj = self._get_pk(db, pk_lookup, fill)
            except self.model.DoesNotExist:  # type: ignore[union-attr]
                obj = None
            if obj is not None and all(getattr(obj, a) == v for a, v in lookup.items):
                return obj
            get_backend().delete([key])
            return self._load_or_raise(db, lookup)
        loaded, _entry = fills.load_and_fill(self, db, lookup, key, read, pointer=True)
        if loaded is NOT_FOUND:
            raise self._does_not_exist()
        return loaded  # type: ignore[no-any-return]

    def get_many(self, pks: Iterable[Any]) -> dict[Any, M]:
        """``{pk: instance}`` for the pks that exist, in the order given; missing pks are left out.

        One Redis round trip of ``HGET``s; with misses, one for their stamps and leases, one
        ``pk__in`` query and one pipelined fill.
        """
        return batch.get_many(self, pks)

    # -- async twins (see django_cacheaside.aio) ------------------------------------------------

    async def aget(self, **lookups: Any) -> M:
        """:meth:`get`, awaited: a hit's ``HGET`` on ``redis.asyncio``, a miss through the sync
        path in a worker thread; concurrent misses of one key in one event loop load it once."""
        return await aio.aget(self, lookups)  # type: ignore[no-any-return]

    async def aget_many(self, pks: Iterable[Any]) -> dict[Any, M]:
        """:meth:`get_many`, awaited: the hits in one async round trip, the misses through the
        sync path in a worker thread."""
        return await aio.aget_many(self, pks)

    async def afilter(self, *q: Any, **lookups: Any) -> list[M]:
        """``list(self.filter(...))``, awaited: the cached query, evaluated in a worker thread as
        Django's async queryset methods are."""
        return await aio.afilter(self, *q, **lookups)

    # -- loading and filling -------------------------------------------------------------------

    def _base(self, db: str) -> models.QuerySet[M]:
        # The base manager: every row, whatever filter the default manager applies.
        return self.model._base_manager.db_manager(db).all()  # type: ignore[union-attr]

    def _load(self, db: str, lookup: Lookup) -> tuple[Any, float]:
        """The row (or ``NOT_FOUND``) and the seconds the query took."""
        coalescing.observing()
        started = time.perf_counter()
        try:
            obj: Any = self._base(db).get(**lookup.as_filter())
        except self.model.DoesNotExist:  # type: ignore[union-attr]
            obj = NOT_FOUND
        return obj, time.perf_counter() - started

    def _load_or_raise(self, db: str, lookup: Lookup) -> M:
        obj, _duration = self._load(db, lookup)
        if obj is NOT_FOUND:
            raise self._does_not_exist()
        return obj  # type: ignore[no-any-return]

    def _does_not_exist(self) -> Exception:
        model: Any = self.model
        error: Exception = model.DoesNotExist(
            f"{model._meta.object_name} matching query does not exist."
        )
        return error
