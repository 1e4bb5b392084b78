"""System checks (``manage.py check``). Ids are never reused; each is documented in docs/checks.md."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured
from django.db.models import QuerySet
from django.db.models.manager import BaseManager
from django.utils.module_loading import import_string

from django_cacheaside import registry
from django_cacheaside.conf import DEFAULTS, SETTING_NAME
from django_cacheaside.serializers.base import BaseSerializer

REDIS_BACKENDS = ("django_redis.cache.RedisCache", "django.core.cache.backends.redis.RedisCache")


def _positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _ttl_errors(where: str, options: dict[str, Any], obj: Any = None) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for name, check_id in (("TTL", "cacheaside.E003"), ("NEGATIVE_TTL", "cacheaside.E004")):
        if name in options and not _positive_number(options[name]):
            errors.append(
                Error(
                    f"{where} {name} is {options[name]!r}: every key must expire.",
                    hint=f"Set {name} to a number of seconds greater than 0 (e.g. 300).",
                    obj=obj,
                    id=check_id,
                )
            )
    if "LOCK_TTL" in options and not _positive_number(options["LOCK_TTL"]):
        errors.append(
            Error(
                f"{where} LOCK_TTL is {options['LOCK_TTL']!r}: a refill lease must expire.",
                hint="Set LOCK_TTL to a number of seconds greater than 0 (e.g. 5).",
                obj=obj,
                id="cacheaside.E010",
            )
        )
    wait = options.get("LOCK_WAIT", 0)
    if not (_positive_number(wait) or (wait == 0 and not isinstance(wait, bool))):
        errors.append(
            Error(
                f"{where} LOCK_WAIT is {wait!r}.",
                hint="Set LOCK_WAIT to a number of seconds, 0 or more (0: never wait).",
                obj=obj,
                id="cacheaside.E011",
            )
        )
    if "TTL_JITTER" in options:
        jitter = options["TTL_JITTER"]
        if not (
            isinstance(jitter, int | float) and not isinstance(jitter, bool) and 0 <= jitter < 1
        ):
            errors.append(
                Error(
                    f"{where} TTL_JITTER is {jitter!r}.",
                    hint="Use a fraction from 0 (no jitter) up to but excluding 1; 0.1 means +-10%.",
                    obj=obj,
                    id="cacheaside.E005",
                )
            )
    return errors


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    value = getattr(settings, SETTING_NAME, {})
    if not isinstance(value, dict):
        return [
            Error(
                f"settings.{SETTING_NAME} must be a dict, not {type(value).__name__}.",
                hint="Write CACHEASIDE = {'TTL': 300, ...}.",
                id="cacheaside.E001",
            )
        ]
    errors: list[CheckMessage] = []
    unknown = sorted(set(value) - set(DEFAULTS))
    if unknown:
        errors.append(
            Error(
                f"Unknown key(s) in settings.{SETTING_NAME}: {', '.join(unknown)}.",
                hint=f"Valid keys: {', '.join(sorted(DEFAULTS))}.",
                id="cacheaside.E002",
            )
        )
    errors += _ttl_errors(f"settings.{SETTING_NAME}", value)
    if not value.get("REDIS"):
        alias = value.get("CACHE_ALIAS", DEFAULTS["CACHE_ALIAS"])
        backend = settings.CACHES.get(alias, {}).get("BACKEND")
        if backend not in REDIS_BACKENDS:
            errors.append(
                Error(
                    f"CACHEASIDE uses CACHES[{alias!r}], whose BACKEND is {backend!r}, not Redis.",
                    hint="Point CACHE_ALIAS at a django_redis.cache.RedisCache (or Django's RedisCache) "
                    "alias, or set CACHEASIDE['REDIS'] to a redis:// URL.",
                    id="cacheaside.E006",
                )
            )
    errors += _model_entry_errors(value.get("MODELS", {}))
    serializer = value.get("SERIALIZER", DEFAULTS["SERIALIZER"])
    try:
        serializer_class = import_string(serializer) if isinstance(serializer, str) else serializer
        valid = isinstance(serializer_class, type) and issubclass(serializer_class, BaseSerializer)
    except ImportError:
        valid = False
    if not valid:
        errors.append(
            Error(
                f"CACHEASIDE['SERIALIZER'] is {serializer!r}, not an importable BaseSerializer subclass.",
                hint="Use 'django_cacheaside.serializers.msgpack.MsgpackSerializer' (the default).",
                id="cacheaside.E008",
            )
        )
    elif serializer_class.runs_code_from_input and value.get("SIGN_ENTRIES") is not True:
        errors.append(
            Warning(
                f"CACHEASIDE['SERIALIZER'] is {serializer_class.__module__}."
                f"{serializer_class.__qualname__}, which can run code named by the bytes it "
                "decodes: anyone who can write to your Redis can run code in your processes.",
                hint="Use the default 'django_cacheaside.serializers.msgpack.MsgpackSerializer', "
                "or set CACHEASIDE['SIGN_ENTRIES'] = True so that only entries this app signed "
                "are decoded.",
                id="cacheaside.W002",
            )
        )
    errors += _stats_errors(value)
    errors += _reliability_errors(value)
    prefix = value.get("KEY_PREFIX", "")
    if not isinstance(prefix, str) or any(c in prefix for c in "{} "):
        errors.append(
            Error(
                f"CACHEASIDE['KEY_PREFIX'] is {prefix!r}.",
                hint="Use a string without spaces or braces, e.g. 'myapp-prod'.",
                id="cacheaside.E009",
            )
        )
    return errors


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


# (setting, valid?, hint, check id) of the breaker's and the replay's numbers.
_RELIABILITY_NUMBERS = (
    (
        "BREAKER_THRESHOLD",
        _positive_int,
        "Set BREAKER_THRESHOLD to a whole number of consecutive failures, 1 or more (e.g. 5).",
        "cacheaside.E017",
    ),
    (
        "BREAKER_COOLDOWN",
        _positive_number,
        "Set BREAKER_COOLDOWN to a number of seconds greater than 0 (e.g. 5).",
        "cacheaside.E017",
    ),
    (
        "REPLAY_LIMIT",
        _positive_int,
        "Set REPLAY_LIMIT to a whole number of invalidations, 1 or more (e.g. 10000).",
        "cacheaside.E018",
    ),
)


def _reliability_errors(value: dict[str, Any]) -> list[CheckMessage]:
    """Socket timeouts, the circuit breaker, invalidation replay, entry signing."""
    errors: list[CheckMessage] = []
    for name in ("SOCKET_TIMEOUT", "SOCKET_CONNECT_TIMEOUT"):
        timeout = value.get(name, DEFAULTS[name])
        if timeout is not None and not _positive_number(timeout):
            errors.append(
                Error(
                    f"CACHEASIDE[{name!r}] is {timeout!r}.",
                    hint=f"Set {name} to a number of seconds greater than 0 (e.g. 0.25), or to "
                    "None to keep the Redis client's own timeout.",
                    id="cacheaside.E016",
                )
            )
    for name, valid, hint, check_id in _RELIABILITY_NUMBERS:
        setting = value.get(name, DEFAULTS[name])
        if not valid(setting):
            errors.append(Error(f"CACHEASIDE[{name!r}] is {setting!r}.", hint=hint, id=check_id))
    acks = value.get("REPLICA_ACKS", DEFAULTS["REPLICA_ACKS"])
    if not (isinstance(acks, int) and not isinstance(acks, bool) and acks >= 0):
        errors.append(
            Error(
                f"CACHEASIDE['REPLICA_ACKS'] is {acks!r}.",
                hint="Set REPLICA_ACKS to a whole number of replicas, 0 or more (1 with Sentinel "
                "or a Redis Cluster with replicas; 0 for a single Redis).",
                id="cacheaside.E020",
            )
        )
    if not isinstance(value.get("SIGN_ENTRIES", False), bool):
        errors.append(
            Error(
                f"CACHEASIDE['SIGN_ENTRIES'] is {value['SIGN_ENTRIES']!r}.",
                hint="Use True (sign every entry with a key derived from SECRET_KEY) or False.",
                id="cacheaside.E019",
            )
        )
    return errors


def _stats_errors(value: dict[str, Any]) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    if not isinstance(value.get("STATS", True), bool):
        errors.append(
            Error(
                f"CACHEASIDE['STATS'] is {value['STATS']!r}.",
                hint="Use True (count hits, misses... per model) or False (count nothing).",
                id="cacheaside.E013",
            )
        )
    flush = value.get("STATS_FLUSH", DEFAULTS["STATS_FLUSH"])
    retention = value.get("STATS_RETENTION", DEFAULTS["STATS_RETENTION"])
    if not _positive_number(flush):
        errors.append(
            Error(
                f"CACHEASIDE['STATS_FLUSH'] is {flush!r}.",
                hint="Use a number of seconds greater than 0 between two flushes (e.g. 5).",
                id="cacheaside.E014",
            )
        )
    if not _positive_number(retention) or retention < 60:
        errors.append(
            Error(
                f"CACHEASIDE['STATS_RETENTION'] is {retention!r}.",
                hint="Use a number of seconds of at least 60 (one minute bucket); the default "
                "keeps 7 days (604800).",
                id="cacheaside.E015",
            )
        )
    return errors


def _model_entry_errors(entries: Any) -> list[CheckMessage]:
    if not isinstance(entries, dict):
        return [
            Error(
                "CACHEASIDE['MODELS'] must be a dict of {'app_label.ModelName': {options}}.",
                hint="For example {'auth.User': {'ttl': 600}}.",
                id="cacheaside.E007",
            )
        ]
    errors: list[CheckMessage] = []
    for label, options in entries.items():
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            errors.append(
                Error(
                    f"CACHEASIDE['MODELS'] names {label!r}, which is not an installed model.",
                    hint="Use 'app_label.ModelName' of a model in INSTALLED_APPS.",
                    id="cacheaside.E007",
                )
            )
            continue
        if not registry.is_cached(model):
            errors.append(
                Error(
                    f"CACHEASIDE['MODELS'][{label!r}] could not be registered with options {options!r}.",
                    hint="Options are CacheAsideManager's: ttl, negative_ttl, jitter; and the model must "
                    "not already have an attribute named like MANAGER_NAME.",
                    id="cacheaside.E007",
                )
            )
    return errors


_BULK_WRITES = ("update", "bulk_update", "bulk_create")


def _overrides(klass: type, base: type, name: str) -> type | None:
    """The first class of ``klass``'s MRO, before ``base``, that defines ``name``."""
    for candidate in klass.__mro__:
        if candidate is base:
            return None
        if name in vars(candidate):
            return candidate
    return None


