from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import Error

from django_cacheaside import CacheAsideManager, registry
from django_cacheaside.checks import check_managers, check_settings
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
    ],
)
def test_bad_settings_get_their_error_id(
    settings: Any, value: dict[str, Any], expected: list[str]
) -> None:
    settings.CACHEASIDE = value
    errors = check_settings()
    assert ids(errors) == expected
    assert all(isinstance(e, Error) and e.hint for e in errors)


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
