"""Entry signing (``CACHEASIDE["SIGN_ENTRIES"]``): a MAC over every entry and the key it sits under.

The signing key is derived once per ``SECRET_KEY`` as ``HMAC-SHA256(SECRET_KEY, SALT)``; each entry
then gets a 16-byte keyed BLAKE2b tag over the length of the Redis key's name, the name, and the
entry's bytes. So an entry verifies only under the key it was written for, and only for processes
that share the ``SECRET_KEY``: bytes planted by anyone else who can write to Redis, or an entry
copied from one object's key to another's, are misses. See ``docs/security.md``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from typing import Any, Final

from django.conf import settings

SALT: Final = b"django_cacheaside.entries"
TAG_LEN: Final = 16


def derive_key(secret: str | bytes) -> bytes:
    """The 32-byte signing key for ``secret`` (a ``SECRET_KEY``)."""
    raw = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(raw, SALT, hashlib.sha256).digest()


class Signer:
    """Appends and checks the tag of entries under one signing key."""

    def __init__(self, key: bytes) -> None:
        # Keying BLAKE2b hashes one block; copying the keyed state is cheaper than keying again.
        self._keyed = hashlib.blake2b(key=key, digest_size=TAG_LEN)

    def tag(self, name: str, data: bytes) -> bytes:
        mac = self._keyed.copy()
        encoded = name.encode()
        # The name's length first: no (name, data) pair can be re-split into another.
        mac.update(len(encoded).to_bytes(4, "big"))
        mac.update(encoded)
        mac.update(data)
        return mac.digest()

    def sign(self, name: str, data: bytes) -> bytes:
        """``data`` with its tag for the key ``name`` appended."""
        return data + self.tag(name, data)

    def open(self, name: str, signed: bytes) -> bytes | None:
        """The data of a signed entry stored under ``name``, or ``None`` if its tag does not verify."""
        if len(signed) < TAG_LEN:
            return None
        data = signed[:-TAG_LEN]
        if hmac.compare_digest(self.tag(name, data), signed[-TAG_LEN:]):
            return data
        return None


@functools.lru_cache(maxsize=4)
def _signer_for(secret: str | bytes) -> Signer:
    return Signer(derive_key(secret))


def current_signer() -> Signer:
    """The signer of the current ``SECRET_KEY`` (derived once per key)."""
    return _signer_for(settings.SECRET_KEY)


def reload_on_secret_key_changed(*, setting: str, **kwargs: Any) -> None:
    """``setting_changed`` receiver: managers derive their codecs again under a new ``SECRET_KEY``."""
    if setting == "SECRET_KEY":
        from django_cacheaside.conf import app_settings

        app_settings.reload()
