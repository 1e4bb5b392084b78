"""The circuit breaker: stop calling a Redis that keeps failing, and decide when to trust it again.

Every backend method runs through :func:`~django_cacheaside.backend.errors.fail_open`, which asks
one question before calling Redis: is the breaker :attr:`Breaker.degraded`? Normally it is not, and
that one attribute read is all the breaker costs. It becomes degraded

* when ``BREAKER_THRESHOLD`` calls in a row failed to reach Redis (refused, timed out, reset, a
  reply that is not RESP): the breaker *opens*; or
* when an invalidation could not be delivered and waits for a replay (:meth:`Breaker.hold`, see
  :mod:`django_cacheaside.replay`).

While degraded, reads are misses answered from the database and not filled. While open, no caller
talks to Redis at all and invalidations are kept for the replay; once closed again (recovering,
or holding a replay) invalidations are sent at once, since other processes may already be reading
from Redis. One background thread per process does the rest:

* while open, it probes with ``PING`` once every ``BREAKER_COOLDOWN`` seconds;
* once Redis answers, it closes the breaker and replays the invalidations this process kept;
* after an outage it keeps the process degraded for two more cool-downs (plus the timeouts of
  one probe, :func:`grace_period`). Every process probes at least once per cool-down, so by then
  every process that saw the outage and kept invalidations has found Redis back and replayed
  them: an entry one of them made stale is gone before anyone reads it;
* then it clears :attr:`degraded` and exits.

Error replies (``WRONGTYPE`` and such) mean Redis is there: they fail the call but never count
towards opening the breaker.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from django_cacheaside import signals
from django_cacheaside.conf import app_settings

logger = logging.getLogger("django_cacheaside")

# Set in the recovery thread while it talks to Redis: its calls go through a degraded breaker.
_local = threading.local()

# The first retry of a held replay comes this soon; each next one waits twice as long, up to the
# cool-down.
FIRST_RETRY = 0.05


def recovering() -> bool:
    """Whether this thread is the recovery thread, at work."""
    return getattr(_local, "active", False)


class Breaker:
    def __init__(self, ping: Callable[[], bool]) -> None:
        # Read on every backend call: open, recovering from an outage, or holding a replay.
        self.degraded = False
        self.failures = 0  # consecutive calls that could not reach Redis
        self.open_until = 0.0  # monotonic time of the next probe while open, else 0
        self.opened = 0  # times this breaker opened (for tests and monitoring)
        self._ping = ping
        self._replay: Callable[[], bool] | None = None
        self._holds = 0  # bumped by every hold(): the thread knows whether one came meanwhile
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closed = False

    # -- what the fail-open wrapper reports ----------------------------------------------------

    def failed(self) -> None:
        """A call could not reach Redis."""
        with self._lock:
            self.failures += 1
            if not (self.open_until or self.failures >= int(app_settings.BREAKER_THRESHOLD)):
                return
            opening = not self.open_until
            self.open_until = time.monotonic() + float(app_settings.BREAKER_COOLDOWN)
            self.degraded = True
            if opening:
                self.opened += 1
            self._start_thread()
        if opening:
            logger.warning(
                "Redis failed %d times in a row: not calling it for %s s (circuit breaker open); "
                "reads are answered from the database.",
                self.failures,
                app_settings.BREAKER_COOLDOWN,
            )
            signals.cache_breaker.send(sender=Breaker, state="open")

    def succeeded(self) -> None:
        """A call reached Redis after one or more that did not."""
        with self._lock:
            self.failures = 0

    def hold(self, replay: Callable[[], bool]) -> None:
        """Invalidations wait for ``replay`` (which answers whether none is left): stay degraded
        until the recovery thread has run it successfully."""
        with self._lock:
            self._replay = replay
            self._holds += 1
            self.degraded = True
            self._start_thread()

    def passing(self, invalidation: bool = False) -> bool:
        """Whether this call may go to Redis although the breaker is degraded: the recovery
        thread's, and invalidations unless the breaker is open."""
        if self._pid != os.getpid():
            self._after_fork()
        return recovering() or (invalidation and not self.open_until)

    def close(self) -> None:
        """Stop the recovery thread: the backend this breaker guards is discarded."""
        self._closed = True
        self._wake.set()

    # -- the recovery thread -------------------------------------------------------------------

    def _start_thread(self) -> None:
        # Called with the lock held.
        if self._closed or (self._thread is not None and self._thread.is_alive()):
            return
        self._thread = threading.Thread(
            target=self._recover, name="django-cacheaside-recovery", daemon=True
        )
        self._thread.start()

    def _after_fork(self) -> None:
        # A forked child has the parent's state but not its thread.
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._thread = None
        with self._lock:
            if self.degraded:
                self._start_thread()

    def _sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; ``False`` if the breaker was closed meanwhile."""
        if seconds > 0:
            self._wake.wait(seconds)
        return not self._closed

    def _recover(self) -> None:
        _local.active = True
        retry = FIRST_RETRY
        cooldown = float(app_settings.BREAKER_COOLDOWN)
        outage = False  # the breaker was open since the last grace period
        while self._sleep(self.open_until - time.monotonic() if self.open_until else retry):
            if self.open_until:
                outage = True
                if not self._ping():
                    continue  # failed() moved open_until one cool-down on
                with self._lock:
                    self.failures = 0
                    self.open_until = 0.0
                logger.warning("Redis answers again; the circuit breaker is closed.")
                signals.cache_breaker.send(sender=Breaker, state="closed")
            with self._lock:
                holds, replay = self._holds, self._replay
            if replay is not None and not replay():
                retry = min(retry * 2, cooldown)
                continue  # (an outage seen stays seen: its grace period is still owed)
            if outage:
                # Let every other process that saw the outage replay what it kept before this
                # one trusts Redis again.
                if not self._sleep(grace_period()):
                    return
                outage = False
            with self._lock:
                if self.open_until or self._holds != holds:
                    continue  # it failed again, or more invalidations came: another round
                self.degraded = False
                self._replay = None
                self._thread = None
                return


def grace_period() -> float:
    """Seconds a process waits after an outage before it trusts Redis again: two cool-downs and
    the timeouts of one probe.

    Another process that saw the same outage probes at least once per cool-down plus a probe's
    timeouts, so it finds Redis back at most that long after this one did; the second cool-down
    is the time its replay may take (the history checker found stale reads with only one, under
    load: a replay that started late or ran long).
    """
    timeouts = [app_settings.SOCKET_CONNECT_TIMEOUT, app_settings.SOCKET_TIMEOUT]
    probe = sum(float(t) for t in timeouts if t is not None)
    return 2 * float(app_settings.BREAKER_COOLDOWN) + probe


def describe(breaker: Breaker) -> dict[str, Any]:
    """The breaker's state, for ``cachestats`` and the admin page."""
    if breaker.open_until:
        state = "open"
    elif breaker.degraded:
        state = "recovering"
    else:
        state = "closed"
    return {"state": state, "failures": breaker.failures, "opened": breaker.opened}
