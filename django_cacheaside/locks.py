"""Refill leases: one loader per object at a time, and bounded waiting for everyone else.

A miss takes the object's lease in the same script that reads its stamp (``SET NX PX`` semantics,
with a random token per fill). The holder loads and fills; the fill releases the lease in the same
script, only if the token still holds it. A reader that finds the lease taken waits with backoff,
re-reading the entry, and takes the lease itself if its holder died (the lease expired); when
``LOCK_WAIT`` runs out it reads the database itself and does not fill. Never recursion, never an
exception to the caller.

The lease saves work only. What keeps reads correct is the stamp compare-and-set at fill time: a
holder whose lease expired during a slow load costs at most one extra load, never a stale entry.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from django_cacheaside import coalescing, keys
from django_cacheaside.backend import UNAVAILABLE, Backend, Lease, Read

FIRST_DELAY = 0.002  # seconds before the first re-read
MAX_DELAY = 0.05  # the backoff stops growing here, so a finished fill is seen within 50 ms


def new_lease(object_key: str, ttl_seconds: float) -> Lease:
    return Lease(keys.lock_key(object_key), os.urandom(16), max(1, int(ttl_seconds * 1000)))


def wait_for_fill(
    backend: Backend,
    key: str,
    ttl_ms: int,
    lease: Lease,
    decode: Callable[[bytes | None], Any],
    wait_seconds: float,
) -> tuple[Any, Read, float]:
    """Wait for another process's fill of ``key``, at most ``wait_seconds``.

    Returns ``(found, read, waited)``: the decoded entry once it appears (``read`` then is
    ``UNAVAILABLE``); or ``found=None`` with ``read.lease`` set when the lease came free and is now
    ours (fill as usual); or ``found=None`` and ``UNAVAILABLE`` when the wait ran out or Redis
    failed (load, do not fill).
    """
    started = time.monotonic()
    deadline = started + wait_seconds
    delay = FIRST_DELAY
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None, UNAVAILABLE, time.monotonic() - started
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, MAX_DELAY)
        coalescing.observing()
        read = backend.read_or_begin(key, ttl_ms, lease=lease)
        found = decode(read.entry)
        if found is not None:
            return found, UNAVAILABLE, time.monotonic() - started
        if read.lease is not None or read.stamp is None:
            return None, read, time.monotonic() - started
