from __future__ import annotations

from django.apps import AppConfig
from django.core import checks
from django.core.signals import setting_changed


class CacheAsideConfig(AppConfig):
    name = "django_cacheaside"
    verbose_name = "Cache-aside"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        # Wiring only: no Redis connection, no database query.
        from django_cacheaside import conf, receivers, registry, signing, writes
        from django_cacheaside.checks import check_managers, check_settings

        checks.register(check_settings, "cacheaside")
        checks.register(check_managers, "cacheaside")
        setting_changed.connect(
            conf.reload_on_setting_changed, dispatch_uid="django_cacheaside.conf.reload"
        )
        setting_changed.connect(
            signing.reload_on_secret_key_changed, dispatch_uid="django_cacheaside.signing.reload"
        )
        registry.register_from_settings()
        registry.bind_inherited()
        receivers.connect_all()
        writes.install()
        from django_cacheaside.stats import counters

        counters.connect()
        from django.core.signals import request_finished, request_started

        from django_cacheaside import nearby

        request_started.connect(nearby.request_started, dispatch_uid="django_cacheaside.near.in")
        request_finished.connect(nearby.request_finished, dispatch_uid="django_cacheaside.near.out")
        registry.mark_wired()
