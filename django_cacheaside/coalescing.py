"""In-process coalescing: concurrent misses on one key share one load (like Go's singleflight).

The first thread to miss a key becomes its leader and runs the refill; the others wait for it, up
to a bound, and then build their own instances from the entry bytes the leader produced, so no two
callers ever share a mutable model instance. An exception of the leader is raised in every
follower too and nothing is cached for it.

A caller that arrives after a commit must not be handed a row the leader read before it. So a
follower shares the leader's result only if it joined before the leader began the read that
result comes from (the leader calls :func:`observing` right before each read of Redis or the
database), or before the leader's compare-and-set fill of it, if that fill was accepted
(:func:`confirming`): an accepted fill proves that no invalidation came between the leader's
stamp read and the fill, so no write committed since the load can be missing from it. Any other
follower is told to read for itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

_leading = threading.local()  # the flight this thread leads, while it runs

# What a follower gets instead of the result when it joined too late to share it.
LATE: Any = object()


class _Flight:
    __slots__ = ("done", "error", "observed", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.observed = 0  # monotonic ns: when the leader began its latest read


def observing() -> None:
    """Called by a leader right before it reads Redis or the database for its result."""
    flight = getattr(_leading, "flight", None)
    if flight is not None:
        flight.observed = time.monotonic_ns()


def confirming(fill: Callable[[], bool]) -> bool:
    """Run a leader's compare-and-set ``fill``; if it is accepted, followers that joined before it
    was sent may share the result too."""
    flight = getattr(_leading, "flight", None)
    if flight is None:
        return fill()
    before = flight.observed
    flight.observed = time.monotonic_ns()
    written = fill()
    if not written:
        flight.observed = before
    return written


class Flights:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Any, _Flight] = {}

    def run(self, key: Any, leader: Callable[[], Any], wait_seconds: float) -> tuple[bool, Any]:
        """``(True, leader())`` for the first caller of ``key``; ``(False, its result)`` for the
        callers that arrive while it runs. ``(False, None)`` when the wait ran out; ``(False,
        LATE)`` when the result was read before this caller joined (it must read for itself)."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = _Flight()
                leading = True
            else:
                leading = False
            joined = time.monotonic_ns()
        if leading:
            outer = getattr(_leading, "flight", None)
            _leading.flight = flight
            try:
                flight.result = leader()
                return True, flight.result
            except BaseException as error:
                flight.error = error
                raise
            finally:
                _leading.flight = outer
                with self._lock:
                    del self._flights[key]
                flight.done.set()
        if not flight.done.wait(wait_seconds):
            return False, None
        if flight.error is not None:
            raise flight.error
        if flight.observed <= joined:
            return False, LATE  # the leader's result may predate this caller's start
        return False, flight.result
