"""Invalidations that could not reach Redis are kept, and replayed when it answers again.

A write whose invalidation fails (Redis down, timed out, the circuit breaker open) must not leave
the old entry to be served once Redis is back, possibly with its old data (a network partition,
a restart with persistence). So :func:`django_cacheaside.invalidation.deliver` hands what it could
not deliver to :func:`keep`:

* the operations are kept in this process, without duplicates, up to ``REPLAY_LIMIT``;
* past the limit they are *coarsened*: replaced by a ``SCAN`` purge of every model they touch,
  which is bounded by the number of models however many writes come;
* the backend's breaker is *held* (:meth:`~django_cacheaside.backend.breaker.Breaker.hold`):
  until the replay succeeds this process reads from the database and fills nothing, so it never
  serves what it knows may be stale;
* the breaker's recovery thread calls :func:`replay` until nothing is left. Operations Redis
  answered with an error (``WRONGTYPE`` and such) are coarsened once and tried again; if even the
  ``SCAN`` purge is refused by a Redis that answers, they are dropped and logged as an error.

What one process kept, only that process can replay: another process may serve an entry it made
stale until then. After an outage every process waits one ``BREAKER_COOLDOWN`` before it trusts
Redis again, which covers the replays of processes that saw the same outage (see
``docs/reliability.md`` for the exact bound).
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING

from django_cacheaside.conf import app_settings

if TYPE_CHECKING:
    from django_cacheaside.backend import Backend

logger = logging.getLogger("django_cacheaside")

Operation = tuple[str, ...]


class Lost:
    """The invalidations one process kept for one backend."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._operations: dict[Operation, None] = {}
        self._coarse = False  # past the limit: what is added is coarsened too
        self.coarsened = 0  # times the limit was reached

    def __len__(self) -> int:
        return len(self._operations)

    def add(self, operations: Sequence[Operation]) -> None:
        from django_cacheaside.invalidation import coarsen

        with self._lock:
            if self._coarse:  # past the limit already: purge the models, until replayed
                self._operations.update(dict.fromkeys(coarsen(operations)))
                return
            self._operations.update(dict.fromkeys(operations))
            if len(self._operations) <= int(app_settings.REPLAY_LIMIT):
                return
            kept = len(self._operations)
            self._operations = dict.fromkeys(coarsen(self._operations))
            self._coarse = True
            self.coarsened += 1
        logger.warning(
            "%d invalidations could not reach Redis, more than REPLAY_LIMIT (%s): every model they "
            "touch will be purged when Redis answers again.",
            kept,
            app_settings.REPLAY_LIMIT,
        )

    def take(self) -> list[Operation]:
        with self._lock:
            operations = list(self._operations)
            self._operations.clear()
            self._coarse = False
        return operations

    def operations(self) -> list[Operation]:
        with self._lock:
            return list(self._operations)


_lost: weakref.WeakKeyDictionary[Backend, Lost] = weakref.WeakKeyDictionary()
_lost_lock = threading.Lock()


def lost_for(backend: Backend) -> Lost:
    with _lost_lock:
        lost = _lost.get(backend)
        if lost is None:
            lost = _lost[backend] = Lost()
        return lost


def keep(backend: Backend, operations: Sequence[Operation]) -> None:
    """Keep ``operations`` (undelivered) for :func:`replay`, and hold ``backend``'s breaker."""
    lost_for(backend).add(operations)
    backend.breaker.hold(functools.partial(replay, backend))


def _unreachable(backend: Backend) -> bool:
    breaker = backend.breaker
    return bool(breaker.failures or breaker.open_until)


def replay(backend: Backend) -> bool:
    """Deliver what was kept; ``True`` when nothing is left. Run by the recovery thread."""
    from django_cacheaside.invalidation import coarsen, deliver

    lost = lost_for(backend)
    operations = lost.take()
    if not operations:
        return True
    failed: list[Operation] = []
    deliver(operations, backend, failed)
    if failed and not _unreachable(backend):
        # Redis answered, with an error: purge every model those operations touch instead.
        coarse, failed = coarsen(failed), []
        deliver(coarse, backend, failed)
        if failed and not _unreachable(backend):
            logger.error(
                "Redis refused %d invalidations even as model purges; dropping them: %s",
                len(failed),
                failed[:10],
            )
            failed = []
    if failed:
        lost.add(failed)
        return False
    logger.info("Replayed %d invalidations that could not reach Redis earlier.", len(operations))
    return not len(lost)
