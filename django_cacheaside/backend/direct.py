"""Single commands on a connection of this thread's own, past redis-py's per-command machinery.

A hit is one ``HGET`` and a save one ``DEL``. Sent through ``redis.Redis.execute_command`` each pays
for a pool checkout and release, the retry wrapper and the observability hooks: about as much time
again as the round trip itself on a local network (measured in docs/benchmarks.md). Here each thread
keeps one connection, built with the pool's own connection class and settings (timeouts, TLS,
credentials, health checks), and writes packed commands to it directly, pipelines included.

With hiredis installed (and RESP2, redis-py's default), redis-py only opens the connection (TLS,
``AUTH``, ``SELECT``, ``CLIENT SETNAME``); commands are then written to its socket and replies read
with a ``hiredis.Reader`` of this module's own: no per-reply Python parser loop, which halves the
client's share of a 100-key ``get_many`` round trip (docs/benchmarks.md).

Used only for a plain ``redis.Redis`` over a plain connection pool; Sentinel pools, client-side
caching and clusters go through the client as usual. A connection whose command failed in transit
is dropped (the next call makes a new one); one that went stale while idle is replaced and the
command sent once more. After ``fork()`` the child never touches its parent's socket.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import sys
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

try:
    import hiredis

    HIREDIS = True
except ImportError:  # pragma: no cover - hiredis is optional; the suite installs it
    HIREDIS = False

_POOLS = (redis.ConnectionPool, redis.BlockingConnectionPool)
_READ_SIZE = 65536


# Bumped in a forked child: cheaper to compare than os.getpid(), a system call, on every command.
_forks = 0


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


def _close(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.disconnect()


def _kernel_timeouts(sock: Any, timeout: float | None) -> None:
    """Let the kernel enforce the socket timeout, on Linux and plain TCP or Unix sockets.

    A Python socket with a timeout calls ``poll()`` before every send and every receive: four
    system calls a round trip instead of two, and on a virtual machine a system call can cost a
    microsecond or more. A blocking socket with ``SO_RCVTIMEO``/``SO_SNDTIMEO`` times out the
    same (the call fails with ``EAGAIN``) without them.
    """
    if not sys.platform.startswith("linux") or type(sock) is not socket.socket or not timeout:
        return
    seconds = int(timeout)
    value = struct.pack("ll", seconds, int((timeout - seconds) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
    sock.settimeout(None)


class _Wire:
    """A connected socket and a reply reader of our own: one thread's connection, past redis-py's
    parser. Raises redis-py's exceptions, as its connection would."""

    __slots__ = ("buffer", "reader", "sock")

    def __init__(self, conn: Any) -> None:
        if conn._sock is None:
            conn.connect()  # redis-py's handshake: TLS, AUTH, SELECT, CLIENT SETNAME
        self.sock = conn._sock
        _kernel_timeouts(self.sock, conn.socket_timeout)
        parser = getattr(conn, "_parser", None)
        # redis-py's own mapping of error replies to exception classes (NOSCRIPT, READONLY, ...).
        reply_error = getattr(parser, "parse_error", None) or ResponseError
        self.reader = hiredis.Reader(protocolError=InvalidResponse, replyError=reply_error)
        self.buffer = bytearray(_READ_SIZE)

    def round_trip(self, packed: bytes, count: int) -> list[Any]:
        sock, reader, buffer = self.sock, self.reader, self.buffer
        replies: list[Any] = []
        try:
            sock.sendall(packed)
            while len(replies) < count:
                reply = reader.gets()
                if reply is False:  # RESP2 has no false: more bytes are needed
                    received = sock.recv_into(buffer)
                    if not received:
                        raise RedisConnectionError("Connection closed by server.")
                    # Any buffer works (redis-py feeds its bytearray too); the stubs say bytes.
                    reader.feed(buffer, 0, received)  # type: ignore[arg-type]
                elif isinstance(reply, RedisConnectionError):  # e.g. LOADING
                    raise reply
                else:
                    replies.append(reply)
        except (TimeoutError, BlockingIOError) as error:  # BlockingIOError: SO_RCVTIMEO ran out
            raise RedisTimeoutError(f"Timeout talking to Redis: {error}") from error
        except OSError as error:
            raise RedisConnectionError(f"Error talking to Redis: {error}") from error
        return replies


