"""Translating Redis failures: the fail-open decorator and the rate-limited error log."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from redis.exceptions import ReadOnlyError, RedisClusterException, RedisError, ResponseError

from django_cacheaside import signals
from django_cacheaside.conf import app_settings
from django_cacheaside.exceptions import BackendError

logger = logging.getLogger("django_cacheaside")

P = ParamSpec("P")
R = TypeVar("R")


class _ErrorLog:
    """Logs a Redis failure at most once per interval; every failure still sends ``cache_error``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next_log = 0.0
        self._suppressed = 0

    def report(self, operation: str, error: BackendError) -> None:
        from django_cacheaside.backend import Backend  # the documented sender; imported late

        signals.cache_error.send(sender=Backend, operation=operation, error=error)
        now = time.monotonic()
        with self._lock:
            if now < self._next_log:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._next_log = now + float(app_settings.ERROR_LOG_INTERVAL)
        logger.warning(
            "Redis %s failed, answering from the database: %s (%d similar failures not logged)",
            operation,
            error,
            suppressed,
        )


_errors = _ErrorLog()


def report_error(operation: str, error: Exception) -> None:
    """Log (rate-limited) and signal a cache failure found outside the backend, e.g. a bad entry."""
    if not isinstance(error, BackendError):
        error = BackendError(f"{type(error).__name__}: {error}")
    _errors.report(operation, error)


# What a backend method may raise that means "Redis failed" (see _failed).
_FAILURES = (
    BackendError,
    RedisError,
    RedisClusterException,
    OSError,
    ValueError,
    TypeError,
    IndexError,
)


def _failed(breaker: Any, operation: str, exc: BaseException, default: Any) -> Any:
    """Report one of ``_FAILURES`` of ``operation`` and answer ``default``."""
    if isinstance(exc, BackendError):
        error = exc  # a reply of a shape the app never writes: Redis is there
    elif isinstance(exc, ResponseError):
        # An error reply: Redis is there. A read-only replica (after a failover) is not a usable
        # primary, though.
        if isinstance(exc, ReadOnlyError):
            breaker.failed()
        error = BackendError(f"{type(exc).__name__}: {exc}")
    else:
        # Unreachable, timed out, reset, or (ValueError/TypeError/IndexError) a reply of a shape
        # no command we sent can have: garbage on the wire. RedisClusterException: no node of a
        # cluster answers (it is not a RedisError).
        breaker.failed()
        error = BackendError(f"{type(exc).__name__}: {exc}")
    _errors.report(operation, error)
    return default


def afail_open(
    default: Any,
) -> Callable[
    [Callable[Concatenate[Any, P], Awaitable[R]]], Callable[Concatenate[Any, P], Awaitable[R]]
]:
    """:func:`fail_open` for a coroutine method of the backend (the async reads)."""

    def decorate(
        method: Callable[Concatenate[Any, P], Awaitable[R]],
    ) -> Callable[Concatenate[Any, P], Awaitable[R]]:
        @functools.wraps(method)
        async def wrapper(self: Any, *args: P.args, **kwargs: P.kwargs) -> R:
            breaker = self.breaker
            if breaker.degraded and not breaker.passing(False):
                skipped: R = default
                return skipped
            try:
                result = await method(self, *args, **kwargs)
            except _FAILURES as exc:
                failed: R = _failed(breaker, method.__name__, exc, default)
                return failed
            if breaker.failures:
                breaker.succeeded()
            return result

        return cast("Callable[Concatenate[Any, P], Awaitable[R]]", wrapper)

    return decorate


def fail_open(
    default: Any, *, invalidation: bool = False
) -> Callable[[Callable[Concatenate[Any, P], R]], Callable[Concatenate[Any, P], R]]:
    """Turn any Redis failure of the wrapped backend method into ``default`` (after reporting it).

    While the backend's circuit breaker is degraded the method is not called at all: ``default``
    at once (see :mod:`django_cacheaside.backend.breaker`). An ``invalidation`` method is still
    called while the breaker is closed (recovering or holding a replay): Redis answers then, and
    other processes may already read from it.
    """

    def decorate(method: Callable[Concatenate[Any, P], R]) -> Callable[Concatenate[Any, P], R]:
        @functools.wraps(method)
        def wrapper(self: Any, *args: P.args, **kwargs: P.kwargs) -> R:
            breaker = self.breaker
            if breaker.degraded and not breaker.passing(invalidation):
                skipped: R = default
                return skipped
            try:
                result = method(self, *args, **kwargs)
            except _FAILURES as exc:
                failed: R = _failed(breaker, method.__name__, exc, default)
                return failed
            if breaker.failures:
                breaker.succeeded()
            return result

        return cast("Callable[Concatenate[Any, P], R]", wrapper)

    return decorate
