"""The ``CACHEASIDE`` setting: one dict, read lazily, every key with its default.

``app_settings.TTL`` reads ``settings.CACHEASIDE["TTL"]`` (or the default) on first use and keeps it
until Django's ``setting_changed`` signal says ``CACHEASIDE`` changed, so ``override_settings`` works
and nothing is read at import time.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

SETTING_NAME = "CACHEASIDE"

DEFAULTS: dict[str, Any] = {
    # Alias in settings.CACHES whose redis-py client the app borrows (django-redis or Django's own
    # Redis backend).
    "CACHE_ALIAS": "default",
    # A redis:// URL, or a dotted path to a callable returning a redis-py client. When set it is used
    # instead of CACHE_ALIAS.
    "REDIS": None,
    # Prepended to every key as "<KEY_PREFIX>:ca:..."; one per environment or tenant.
    "KEY_PREFIX": "",
    # Seconds an entry lives before it must be loaded again.
    "TTL": 300,
    # Seconds a "does not exist" answer is remembered.
    "NEGATIVE_TTL": 30,
    # Fraction of the TTL added or removed at random (0.1 means +-10%).
    "TTL_JITTER": 0.1,
    # Seconds a refill lease lives: a crashed loader delays the others at most this long.
    "LOCK_TTL": 5,
    # Seconds a reader waits for another process's refill before reading the database itself.
    "LOCK_WAIT": 2,
    # Dotted path to a serializer class (see django_cacheaside.serializers).
    "SERIALIZER": "django_cacheaside.serializers.msgpack.MsgpackSerializer",
    # {"app_label.ModelName": {manager options}}: models to register without touching their code.
    "MODELS": {},
    # Name of the attribute that MODELS entries get (Model.<MANAGER_NAME>).
    "MANAGER_NAME": "cached",
    # Seconds between two "Redis is failing" warnings in the log.
    "ERROR_LOG_INTERVAL": 60,
    # Seconds to wait for a reply / for a new connection before answering from the database.
    # Applied to the app's own connections to a plain Redis (None: keep the client's own setting).
    "SOCKET_TIMEOUT": 0.25,
    "SOCKET_CONNECT_TIMEOUT": 0.25,
    # Consecutive Redis failures (refused, timed out, reset, garbage) that open the circuit
    # breaker: while it is open the app does not call Redis at all.
    "BREAKER_THRESHOLD": 5,
    # Seconds the breaker stays open before a background probe asks Redis again (also the longest
    # wait between two replays of lost invalidations).
    "BREAKER_COOLDOWN": 5,
    # Invalidations a process keeps while Redis cannot be reached, to replay when it answers again.
    # Past this many, the models they touch are purged (by SCAN) on recovery instead.
    "REPLAY_LIMIT": 10_000,
    # Replicas that must hold an invalidation before the write that made it goes on (Redis WAIT,
    # at most half of SOCKET_TIMEOUT): with 1, a failover to a replica cannot bring back an entry
    # that was invalidated. 0: do not wait (a single Redis, or replicas you never fail over to).
    "REPLICA_ACKS": 0,
    # Sign every entry with a MAC keyed from SECRET_KEY: entries not written by the app are misses.
    "SIGN_ENTRIES": False,
    # Count hits, misses, fills... per model (django_cacheaside.stats). False: no counting at all.
    "STATS": True,
    # Seconds between two flushes of a process's counters to Redis (and one at exit).
    "STATS_FLUSH": 5,
    # Seconds the per-minute counter buckets are kept in Redis (7 days).
    "STATS_RETENTION": 7 * 24 * 3600,
}

# Keys whose value is a dotted path resolved on access (a string there is imported).
IMPORT_STRINGS = frozenset({"SERIALIZER"})


class AppSettings:
    """Attribute access to ``settings.CACHEASIDE`` merged over :data:`DEFAULTS`."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}
        # Bumped on every reload, so whatever is derived from settings knows to derive it again.
        self.generation = 0

    @property
    def user_settings(self) -> dict[str, Any]:
        value = getattr(settings, SETTING_NAME, {})
        if not isinstance(value, dict):
            raise ImproperlyConfigured(
                f"settings.{SETTING_NAME} must be a dict, not {type(value).__name__}."
            )
        return value

    def unknown_keys(self) -> list[str]:
        return sorted(set(self.user_settings) - set(DEFAULTS))

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"{SETTING_NAME} has no setting {name!r}.")
        try:
            return self._cache[name]
        except KeyError:
            pass
        unknown = self.unknown_keys()
        if unknown:
            raise ImproperlyConfigured(
                f"Unknown key(s) in settings.{SETTING_NAME}: {', '.join(unknown)}. "
                f"Valid keys: {', '.join(sorted(DEFAULTS))}."
            )
        value = self.user_settings.get(name, DEFAULTS[name])
        if name in IMPORT_STRINGS and isinstance(value, str):
            value = import_string(value)
        self._cache[name] = value
        return value

    def reload(self) -> None:
        self._cache.clear()
        self.generation += 1


app_settings = AppSettings()


def reload_on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    """``setting_changed`` receiver, connected in ``AppConfig.ready()``."""
    if setting in (SETTING_NAME, "CACHES"):
        app_settings.reload()
        # The backend is built from these settings; drop it so the next use builds a fresh one.
        from django_cacheaside import backend
        from django_cacheaside.stats import counters

        backend.reset()
        counters.connect()  # STATS may have been switched
