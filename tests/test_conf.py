from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_cacheaside.conf import DEFAULTS, app_settings
from tests.testapp.models import Article


def test_defaults_are_documented_values() -> None:
    assert DEFAULTS["TTL"] == 300
    assert DEFAULTS["TTL_JITTER"] == 0.1
    assert app_settings.CACHE_ALIAS == "default"


def test_override_settings_is_seen_without_restart(settings: Any) -> None:
    with override_settings(CACHEASIDE={**settings.CACHEASIDE, "TTL": 42}):
        assert app_settings.TTL == 42
        assert Article.cached.option("TTL") == 42
    assert app_settings.TTL == 300


def test_unknown_keys_are_rejected_on_access(settings: Any) -> None:
    settings.CACHEASIDE = {"TTL": 1, "TLL": 2}
    with pytest.raises(ImproperlyConfigured, match=r"Unknown key.*TLL.*Valid keys"):
        app_settings.TTL  # noqa: B018


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError):
        app_settings.NOPE  # noqa: B018


def test_importing_the_app_reads_no_settings_and_opens_no_connection() -> None:
    """Import everything with settings that would fail if read, and a Redis that is not there."""
    code = (
        "import django_cacheaside, django_cacheaside.managers, django_cacheaside.backend, "
        "django_cacheaside.invalidation, django_cacheaside.checks, django_cacheaside.receivers\n"
        "from django.conf import settings\n"
        "assert not settings.configured, 'settings were read at import time'\n"
        "import redis.connection as c\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PATH": "", "DJANGO_SETTINGS_MODULE": "does.not.exist"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
