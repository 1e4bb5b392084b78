"""Which models are cached, and which entries a write to a model must drop.

Pure bookkeeping: the manager registers its model here; ``AppConfig.ready()`` binds managers
inherited from abstract or concrete parents to each concrete subclass and connects the receivers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.db import models
from django.db.models.signals import class_prepared

if TYPE_CHECKING:
    from django_cacheaside.managers import CacheAsideManager

_managers: dict[type[models.Model], CacheAsideManager[Any]] = {}
_families: dict[type[models.Model], list[type[models.Model]]] = {}
_wired = False


def add(model: type[models.Model], manager: CacheAsideManager[Any]) -> None:
    _managers[model] = manager
    _families.clear()
    if _wired:  # a model defined after startup (isolate_apps in a test, a model built at runtime)
        if _prepared(model):
            _connect(model)
        else:  # still inside its class statement
            class_prepared.connect(_when_prepared, sender=model, weak=False)


def _prepared(model: type[models.Model]) -> bool:
    return model._meta.concrete_model is not None


def _when_prepared(sender: type[models.Model], **kwargs: Any) -> None:
    class_prepared.disconnect(_when_prepared, sender=sender)
    _families.clear()
    _connect(sender)


def _connect(model: type[models.Model]) -> None:
    from django_cacheaside import receivers

    # Not in the app registry yet (Django registers a model after preparing it), or never (an
    # isolated registry): its own receivers are connected by name.
    receivers.connect_all(also=(model,))


def manager_for(model: type[models.Model]) -> CacheAsideManager[Any] | None:
    return _managers.get(model)


def cached_models() -> list[type[models.Model]]:
    return list(_managers)


def is_cached(model: type[models.Model]) -> bool:
    return model in _managers


def _concrete(model: type[models.Model]) -> type[models.Model]:
    concrete = model._meta.concrete_model
    assert concrete is not None
    return concrete


def family(model: type[models.Model]) -> list[type[models.Model]]:
    """Cached models whose entries hold columns of ``model``'s row, sharing its pk (one per table).

    A proxy shares its concrete model's entries. Multi-table inheritance spreads one object over
    several tables: a write to a child changes its parents' rows and a write to a parent changes
    what a cached child holds, so both directions are included.
    """
    try:
        return _families[model]
    except KeyError:
        pass
    concrete = _concrete(model)
    # One cached class per table family member: the concrete model, or else one of its proxies.
    by_concrete: dict[type[models.Model], type[models.Model]] = {}
    for cached in sorted(_managers, key=lambda m: (m._meta.proxy, m._meta.label_lower)):
        if _prepared(cached):  # not one whose class statement is still running
            by_concrete.setdefault(_concrete(cached), cached)
    related = {concrete, *concrete._meta.get_parent_list()}
    related.update(c for c in by_concrete if concrete in c._meta.get_parent_list())
    members = sorted((c for c in related if c in by_concrete), key=lambda c: c._meta.label_lower)
    result = [by_concrete[c] for c in members]
    _families[model] = result
    return result


def bind_inherited() -> None:
    """Give each concrete model that inherits a ``CacheAsideManager`` attribute a manager of its own."""
    from django_cacheaside.managers import CacheAsideManager

    for model in apps.get_models():
        if model in _managers:
            continue
        for klass in model.__mro__[1:]:
            inherited = next(
                (
                    (name, value)
                    for name, value in vars(klass).items()
                    if isinstance(value, CacheAsideManager)
                ),
                None,
            )
            if inherited is not None:
                name, manager = inherited
                manager.copy().contribute_to_class(model, name)
                break


def mark_wired() -> None:
    global _wired
    _wired = True


def models_to_watch() -> list[type[models.Model]]:
    """Every model whose saves and deletes must invalidate something, proxies included."""
    return [m for m in apps.get_models() if family(m)]


def register(
    model: type[models.Model] | str, *, name: str | None = None, **options: Any
) -> CacheAsideManager[Any]:
    """Attach a ``CacheAsideManager`` to a model you do not own: ``register(User, ttl=600)``.

    ``model`` is a class or an ``"app_label.ModelName"`` label; ``name`` defaults to the
    ``MANAGER_NAME`` setting (``"cached"``); ``options`` are ``CacheAsideManager``'s. Call it from an
    ``AppConfig.ready()``, or list the model in ``CACHEASIDE["MODELS"]``.
    """
    from django_cacheaside.conf import app_settings
    from django_cacheaside.managers import CacheAsideManager

    if isinstance(model, str):
        model = apps.get_model(model)
    attribute = name or app_settings.user_settings.get("MANAGER_NAME", "cached")
    existing = model.__dict__.get(attribute)
    if existing is not None:
        if isinstance(existing, CacheAsideManager):
            raise ValueError(
                f"{model._meta.label} is already registered as {model.__name__}.{attribute}."
            )
        raise ValueError(
            f"{model._meta.label} already has an attribute {attribute!r}; pass register(..., name=...)."
        )
    manager: CacheAsideManager[Any] = CacheAsideManager(**options)
    manager.contribute_to_class(model, attribute)
    return manager


def settings_models() -> dict[str, Any]:
    from django_cacheaside.conf import app_settings

    value = app_settings.user_settings.get("MODELS", {})
    return value if isinstance(value, dict) else {}


def register_from_settings() -> None:
    """Register ``CACHEASIDE["MODELS"]``; entries that cannot be are reported by cacheaside.E007."""
    for label, options in settings_models().items():
        try:
            register(label, **(options or {}))
        except (LookupError, ValueError, TypeError):
            continue
