from __future__ import annotations

from django.apps import AppConfig


class SaasConfig(AppConfig):
    name = "saas"
    verbose_name = "SaaS example"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # A model we do not own gets its cache-aside manager here: User.cached.
        from django.contrib.auth.models import User

        from django_cacheaside import register

        register(User, ttl=600)
