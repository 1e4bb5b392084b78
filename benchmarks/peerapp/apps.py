from __future__ import annotations

from django.apps import AppConfig


class PeerAppConfig(AppConfig):
    name = "peerapp"
    label = "peerapp"
    default_auto_field = "django.db.models.BigAutoField"
