"""Instrumentation for tests and operators: counting round trips, listing keys by SCAN."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import redis

from django_cacheaside.backend.direct import _Wire

if TYPE_CHECKING:
    from django_cacheaside.backend import Backend


class RoundTripCounter:
    """Counts, while active, the requests this thread sends to Redis (a pipeline is one).

    Wraps ``send_packed_command`` of redis-py's connection class and the direct path's
    ``_Wire.round_trip``: every command and every pipeline goes through one of them exactly once.
    Other threads' traffic is not counted.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.count = 0
        self._thread = threading.get_ident()
        self._originals: Any = None

    def _counted(self, original: Any) -> Any:
        def counting(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == self._thread:
                self.count += 1
            return original(*args, **kwargs)

        return counting

    def __enter__(self) -> RoundTripCounter:
        connection = redis.connection.AbstractConnection
        self._originals = (connection.send_packed_command, _Wire.round_trip)
        connection.send_packed_command = self._counted(self._originals[0])  # type: ignore[method-assign]
        _Wire.round_trip = self._counted(self._originals[1])  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        connection = redis.connection.AbstractConnection
        connection.send_packed_command, _Wire.round_trip = self._originals  # type: ignore[method-assign]


def scan_keys(pattern: str) -> list[bytes]:
    """Every key matching ``pattern``, by ``SCAN`` (never ``KEYS``)."""
    from django_cacheaside.backend import get_backend

    backend = get_backend()
    found: dict[bytes, None] = {}  # SCAN may return a key twice
    for server in backend._servers():
        found.update(dict.fromkeys(server.scan_iter(match=pattern, count=1000)))
    return list(found)
