"""In-process coalescing: concurrent misses on one key share one load (like Go's singleflight).

The first thread to miss a key becomes its leader and runs the refill; the others wait for it, up
to a bound, and then build their own instances from the entry bytes the leader produced, so no two
callers ever share a mutable model instance. An exception of the leader is raised in every
follower too and nothing is cached for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class _Flight:
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class Flights:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Any, _Flight] = {}

    def run(self, key: Any, leader: Callable[[], Any], wait_seconds: float) -> tuple[bool, Any]:
        """``(True, leader())`` for the first caller of ``key``; ``(False, its result)`` for the
        callers that arrive while it runs. ``(False, None)`` when the wait ran out."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = _Flight()
                leading = True
            else:
                leading = False
        if leading:
            try:
                flight.result = leader()
                return True, flight.result
            except BaseException as error:
                flight.error = error
                raise
            finally:
                with self._lock:
                    del self._flights[key]
                flight.done.set()
        if not flight.done.wait(wait_seconds):
            return False, None
        if flight.error is not None:
            raise flight.error
        return False, flight.result
