"""Settings for the test suite: $DATABASE_URL (else SQLite) and $REDIS_URL (else embedded Redis)."""

import uuid

from django_cacheaside.dev import database, redis_url

RUN_ID = uuid.uuid4().hex[:12]
DATABASES = {"default": database()}
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # A test database of this run's own: two runs on one server (CI and a developer's run) would
    # otherwise share test_<name>, and the first to finish would drop it under the other.
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{RUN_ID}"}
REDIS_URL = redis_url()
CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL}}
# Every key this run writes starts with RUN_PREFIX; the last test checks their TTLs, then drops them.
RUN_PREFIX = f"cacheaside-test-{RUN_ID}"
# STATS_FLUSH: the background flusher never runs during a test (counts would land under another
# test's prefix); tests flush explicitly.
CACHEASIDE = {"KEY_PREFIX": RUN_PREFIX, "MODELS": {"auth.User": {"ttl": 600}}, "STATS_FLUSH": 3600}
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_cacheaside",
    "tests.testapp",
]
SECRET_KEY = "tests"
USE_TZ = True
TIME_ZONE = "Europe/Paris"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The admin (the "Cache statistics" page, tests/test_admin.py).
ROOT_URLCONF = "tests.urls"
STATIC_URL = "/static/"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
