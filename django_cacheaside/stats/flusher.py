"""Moving a process's counts to Redis: one pipelined round trip every ``STATS_FLUSH`` seconds.

A daemon thread per process, started by the first count (so a process forked after start-up, as
gunicorn's workers are, starts its own), flushes into the bucket of the current minute,
``<prefix>:ca:stats:{<minute>}``: a hash of ``<label>|<schema>|<counter>`` fields that lives
``STATS_RETENTION`` seconds. Processes and hosts add to the same buckets. A flush that fails keeps
its counts for the next one; the read path never waits for any of this. The counts left at exit are
flushed by an ``atexit`` hook.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time

from django_cacheaside import keys
from django_cacheaside.backend import get_backend
from django_cacheaside.conf import app_settings
from django_cacheaside.stats.counters import buffer

_lock = threading.Lock()
_thread: threading.Thread | None = None
_stop = threading.Event()


def bucket_key(namespace: str, minute: int) -> str:
    return f"{namespace}stats:{{{minute}}}"


def flush() -> bool:
    """Write the counts gathered since the last flush; ``False`` if Redis failed (kept for later)."""
    counts = buffer.take()
    if not counts:
        return True
    namespace = keys.namespace(app_settings.KEY_PREFIX)
    key = bucket_key(namespace, int(time.time() // 60))
    fields = {f"{label}|{schema}|{name}": n for (label, schema, name), n in counts.items()}
    ttl_ms = int(float(app_settings.STATS_RETENTION) * 1000)
    if get_backend().add_counts(key, fields, ttl_ms):
        return True
    buffer.give_back(counts)
    return False


def _run() -> None:
    while not _stop.wait(float(app_settings.STATS_FLUSH)):
        try:
            flush()
        except Exception:  # never let the thread die: the next round tries again
            continue


def ensure_running() -> None:
    """Start this process's flusher thread if it is not running."""
    global _thread
    if _thread is not None and _thread.is_alive():
        return
    with _lock:
        if _thread is None or not _thread.is_alive():
            _stop.clear()
            _thread = threading.Thread(target=_run, name="cacheaside-stats", daemon=True)
            _thread.start()


def _after_fork_in_child() -> None:
    # The parent's thread does not exist here, and its unflushed counts are the parent's to write.
    global _thread
    _thread = None
    buffer.forget()


def _at_exit() -> None:
    _stop.set()
    with contextlib.suppress(Exception):  # settings or Redis may be gone at exit
        if app_settings.STATS:
            flush()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
