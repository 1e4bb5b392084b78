"""Translating Redis failures: the fail-open decorator and the rate-limited error log."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from redis.exceptions import RedisError

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


def fail_open(default: Any) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Turn any Redis failure of the wrapped method into ``default`` (after reporting it)."""

    def decorate(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(*args, **kwargs)
            except BackendError as exc:
                _errors.report(method.__name__, exc)
            except (RedisError, OSError, ValueError, TypeError, IndexError) as exc:
                # ValueError/TypeError/IndexError: a reply whose shape is not what we sent for.
                _errors.report(method.__name__, BackendError(f"{type(exc).__name__}: {exc}"))
            result: R = default
            return result

        return wrapper

    return decorate
