"""A manager's options, and what it derives from the settings."""

from __future__ import annotations

import random
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import models

from django_cacheaside import keys, signing
from django_cacheaside.codec import Codec, SignedCodec
from django_cacheaside.conf import app_settings

UNSET: Any = object()  # an option not given: follow the setting of the same name


class ManagerOptions:
    """Options given to a manager, by setting name; the others follow ``CACHEASIDE``."""

    def __init__(self, **given: Any) -> None:
        self.given = given

    def explicit(self) -> dict[str, Any]:
        return {name: value for name, value in self.given.items() if value is not UNSET}

    def get(self, name: str) -> Any:
        value = self.given[name]
        return getattr(app_settings, name) if value is UNSET else value

    def ttl_ms(self, name: str = "TTL") -> int:
        """The option ``name`` (seconds) in milliseconds, jittered by ``TTL_JITTER``."""
        try:
            jitter = float(self.get("TTL_JITTER"))
            seconds = float(self.get(name)) * random.uniform(1.0 - jitter, 1.0 + jitter)
        except (TypeError, ValueError):
            raise ImproperlyConfigured(
                f"{name} is {self.get(name)!r} and TTL_JITTER {self.get('TTL_JITTER')!r}: every "
                f"key must expire. Set {name} to a number of seconds greater than 0 and "
                "TTL_JITTER to a fraction below 1 (manage.py check lists the offending settings)."
            ) from None
        return max(1, int(seconds * 1000))


class DerivedSettings:
    """What a manager derives from the settings, rebuilt when they change (``generation``)."""

    def __init__(self, model: type[models.Model], label: str) -> None:
        self.generation = app_settings.generation
        self.namespace = keys.namespace(app_settings.KEY_PREFIX)
        self.key_head = keys.object_key(self.namespace, label, "")[:-1]  # "...{label:" to add a pk
        self.codec = make_codec(model)


def make_codec(model: type[models.Model]) -> Codec:
    """The codec the current settings ask for: signed when ``SIGN_ENTRIES`` is ``True``."""
    serializer = app_settings.SERIALIZER()
    sign = app_settings.SIGN_ENTRIES
    if not isinstance(sign, bool):
        raise ImproperlyConfigured(
            f"CACHEASIDE['SIGN_ENTRIES'] must be True or False, not {sign!r}."
        )
    if sign:
        return SignedCodec(model, serializer, signing.current_signer())
    return Codec(model, serializer)
