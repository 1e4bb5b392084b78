from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import Error
from django.core.checks import Warning as CheckWarning
from django.core.exceptions import ImproperlyConfigured

from django_cacheaside import CacheAsideManager, registry
from django_cacheaside.checks import check_managers, check_settings
from django_cacheaside.serializers.pickle import PickleSerializer
from tests.testapp.models import Uncached


def ids(errors: list[Any]) -> list[str]:
    return [e.id for e in errors]


def test_default_settings_pass() -> None:
    assert check_settings() == []
    assert check_managers() == []


@pytest.mark.parametrize(
    "value, expected",
    [
        ({"TTL": 0}, ["cacheaside.E003"]),
        ({"TTL": None}, ["cacheaside.E003"]),
        ({"TTL": -5}, ["cacheaside.E003"]),
        ({"TTL": "300"}, ["cacheaside.E003"]),
        ({"NEGATIVE_TTL": 0}, ["cacheaside.E004"]),
        ({"TTL_JITTER": 1}, ["cacheaside.E005"]),
        ({"TTL_JITTER": -0.1}, ["cacheaside.E005"]),
        ({"TIMEOUT": 5}, ["cacheaside.E002"]),
        ({"LOCK_TTL": 0}, ["cacheaside.E010"]),
        ({"LOCK_TTL": None}, ["cacheaside.E010"]),
        ({"LOCK_WAIT": -1}, ["cacheaside.E011"]),
        ({"LOCK_WAIT": "2"}, ["cacheaside.E011"]),
        ({"LOCK_WAIT": 0, "LOCK_TTL": 0.5}, []),
        ({"CACHE_ALIAS": "missing"}, ["cacheaside.E006"]),
        ({"MODELS": {"nope.Nothing": {}}}, ["cacheaside.E007"]),
        ({"MODELS": ["auth.User"]}, ["cacheaside.E007"]),
        ({"SERIALIZER": "json.JSONEncoder"}, ["cacheaside.E008"]),
        ({"SERIALIZER": "no.such.Serializer"}, ["cacheaside.E008"]),
        ({"KEY_PREFIX": "has space"}, ["cacheaside.E009"]),
        ({"KEY_PREFIX": 5}, ["cacheaside.E009"]),
        ({"STATS": "yes"}, ["cacheaside.E013"]),
        ({"STATS_FLUSH": 0}, ["cacheaside.E014"]),
        ({"STATS_RETENTION": 30}, ["cacheaside.E015"]),
        ({"STATS": False, "STATS_FLUSH": 0.5, "STATS_RETENTION": 3600}, []),
        ({"SOCKET_TIMEOUT": 0}, ["cacheaside.E016"]),
        ({"SOCKET_TIMEOUT": "0.25"}, ["cacheaside.E016"]),
        ({"SOCKET_CONNECT_TIMEOUT": -1}, ["cacheaside.E016"]),
        ({"SOCKET_CONNECT_TIMEOUT": True}, ["cacheaside.E016"]),
        ({"SOCKET_TIMEOUT": None, "SOCKET_CONNECT_TIMEOUT": 2}, []),
        ({"BREAKER_THRESHOLD": 0}, ["cacheaside.E017"]),
        ({"REPLICA_ACKS": -1}, ["cacheaside.E020"]),
        ({"REPLICA_ACKS": 1.5}, ["cacheaside.E020"]),
        ({"REPLICA_ACKS": True}, ["cacheaside.E020"]),
        ({"REPLICA_ACKS": 2}, []),
        ({"BREAKER_THRESHOLD": 2.5}, ["cacheaside.E017"]),
        ({"BREAKER_THRESHOLD": True}, ["cacheaside.E017"]),
        ({"BREAKER_COOLDOWN": 0}, ["cacheaside.E017"]),
        ({"BREAKER_COOLDOWN": None}, ["cacheaside.E017"]),
        ({"BREAKER_THRESHOLD": 1, "BREAKER_COOLDOWN": 0.5}, []),
        ({"REPLAY_LIMIT": 0}, ["cacheaside.E018"]),
        ({"REPLAY_LIMIT": 1e4}, ["cacheaside.E018"]),
        ({"REPLAY_LIMIT": None}, ["cacheaside.E018"]),
        ({"REPLAY_LIMIT": 1}, []),
        ({"SIGN_ENTRIES": "yes"}, ["cacheaside.E019"]),
        ({"SIGN_ENTRIES": 1}, ["cacheaside.E019"]),
        ({"SIGN_ENTRIES": True}, []),
    ],
)
def test_bad_settings_get_their_error_id(
    settings: Any, value: dict[str, Any], expected: list[str]
) -> None:
    settings.CACHEASIDE = value
    errors = check_settings()
    assert ids(errors) == expected
    assert all(isinstance(e, Error) and e.hint for e in errors)


PICKLE = "django_cacheaside.serializers.pickle.PickleSerializer"


class _PickleSubclass(PickleSerializer):
    format_version = "pickle-sub-1"