class DirectCommands:
    def __init__(self, pool: redis.ConnectionPool, overrides: dict[str, Any] | None = None) -> None:
        self._pool = pool
        # The pool's connection settings, with the app's own timeouts and retry policy on top.
        self._kwargs = {**pool.connection_kwargs, **(overrides or {})}
        self._local = threading.local()
        self._encoding: str = pool.connection_kwargs.get("encoding", "utf-8")
        # Our own reader only speaks RESP2 (where a reply is never ``False``).
        self._wired = HIREDIS and self._kwargs.get("protocol") in (None, 2, "2")

    @classmethod
    def for_client(
        cls, client: Any, overrides: dict[str, Any] | None = None
    ) -> DirectCommands | None:
        """A ``DirectCommands`` for ``client``, or ``None`` where it must go through the client."""
        pool: Any = getattr(client, "connection_pool", None)
        if type(client) is not redis.Redis or type(pool) not in _POOLS:
            return None
        if getattr(pool, "cache", None) is not None:
            return None
        return cls(pool, overrides)

    def _connection(self) -> tuple[Any, bool]:
        """This thread's connection and whether it was used before."""
        local = self._local
        forks = _forks
        conn = getattr(local, "conn", None)
        if conn is not None and local.forks == forks:
            return conn, True
        pool = self._pool
        conn = pool.connection_class(**self._kwargs)
        local.conn, local.forks, local.wire = conn, forks, None
        # Close the socket when the thread is gone, rather than leaving it to the garbage collector.
        weakref.finalize(threading.current_thread(), _close, conn)
        return conn, False

    def _drop(self, conn: Any) -> None:
        self._local.conn = self._local.wire = None
        conn.disconnect()

    def _pack(self, args: tuple[Any, ...]) -> bytes:
        # RESP encoding of one command; a few times cheaper than redis-py's general packer.
        encoding = self._encoding
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            if isinstance(arg, str):
                arg = arg.encode(encoding)
            elif isinstance(arg, int):
                arg = b"%d" % arg
            parts.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
        return b"".join(parts)

    def execute_many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one write, read every reply: one round trip.

        An error reply comes back as the ``ResponseError`` in its place (every reply is still read,
        so the connection stays in step); the caller decides what to raise.
        """
        return self._send(b"".join(self._pack(command) for command in commands), len(commands))

    def _send(self, packed: bytes, count: int) -> list[Any]:
        for attempt in (1, 2):
            conn, reused = self._connection()
            try:
                if self._wired:
                    wire: _Wire | None = self._local.wire
                    if wire is None:
                        wire = self._local.wire = _Wire(conn)
                    return wire.round_trip(packed, count)  # error replies in their places
                conn.send_packed_command([packed])
                replies = []
                for _reply in range(count):
                    try:
                        replies.append(conn.read_response())
                    except ResponseError as error:
                        replies.append(error)
                return replies
            except RedisConnectionError:
                self._drop(conn)
                # Only a connection left idle may have been closed by the server meanwhile: then
                # one more try on a new one. The app only sends commands that are safe to repeat.
                if not reused or attempt == 2:
                    raise
            except BaseException:
                self._drop(conn)  # a reply may be half read: never reuse this socket
                raise
        raise AssertionError("unreachable")

    def hget_entry(self, key: str) -> Any:
        """``HGET key d``: the hit, packed by hand."""
        encoded = key.encode(self._encoding)
        packed = b"*3\r\n$4\r\nHGET\r\n$%d\r\n%b\r\n$1\r\nd\r\n" % (len(encoded), encoded)
        (reply,) = self._send(packed, 1)
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    def hget_entries(self, keys: Sequence[str]) -> list[Any]:
        """``HGET key d`` for each of ``keys``, pipelined: ``get_many``'s lookups, packed by hand."""
        encoding = self._encoding
        parts = []
        for key in keys:
            encoded = key.encode(encoding)
            parts.append(b"*3\r\n$4\r\nHGET\r\n$%d\r\n%b\r\n$1\r\nd\r\n" % (len(encoded), encoded))
        return self._send(b"".join(parts), len(keys))

    def execute(self, *args: Any) -> Any:
        (reply,) = self.execute_many([args])
        if isinstance(reply, ResponseError):
            raise reply
        return reply
