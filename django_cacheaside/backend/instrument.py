"""Instrumentation for tests and operators: counting round trips, listing keys by SCAN."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from django_cacheaside.backend import Backend


class RoundTripCounter:
    """Counts, while active, the requests this thread sends to Redis (a pipeline is one).

    Wraps ``send_packed_command`` of redis-py's connection class: every command and every pipeline
    goes through it exactly once. Other threads' traffic is not counted.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.count = 0
        self._thread = threading.get_ident()
        self._original: Any = None

    def __enter__(self) -> RoundTripCounter:
        target = redis.connection.AbstractConnection
        original = target.send_packed_command
        counter = self

        def counting(conn: Any, command: Any, check_health: bool = True) -> Any:
            if threading.get_ident() == counter._thread:
                counter.count += 1
            return original(conn, command, check_health)  # type: ignore[no-untyped-call]

        self._original = original
        target.send_packed_command = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        redis.connection.AbstractConnection.send_packed_command = self._original  # type: ignore[method-assign]


def scan_keys(pattern: str) -> list[bytes]:
    """Every key matching ``pattern``, by ``SCAN`` (never ``KEYS``)."""
    from django_cacheaside.backend import get_backend

    return list(get_backend().client.scan_iter(match=pattern, count=1000))