@pytest.mark.parametrize(
    "value, warned",
    [
        ({"SERIALIZER": PICKLE}, True),
        ({"SERIALIZER": PickleSerializer}, True),
        ({"SERIALIZER": _PickleSubclass}, True),
        ({"SERIALIZER": PICKLE, "SIGN_ENTRIES": False}, True),
        ({"SERIALIZER": PICKLE, "SIGN_ENTRIES": True}, False),
        ({"SERIALIZER": "django_cacheaside.serializers.msgpack.MsgpackSerializer"}, False),
    ],
)
def test_w002_warns_of_an_unsigned_serializer_that_runs_code(
    settings: Any, value: dict[str, Any], warned: bool
) -> None:
    settings.CACHEASIDE = value
    messages = check_settings()
    assert ids(messages) == (["cacheaside.W002"] if warned else [])
    if warned:
        (warning,) = messages
        assert isinstance(warning, CheckWarning) and not isinstance(warning, Error)
        assert "run code" in warning.msg
        assert "MsgpackSerializer" in (warning.hint or "")
        assert "SIGN_ENTRIES" in (warning.hint or "")


def test_a_cache_alias_that_is_not_redis(settings: Any) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    settings.CACHEASIDE = {"CACHE_ALIAS": "local"}
    errors = check_settings()
    assert ids(errors) == ["cacheaside.E006"]
    assert "LocMemCache" in errors[0].msg and "RedisCache" in (errors[0].hint or "")


def test_setting_must_be_a_dict(settings: Any) -> None:
    settings.CACHEASIDE = ["TTL", 300]
    assert ids(check_settings()) == ["cacheaside.E001"]


def test_redis_url_replaces_the_cache_alias(settings: Any) -> None:
    settings.CACHEASIDE = {"CACHE_ALIAS": "missing", "REDIS": "redis://127.0.0.1:6379/0"}
    assert check_settings() == []


def test_models_entry_that_could_not_be_registered(settings: Any) -> None:
    settings.CACHEASIDE = {"MODELS": {"testapp.Uncached": {"ttl": 5}}}
    errors = check_settings()
    assert ids(errors) == ["cacheaside.E007"]
    assert "could not be registered" in errors[0].msg


@pytest.mark.parametrize("ttl", [0, None, -1])
def test_manager_ttl_of_zero_or_none_is_an_error(ttl: Any) -> None:
    manager: CacheAsideManager[Any] = CacheAsideManager(ttl=ttl)
    manager.contribute_to_class(Uncached, "cached_for_check")
    try:
        errors = check_managers()
    finally:
        registry._managers.pop(Uncached)
        registry._families.clear()
        delattr(Uncached, "cached_for_check")
    assert ids(errors) == ["cacheaside.E003"]
    assert errors[0].obj is Uncached
    assert "testapp.Uncached.cached_for_check TTL is" in errors[0].msg


def test_w001_warns_of_a_bulk_write_override_that_skips_super() -> None:
    from django.db import models

    from tests.testapp.models import Post

    class SilentQuerySet(models.QuerySet[Post]):
        def update(self, **kwargs: Any) -> int:
            return 0  # never reaches QuerySet.update

    class PoliteQuerySet(models.QuerySet[Post]):
        def update(self, **kwargs: Any) -> int:
            return super().update(**kwargs)

    manager: Any = Post._default_manager
    original = manager._queryset_class
    try:
        manager._queryset_class = SilentQuerySet
        warnings = [m for m in check_managers() if m.id == "cacheaside.W001"]
        manager._queryset_class = PoliteQuerySet
        polite = [m for m in check_managers() if m.id == "cacheaside.W001"]
    finally:
        manager._queryset_class = original
    assert len(warnings) == 1
    assert "SilentQuerySet.update()" in warnings[0].msg
    assert "invalidate_model(Post)" in (warnings[0].hint or "")
    assert polite == []


# -- bad configuration at run time: an exception that says what to change ---------------------


@pytest.mark.django_db(transaction=True)
def test_a_ttl_of_none_read_at_run_time_names_the_setting(settings: Any) -> None:
    from tests.testapp.models import Article

    settings.CACHEASIDE = {**settings.CACHEASIDE, "TTL": None}
    with pytest.raises(ImproperlyConfigured, match=r"TTL is None.*greater than 0"):
        Article.cached.get(pk=1)


@pytest.mark.django_db(transaction=True)
def test_a_cache_alias_that_is_not_redis_fails_reads_with_what_to_use(settings: Any) -> None:
    from tests.testapp.models import Article

    settings.CACHES = {
        **settings.CACHES,
        "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    settings.CACHEASIDE = {**settings.CACHEASIDE, "CACHE_ALIAS": "local", "REDIS": None}
    with pytest.raises(ImproperlyConfigured, match=r"CACHES\['local'\] is not a Redis cache.*Use"):
        Article.cached.get(pk=1)


def test_registering_a_model_twice_says_how_to_name_the_second() -> None:
    registry.register(Uncached, name="cached_twice")
    try:
        with pytest.raises(ValueError, match=r"already registered as Uncached\.cached_twice"):
            registry.register(Uncached, name="cached_twice")
        assert check_managers() == []  # the first registration stands
    finally:
        registry._managers.pop(Uncached)
        registry._families.clear()
        delattr(Uncached, "cached_twice")


def test_a_non_unique_lookup_lists_the_cacheable_ones() -> None:
    from tests.testapp.models import Article

    with pytest.raises(ValueError) as raised:
        Article.cached.get(title="x")
    message = str(raised.value)
    assert "cannot use the combination title" in message
    assert "pk; (org, slug)" in message and "default manager" in message


def test_sign_entries_that_is_not_a_bool_fails_reads(settings: Any) -> None:
    from tests.testapp.models import Article

    settings.CACHEASIDE = {**settings.CACHEASIDE, "SIGN_ENTRIES": "yes"}
    with pytest.raises(ImproperlyConfigured, match=r"SIGN_ENTRIES.*True or False"):
        Article.cached.codec  # noqa: B018
