"""Settings for the test suite: $DATABASE_URL (else SQLite) and $REDIS_URL (else embedded Redis)."""

import uuid

from django_cacheaside.dev import database, redis_url

DATABASES = {"default": database()}
REDIS_URL = redis_url()
CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL}}
# Every key this run writes starts with RUN_PREFIX; the last test checks their TTLs, then drops them.
RUN_PREFIX = f"cacheaside-test-{uuid.uuid4().hex[:12]}"
# STATS_FLUSH: the background flusher never runs during a test (counts would land under another
# test's prefix); tests flush explicitly.
CACHEASIDE = {"KEY_PREFIX": RUN_PREFIX, "MODELS": {"auth.User": {"ttl": 600}}, "STATS_FLUSH": 3600}
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django_cacheaside",
    "tests.testapp",
]
SECRET_KEY = "tests"
USE_TZ = True
TIME_ZONE = "Europe/Paris"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
