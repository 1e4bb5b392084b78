"""Dropping entries: by hand (``invalidate``, ``invalidate_tags``, ``invalidate_model``) and from
the receivers and bulk write paths.

An invalidation is a list of *operations*, delivered at once, so other processes stop serving the
old row as early as possible, and, inside ``atomic()``, once more when the transaction commits: a
read that filled the old row in between is undone. See :mod:`django_cacheaside.transactions`.

Operations (plain tuples, so a transaction's queue can drop duplicates):

``("DEL", key)``            an object entry or pointer, or a model's query generations (all of its
                            cached query results)
``("HDEL", key, *fields)``  the query generations of some fields (results that filter or order on
                            them)
``("ZREM", tag_key, key)``  an invalidated object leaves the set of one of its tags
``("PURGE", tag_key)``      every entry filled under a tag (:mod:`django_cacheaside.tags`)
``("SCAN", pattern)``       every key of a model, found by ``SCAN`` (``invalidate_model``)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, models, router

from django_cacheaside import keys, nearby, registry, replay, signals, transactions
from django_cacheaside.backend import Backend, get_backend
from django_cacheaside.conf import app_settings
from django_cacheaside.tags import check_tags

Operation = tuple[str, ...]


def deliver(
    operations: Sequence[Operation],
    backend: Backend | None = None,
    failed: list[Operation] | None = None,
) -> int:
    """Carry out ``operations``; answer how many object keys tag purges and scans deleted.

    Operations that could not be delivered are appended to ``failed`` when given, else kept for
    replay when Redis answers again (:mod:`django_cacheaside.replay`).
    """
    backend = backend or get_backend()
    undelivered: list[Operation] = []
    plain = [op for op in operations if op[0] in ("DEL", "HDEL", "ZREM")]
    if plain and not backend.invalidate(plain):
        undelivered += plain
    deleted = 0
    purged: list[str] = []
    purges = [op for op in operations if op[0] == "PURGE"]
    if purges:
        by_clock: dict[str, list[str]] = {}
        for op in purges:
            by_clock.setdefault(keys.clock_key(tag_namespace(op[1])), []).append(op[1])
        for clock, tag_keys in by_clock.items():
            members = backend.purge_tags(clock, tag_keys)
            purged += members or []
            if members is None:
                undelivered += [("PURGE", tag_key) for tag_key in tag_keys]
            elif backend.delete(members):
                deleted += len(members)
            else:
                undelivered += [("DEL", member) for member in members]
    for op in operations:
        if op[0] == "SCAN":
            found = backend.delete_matching(op[1])
            if found is None:
                undelivered.append(op)
            else:
                deleted += found
    if undelivered:
        if failed is not None:
            failed += undelivered
        else:
            replay.keep(backend, undelivered)
    nearby.discarded(operations, purged)  # after Redis: this process's near caches at once
    return deleted


def tag_namespace(tag_key: str) -> str:
    """The namespace a tag key was built in (a namespace never holds a brace)."""
    return tag_key[: tag_key.index("tag:{")]


def coarsen(operations: Iterable[Operation]) -> list[Operation]:
    """``SCAN`` operations that drop at least what ``operations`` drop: every key of each model
    they touch (for a tag purge, of every model with tags). Used when the operations themselves
    cannot be kept or delivered."""
    patterns: dict[str, None] = {}
    for op in operations:
        kind, key = op[0], op[1]
        if kind == "SCAN":
            patterns[key] = None
            continue
        if kind == "PURGE":
            namespace = tag_namespace(key)
            labels = [_manager(m)._label for m in tagged_models()]
        else:
            target = op[2] if kind == "ZREM" else key  # a tag set's member is an object key
            brace = target.index("{")
            namespace, labels = target[:brace], [target[brace + 1 : target.index(":", brace)]]
        for label in labels:
            patterns[keys.model_pattern(namespace, label)] = None
    return [("SCAN", pattern) for pattern in patterns]


def tagged_models() -> list[type[models.Model]]:
    """The cached models whose managers tag their rows."""
    return [m for m in registry.cached_models() if _manager(m)._tags.enabled]


def _manager(model: type[models.Model]) -> Any:
    manager = registry.manager_for(model)
    assert manager is not None
    return manager


def keys_for(model: type[models.Model], pk: Any, instance: models.Model | None = None) -> list[str]:
    """The keys a write to the row ``pk`` of ``model`` makes stale.

    The object key of every cached model sharing the row (proxies, multi-table parents and
    children), and for each of them that ``instance`` carries the fields of, the unique-lookup
    pointers for its current values, so a negative ("does not exist") pointer is cleared when a row
    with those values appears. Pointers for old values need no deleting: a pointer is checked
    against the object's own entry before it is trusted.
    """
    result: list[str] = []
    for member in registry.family(model):
        manager = _manager(member)
        resolver = manager._resolver
        pk_value = resolver.normalise_pk(pk)
        result.append(manager.key_for_pk(pk_value))
        if instance is None or not isinstance(instance, member._meta.concrete_model):  # type: ignore[arg-type]
            continue
        for lookup in resolver.instance_lookups(instance):
            result.append(manager.key_for_lookup(lookup))
    return result


def row_operations(
    model: type[models.Model],
    pk: Any,
    instance: models.Model | None = None,
    tags: Iterable[str] | None = None,
) -> list[Operation]:
    """Drop the entries of one row, and take it out of the tag sets it is in: those ``instance``
    says, or ``tags`` (the tags of ``model``'s own manager) when the caller knows them."""
    operations: list[Operation] = []
    for member in registry.family(model):
        manager = _manager(member)
        spec = manager._tags
        if not spec.enabled:
            continue
        if member is model and tags is not None:
            found: Iterable[str] | None = tags
        elif instance is not None and isinstance(instance, member):
            found = spec.of_loaded(instance)
        else:
            continue
        namespace = manager._settings().namespace
        key = manager.key_for_pk(manager._resolver.normalise_pk(pk))
        operations += [("ZREM", keys.tag_key(namespace, tag), key) for tag in found or ()]
    operations += [("DEL", key) for key in keys_for(model, pk, instance)]
    return operations


def query_operations(
    model: type[models.Model], fields: Iterable[str] | None = None
) -> list[Operation]:
    """Make the cached query results of ``model`` (and its family) stale: every result, or with
    ``fields`` (attnames) only those that depend on one of them."""
    operations: list[Operation] = []
    names = tuple(sorted(set(fields))) if fields is not None else None
    for member in registry.family(model):
        manager = _manager(member)
        key = keys.query_generations_key(manager._settings().namespace, manager._label)
        if names is None:
            operations.append(("DEL", key))
        elif names:
            operations.append(("HDEL", key, *names))
    return operations


def attnames(model: type[models.Model], names: Iterable[str]) -> list[str]:
    """The attnames of the fields ``names`` (names or attnames) of ``model``."""
    return [model._meta.get_field(name).attname for name in names]  # type: ignore[union-attr]


def apply(
    models_written: Sequence[type[models.Model]],
    operations: list[Operation],
    using: str,
    cause: str,
) -> int:
    """Deliver ``operations`` now and, inside a transaction on ``using``, again when it commits.

    The transaction stops reading ``models_written`` (and their families) from the cache;
    ``cache_invalidate`` is sent once per model in ``models_written``.
    """
    if not operations:
        return 0
    nearby.wrote()
    deleted = deliver(operations)
    labels = {keys.model_label(m) for model in models_written for m in registry.family(model)}
    transactions.queue(using, labels, operations, deliver)
    stale = [op[1] for op in operations if op[0] == "DEL"]
    for model in models_written:
        signals.cache_invalidate.send(sender=model, keys=stale, cause=cause)
    return deleted


def invalidate_instance(
    instance: models.Model, using: str, cause: str, fields: Iterable[str] | None = None
) -> None:
    """After a write of ``instance``: its entries, and the query results it may have changed
    (all of the model's, or with ``fields`` only those depending on them)."""
    model = type(instance)
    if instance.pk is None:
        return
    operations = row_operations(model, instance.pk, instance) + query_operations(model, fields)
    apply([model], operations, using, cause)


def invalidate_rows(
    model: type[models.Model],
    pks: Iterable[Any],
    instances: dict[Any, models.Model],
    fields: Iterable[str] | None,
    using: str,
    cause: str,
    tags: dict[Any, list[str]] | None = None,
) -> None:
    """After a bulk write of the rows ``pks`` (``instances`` and ``tags`` by pk where known)."""
    operations: list[Operation] = []
    for pk in pks:
        operations += row_operations(model, pk, instances.get(pk), (tags or {}).get(pk))
    operations += query_operations(model, fields)
    apply([model], operations, using, cause)


def _check_cached(model: type[models.Model]) -> None:
    if not registry.family(model):
        raise ValueError(f"{model.__name__} is not cached by django-cacheaside.")


def invalidate(obj: models.Model | type[models.Model], *, pk: Any = None) -> None:
    """Drop the cached entries of one object: ``invalidate(article)`` or ``invalidate(Article, pk=1)``.

    Saves, deletes and bulk writes through the ORM already do this; call it after writes Django
    cannot see (raw SQL, another program writing the table). The model's cached query results are
    dropped too: the write may have changed which rows they hold.
    """
    if isinstance(obj, models.Model):
        if pk is not None:
            raise TypeError("invalidate(instance) takes no pk; use invalidate(Model, pk=...).")
        _check_cached(type(obj))
        using = obj._state.db or router.db_for_write(type(obj))
        if obj.pk is not None:
            invalidate_instance(obj, using, "manual")
        return
    if not (isinstance(obj, type) and issubclass(obj, models.Model)):
        raise TypeError(f"invalidate() takes a model instance or a model class, not {obj!r}.")
    if pk is None:
        raise TypeError("invalidate(Model) needs pk=...; invalidate_model(Model) drops every row.")
    _check_cached(obj)
    operations = row_operations(obj, pk) + query_operations(obj)
    apply([obj], operations, router.db_for_write(obj), "manual")


def invalidate_tags(*tags: str, using: str = DEFAULT_DB_ALIAS) -> int:
    """Drop every entry filled under any of ``tags``, now and when the transaction open on
    ``using`` commits. Answers how many entries the immediate purge deleted.

    Cached query results of every model that has tags are dropped too (a tag purge says rows
    changed in ways the app did not see, which may change what a query returns).
    """
    names = check_tags(tags)
    if not names:
        return 0
    namespace = keys.namespace(app_settings.KEY_PREFIX)
    operations: list[Operation] = [("PURGE", keys.tag_key(namespace, tag)) for tag in names]
    tagged = tagged_models()
    for model in tagged:
        operations += query_operations(model)
    return apply(tagged, operations, using, "tag")


def invalidate_model(model: type[models.Model], *, using: str | None = None) -> int:
    """Drop every cached entry and query result of ``model`` (and of the models sharing its rows).

    For writes the app cannot see, like raw SQL. Entries are found with ``SCAN`` over the keyspace
    (never ``KEYS``), matching only this model's keys, and deleted in batches; query results are
    dropped in one command. Answers how many keys the immediate pass deleted.
    """
    if not (isinstance(model, type) and issubclass(model, models.Model)):
        raise TypeError(f"invalidate_model() takes a model class, not {model!r}.")
    _check_cached(model)
    operations: list[Operation] = []
    for member in registry.family(model):
        manager = _manager(member)
        pattern = keys.model_pattern(manager._settings().namespace, manager._label)
        operations.append(("SCAN", pattern))
    operations += query_operations(model)
    return apply([model], operations, using or router.db_for_write(model), "model")
