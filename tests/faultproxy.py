"""A TCP proxy that breaks the connection to a server on demand, for fault-injection tests.

``FaultProxy(target_port)`` listens on a free loopback port and forwards every connection to the
target. Its event loop runs in a thread of its own, so the code under test stays synchronous::

    with FaultProxy(server.port) as proxy:  # point the client at proxy.url
        proxy.set_mode("blackhole")
        ...
        proxy.set_mode("pass")

``set_mode()`` may be called from any thread and returns once the mode is in force: connections
it aborts are aborted, a listener it closes is closed. The modes:

``pass``
    Forward both ways.
``latency`` (``ms``)
    Wait ``ms`` milliseconds before forwarding each chunk, in both directions.
``blackhole``
    Accept connections and read from both sides, forward nothing: every request goes unanswered,
    on new and existing connections alike.
``reset``
    Abort every connection, existing and new (accepted, then aborted), with a TCP RST.
``reset_mid_reply`` (``after``)
    Forward the first ``after`` bytes (default 3) of a server reply, then abort the connection
    with a RST: the client reads a truncated reply.
``refuse``
    Abort every connection and close the listening socket: connects are refused. Any other mode
    listens again on the same port.
``garbage`` (``reply``)
    Forward requests, but answer each server reply with ``reply`` instead (default: bytes that are
    not RESP).

A connection that lost bytes (black-holed, or answered with garbage) can never be in step with its
server again, so it is aborted at the next change of mode. ``stats()`` counts connections accepted
and bytes received from each side, whatever the mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["GARBAGE", "MODES", "FaultProxy", "ProxyStats"]

# Not RESP: no reply starts with a NUL byte, and 0xff is not valid UTF-8 either.
GARBAGE = b"\x00\xffgarbage\r\n"

# Each mode and the parameters it takes, with their defaults.
MODES: dict[str, dict[str, Any]] = {
    "pass": {},
    "latency": {"ms": 50.0},
    "blackhole": {},
    "reset": {},
    "reset_mid_reply": {"after": 3},
    "refuse": {},
    "garbage": {"reply": GARBAGE},
}

CHUNK = 65536
T = TypeVar("T")


@dataclass(frozen=True)
class ProxyStats:
    """Totals since the proxy was created."""

    connections: int = 0  # connections accepted
    bytes_from_client: int = 0
    bytes_from_server: int = 0


@dataclass(frozen=True)
class _Mode:
    name: str
    params: dict[str, Any] = field(default_factory=dict)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close at once with a RST (``SO_LINGER`` 0), dropping anything not yet sent."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One proxied connection: the client's side and the server's."""

    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.client = client
        self.server = server
        self.broken = False  # bytes were dropped or replaced: never in step again
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.client.close()
            self.server.close()

    def reset(self) -> None:
        if not self.closed:
            self.closed = True
            _abort(self.client)
            self.server.transport.abort()


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0  # chosen by the kernel on start(), kept across "refuse"
        self._mode = _Mode("pass")
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stats_lock = threading.Lock()
        self._stats = ProxyStats()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def mode(self) -> str:
        return self._mode.name

    def __repr__(self) -> str:
        return (
            f"<FaultProxy 127.0.0.1:{self.port} -> {self.target[0]}:{self.target[1]} {self.mode}>"
        )

    # -- the controlling thread's side -------------------------------------------------------

    def start(self) -> None:
        """Start the loop thread and listen; returns once connections are accepted."""
        if self._thread is not None:
            raise RuntimeError("the proxy is already running")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run, args=(loop, ready), name=f"FaultProxy->{self.target[1]}", daemon=True
        )
        self._thread.start()
        ready.wait()
        try:
            self._call(self._listen())
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Abort every connection, stop listening, end the loop thread and close the loop."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._call(self._shutdown())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            self._loop = self._thread = None

    def set_mode(self, name: str, **params: Any) -> None:
        """Switch to mode ``name`` (see the module docstring), in force when this returns."""
        if name not in MODES:
            raise ValueError(f"unknown mode {name!r}; modes: {', '.join(MODES)}")
        unknown = set(params) - set(MODES[name])
        if unknown:
            raise TypeError(f"mode {name!r} takes no parameter(s) {', '.join(sorted(unknown))}")
        self._call(self._switch(_Mode(name, {**MODES[name], **params})))

    def stats(self) -> ProxyStats:
        with self._stats_lock:
            return self._stats

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the proxy is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    # -- the loop thread's side ------------------------------------------------------------------

    def _count(self, connections: int = 0, client: int = 0, server: int = 0) -> None:
        with self._stats_lock:
            s = self._stats
            self._stats = ProxyStats(
                s.connections + connections,
                s.bytes_from_client + client,
                s.bytes_from_server + server,
            )

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, "127.0.0.1", self.port, reuse_address=True
            )
            self.port = self._server.sockets[0].getsockname()[1]

    async def _unlisten(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _switch(self, mode: _Mode) -> None:
        self._mode = mode
        for link in list(self._links):
            if link.broken or mode.name in ("reset", "refuse"):
                link.reset()
        if mode.name == "refuse":
            await self._unlisten()
        else:
            await self._listen()

    async def _shutdown(self) -> None:
        for link in list(self._links):
            link.reset()
        await self._unlisten()
        # Aborted links end their tasks by themselves; only one still connecting needs a cancel.
        tasks = list(self._tasks)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=1)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._count(connections=1)
        try:
            if self._mode.name in ("reset", "refuse"):
                _abort(writer)
                return
            try:
                server_reader, server_writer = await asyncio.open_connection(*self.target)
            except OSError:
                _abort(writer)  # the target is down: so is the proxy, for this client
                return
            link = _Link(writer, server_writer)
            self._links.add(link)
            try:
                await asyncio.gather(
                    self._pump(link, reader, server_writer, from_server=False),
                    self._pump(link, server_reader, writer, from_server=True),
                )
            finally:
                self._links.discard(link)
                link.close()
        except asyncio.CancelledError:
            pass  # stop(): asyncio's stream callback must not see a cancelled task (3.11)
        finally:
            if not writer.transport.is_closing():  # cancelled before it was linked
                _abort(writer)
            self._tasks.discard(task)

    async def _pump(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        from_server: bool,
    ) -> None:
        """Copy one direction of ``link`` until either side closes, applying the current mode."""
        try:
            while not link.closed:
                data = await reader.read(CHUNK)
                if not data:
                    break
                if from_server:
                    self._count(server=len(data))
                else:
                    self._count(client=len(data))
                mode = self._mode
                if mode.name == "blackhole":
                    link.broken = True
                    continue
                if mode.name == "latency":
                    await asyncio.sleep(float(mode.params["ms"]) / 1000)
                elif from_server and mode.name == "garbage":
                    link.broken = True
                    data = bytes(mode.params["reply"])
                elif from_server and mode.name == "reset_mid_reply":
                    writer.write(data[: int(mode.params["after"])])
                    await writer.drain()
                    await asyncio.sleep(0.005)  # let the client read the start of the reply
                    link.reset()
                    break
                if link.closed:
                    break
                writer.write(data)
                await writer.drain()
        except OSError:  # ConnectionResetError, BrokenPipeError...: the link is over
            pass
        finally:
            link.close()