def _calls_super(method: Any) -> bool:
    """Whether an override reaches Django's method: it refers to ``super``, or it is one of the
    proxies ``Manager.from_queryset()`` generates (they call the queryset's method)."""
    if hasattr(method, "__wrapped__"):
        return True
    code = getattr(getattr(method, "__func__", method), "__code__", None)
    return code is None or "super" in code.co_names


def _bulk_write_warnings(model: Any) -> list[CheckMessage]:
    warnings: list[CheckMessage] = []
    for manager in model._meta.managers:
        queryset_class = getattr(manager, "_queryset_class", QuerySet)
        for name in _BULK_WRITES:
            for klass, base in ((queryset_class, QuerySet), (type(manager), BaseManager)):
                found = _overrides(klass, base, name)
                if found is None or _calls_super(vars(found)[name]):
                    continue
                warnings.append(
                    Warning(
                        f"{model._meta.label}.{manager.name} uses {found.__module__}."
                        f"{found.__qualname__}.{name}(), which overrides Django's. django-cacheaside "
                        f"invalidates cached rows in QuerySet.{name}(), and this override does not "
                        "call super(): its writes would leave stale entries.",
                        hint=f"Call super().{name}(...) in the override, or call "
                        f"django_cacheaside.invalidate_model({model.__name__}) after it.",
                        obj=model,
                        id="cacheaside.W001",
                    )
                )
    return warnings


def check_managers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for model in registry.cached_models():
        manager = registry.manager_for(model)
        assert manager is not None
        given = {k: v for k, v in manager.explicit_options().items()}
        where = f"{model._meta.label}.{manager.name}"
        errors += _ttl_errors(where, given, obj=model)
        try:
            manager._tags.fields(model)
        except ImproperlyConfigured as exc:
            errors.append(
                Error(
                    f"{where}: {exc}",
                    hint="tags= takes names of the model's own fields (e.g. tags=('org',)) or a "
                    "callable returning the tags of a row.",
                    obj=model,
                    id="cacheaside.E012",
                )
            )
        errors += _bulk_write_warnings(model)
    return errors
