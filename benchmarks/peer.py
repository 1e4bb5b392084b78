#!/usr/bin/env python3
"""One comparison process: ``python benchmarks/peer.py {django-redis,cacheops,cachalot}``.

Configures Django for that library alone (its own ``settings.configure``: ``peerapp`` and the
library, never django_cacheaside), creates ``benchapp``'s tables under its own run prefix, seeds
them with ``common.seed`` (same seed, same rows as ``run.py``), and measures the library's rows
next to the same ORM baselines, with ``measure.py``'s method.

Standalone it prints its own table. ``run.py`` starts it with ``--serve`` and drives it over
stdin/stdout, one JSON line each way: after the setup and the warm-up it answers
``{"ready": ...}``; each ``repeat`` line runs one repeat of every row and answers its figures, so
the comparison rows are interleaved with ``run.py``'s repeats; ``quit`` cleans up and exits.

The database comes from ``$BENCH_DATABASE`` (a JSON ``DATABASES`` entry, set by ``run.py``) or
``$DATABASE_URL``; Redis from ``$REDIS_URL`` (``run.py`` passes the server it uses).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from typing import IO, Any

import peers
from common import (
    BASE_SETTINGS,
    HERE,
    KEY_PREFIX,
    RUN_ID,
    TABLE_PREFIX,
    create_tables,
    delete_run_keys,
    drop_tables,
    seed,
)
from measure import Bench, Run, run_repeat, warm_up


def database() -> dict[str, Any]:
    given = os.environ.get("BENCH_DATABASE")
    if given:
        entry: dict[str, Any] = json.loads(given)
        return entry
    from django_cacheaside.dev import database as from_url  # the URL parsing only

    return from_url()


def configure(peer: peers.Peer, ctx_settings: dict[str, Any]) -> None:
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={"default": database()},
        INSTALLED_APPS=peer.installed_apps(),
        **BASE_SETTINGS,
        **ctx_settings,
    )
    django.setup()


def environment(peer: peers.Peer) -> dict[str, Any]:
    import redis
    from django.db import connection

    return {
        "name": peer.name,
        "version": peer.version(),
        "about": peer.about,
        "pid": os.getpid(),
        "run_id": RUN_ID,
        "db_vendor": connection.vendor,
        "redis_py": redis.__version__,
    }


def models() -> list[Any]:
    from peerapp.models import CachedRow, Owner, PlainRow

    return [Owner, CachedRow, PlainRow]


def setup(peer: peers.Peer, args: argparse.Namespace) -> tuple[list[Bench], peers.base.PeerContext]:
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    configure(peer, peer.settings(redis_url, KEY_PREFIX, TABLE_PREFIX))
    from peerapp.models import CachedRow, Owner, PlainRow

    rng = random.Random(args.seed)
    create_tables(models())
    seed(args.rows, rng, Owner, [CachedRow, PlainRow])  # run.py's rows, same seed
    ctx = peers.base.PeerContext(
        pks=list(CachedRow.objects.order_by("pk").values_list("pk", flat=True)),
        owners=list(Owner.objects.order_by("pk").values_list("pk", flat=True)),
        rng=rng,
        ops=args.ops,
        batch_ops=args.batch_ops,
        batch=args.batch,
        redis_url=redis_url,
        key_prefix=KEY_PREFIX,
        table_prefix=TABLE_PREFIX,
    )
    benches = [*peers.base.baseline_benches(ctx), *peer.benches(ctx)]
    warm_up(benches, args.warmup)
    return benches, ctx


def clean_up() -> None:
    import redis

    try:
        drop_tables(models())  # first: cachalot answers a DROP TABLE with new table timestamps
    finally:
        delete_run_keys(redis.Redis.from_url(os.environ.get("REDIS_URL", "")))


def serve(peer: peers.Peer, args: argparse.Namespace, commands: IO[str], replies: IO[str]) -> int:
    def say(message: dict[str, Any]) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    try:
        benches, _ctx = setup(peer, args)
    except Exception as error:
        say({"error": f"{type(error).__name__}: {error}"})
        with contextlib.suppress(Exception):
            clean_up()
        return 1
    try:
        rows = [{"name": b.name, "baseline": b.baseline, "calls": b.calls} for b in benches]
        say({"ready": environment(peer), "rows": rows})
        for line in commands:
            if line.strip() != "repeat":
                break
            run_repeat(benches, f"{peer.name}: ")
            say({"runs": {b.name: vars(b.runs[-1]) for b in benches}})
        return 0
    except Exception as error:
        say({"error": f"{type(error).__name__}: {error}"})
        return 1
    finally:
        clean_up()


# -- the parent's side (run.py) --------------------------------------------------------------


class PeerProcess:
    """A running ``peer.py --serve``: its rows, prefixed with its name, fed one repeat at a time."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str]) -> None:
        self.name = name
        self.error: str | None = None
        self.benches: list[Bench] = []
        self.environment: dict[str, Any] = {}
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "peer.py"), name, "--serve", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def _reply(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                reply: dict[str, Any] = json.loads(line)
                if "error" in reply:
                    raise RuntimeError(reply["error"])
                return reply
        raise RuntimeError(f"exited with status {self.process.wait()}")

    def row(self, name: str) -> str:
        return f"{self.name}: {name}"

    def wait_ready(self) -> None:
        try:
            reply = self._reply()
        except RuntimeError as error:
            self.error = str(error)
            return
        self.environment = reply["ready"]
        self.benches = [
            Bench(
                self.row(r["name"]),
                lambda i: None,
                r["calls"],
                baseline=self.row(r["baseline"]) if r["baseline"] else None,
            )
            for r in reply["rows"]
        ]

    def repeat(self) -> None:
        if self.error is not None:
            return
        assert self.process.stdin is not None
        try:
            self.process.stdin.write("repeat\n")
            self.process.stdin.flush()
            runs = self._reply()["runs"]
        except (RuntimeError, OSError) as error:
            self.error = str(error)
            self.benches = []  # a partial set of repeats would not be interleaved with ours
            return
        for bench in self.benches:
            bench.runs.append(Run(**runs[bench.name.removeprefix(f"{self.name}: ")]))

    def close(self) -> None:
        if self.process.poll() is None and self.process.stdin is not None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
            except OSError:
                pass
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()  # our own child, by its handle
            self.process.wait()


# -- standalone --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("peer", choices=sorted(peers.PEERS))
    parser.add_argument("--serve", action="store_true", help="be driven by run.py over stdin")
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--batch-ops", type=int, default=200)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=5, help="standalone only")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if not peers.installed(args.peer):
        print(f"{args.peer} is not installed", file=sys.stderr)
        return 2
    peer = peers.load(args.peer)
    if args.serve:
        return serve(peer, args, sys.stdin, sys.stdout)
    benches, _ctx = setup(peer, args)
    try:
        for repeat in range(args.repeats):
            run_repeat(benches, f"repeat {repeat + 1}/{args.repeats}: ")
        env = environment(peer)
        print(f"{env['version']} ({env['about']}), {env['db_vendor']}, run {RUN_ID}")
        by_name = {b.name: b for b in benches}
        for b in benches:
            base = by_name.get(b.baseline or "")
            ratio = ""
            if base is not None:
                ratio = f"{b.median('ops_per_s') / base.median('ops_per_s'):.2f}x {base.name}"
            print(
                f"  {b.name:<34} {b.median('ops_per_s'):>9,.0f} ops/s  "
                f"p50 {b.median('p50_us'):>9,.1f} µs  p99 {b.median('p99_us'):>9,.1f} µs  {ratio}"
            )
        return 0
    finally:
        clean_up()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
