"""``manage.py cachestats``: hit rates per model and schema stamp, and Redis's health.

Documented in ``docs/stats.md`` (every option, and the ``--json`` schema, which is stable).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from django_cacheaside import registry, signals, stats
from django_cacheaside.backend import get_backend
from django_cacheaside.conf import app_settings
from django_cacheaside.exceptions import BackendError
from django_cacheaside.stats import ModelStats
from django_cacheaside.stats.counters import ANY_MODEL
from django_cacheaside.stats.health import (
    MemoryEstimate,
    RedisHealth,
    format_bytes,
    format_duration,
    memory_estimates,
    redis_health,
)

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
FORMS = "a number and a unit (s, m, h or d) making whole minutes, e.g. 15m, 1h, 24h or 7d"
_WINDOW = re.compile(r"^\s*(\d+)\s*([smhd])\s*$", re.IGNORECASE)


def parse_window(text: str) -> int:
    """Seconds of a ``--window`` value; ``CommandError`` naming the accepted forms otherwise."""
    match = _WINDOW.match(text)
    if match is None:
        raise CommandError(f"--window {text!r} is not a duration: use {FORMS}.")
    seconds = int(match.group(1)) * UNITS[match.group(2).lower()]
    if seconds < 60 or seconds % 60:
        raise CommandError(
            f"--window {text!r}: stats are counted per minute, so a window is at least 60 s and a "
            f"whole number of minutes: use {FORMS}."
        )
    retention = int(float(app_settings.STATS_RETENTION))
    if seconds > retention:
        raise CommandError(
            f"--window {text!r} is longer than STATS_RETENTION ({format_duration(retention)}): "
            "older counts are gone. Use a shorter window or raise CACHEASIDE['STATS_RETENTION']."
        )
    return seconds


def window_text(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds // 60}m"


def current_schemas() -> dict[str, str]:
    """``{"app_label.ModelName": schema stamp}`` of every cached model, as this code builds it."""
    result = {}
    for model in registry.cached_models():
        manager = registry.manager_for(model)
        if manager is not None:
            result[f"{model._meta.app_label}.{model._meta.object_name}"] = manager.schema
    return dict(sorted(result.items()))


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return "> 5 s" if math.isinf(value) else f"<= {value:g} ms"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _where() -> str:
    """Where the backend's client connects, without credentials (a cluster: its primaries)."""
    backend = get_backend()
    if backend.cluster:
        cluster = cast("RedisCluster", backend.client)
        primaries = [node.name for node in cluster.get_primaries()]  # type: ignore[no-untyped-call]
        count = f"{len(primaries)} primar{'y' if len(primaries) == 1 else 'ies'}"
        return f"Redis Cluster, {count}: {', '.join(primaries)}" if primaries else "Redis Cluster"
    pool = getattr(backend.client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", {})
    if kwargs.get("path"):
        return f"unix:{kwargs['path']} (db {kwargs.get('db', 0)})"
    if kwargs.get("host"):
        return f"{kwargs['host']}:{kwargs.get('port', 6379)} (db {kwargs.get('db', 0)})"
    return "the configured Redis"


def _maxmemory(health: RedisHealth) -> str:
    if health.maxmemory:
        return format_bytes(health.maxmemory)
    unset = [address for address, node in health.nodes.items() if not node.maxmemory]
    if 0 < len(unset) < len(health.nodes):
        return f"not set on {', '.join(unset)}"
    return "not set"


def _evicted(health: RedisHealth) -> str:
    evicted = str(health.evicted_keys)
    if health.evicted_since_last_check is not None:
        ago = format_duration(health.seconds_since_last_check or 0.0)
        evicted += f" ({health.evicted_since_last_check} since the last check, {ago} ago)"
    return evicted


def health_figures(health: RedisHealth) -> list[tuple[str, str]]:
    """Redis's figures as the command prints them (summed over a cluster's primaries); the admin
    page shows the same."""
    lookups = health.keyspace_hits + health.keyspace_misses
    return [
        ("used_memory", format_bytes(health.used_memory)),
        ("maxmemory", _maxmemory(health)),
        ("maxmemory_policy", health.maxmemory_policy),
        ("keys", str(health.keys)),
        ("evicted_keys", _evicted(health)),
        ("keyspace hits", f"{_rate(health.keyspace_hit_rate)} of {lookups} lookups "
                          f"({health.keyspace_hits} hits, {health.keyspace_misses} misses)"),
        ("appendonly", "yes" if health.aof_enabled else "no"),
    ]  # fmt: skip


# The columns of the per-node table: (key of node_rows(), heading).
NODE_COLUMNS = [
    ("node", "node"),
    ("used_memory", "used_memory"),
    ("maxmemory", "maxmemory"),
    ("keys", "keys"),
    ("evicted_keys", "evicted_keys"),
    ("hit_rate", "keyspace hit rate"),
    ("maxmemory_policy", "maxmemory_policy"),
    ("version", "version"),
]


def node_rows(health: RedisHealth) -> list[dict[str, str]]:
    """One row per primary, formatted (:data:`NODE_COLUMNS`); none unless there are two or more."""
    if len(health.nodes) < 2:
        return []
    rows = []
    for address, node in health.nodes.items():
        evicted = str(node.evicted_keys)
        if node.evicted_since_last_check is not None:
            evicted += f" ({node.evicted_since_last_check} since the last check)"
        rows.append(
            {
                "node": address,
                "used_memory": format_bytes(node.used_memory),
                "maxmemory": format_bytes(node.maxmemory) if node.maxmemory else "not set",
                "keys": str(node.keys),
                "evicted_keys": evicted,
                "hit_rate": _rate(node.keyspace_hit_rate),
                "maxmemory_policy": node.maxmemory_policy,
                "version": node.version,
            }
        )
    return rows


def redis_heading(health: RedisHealth) -> str:
    if not health.nodes:
        return f"Redis {health.version}"
    count = len(health.nodes)
    if count == 1:
        return f"Redis {health.version}, Redis Cluster of 1 primary"
    return (
        f"Redis {health.version} (the lowest), Redis Cluster of {count} primaries: "
        "figures summed over them"
    )


@dataclass
class Report:
    """One round's figures: the rows, Redis's health, the memory estimates."""

    window: int
    rows: list[ModelStats]
    schemas: dict[str, str]  # the cached models shown, and their current schema stamps
    health: RedisHealth
    memory: dict[str, MemoryEstimate | None]
    chosen: bool = False  # --model was given

    def memory_of(self, row: ModelStats) -> MemoryEstimate | None:
        """A model's keys are shared by all its schema stamps: shown on its current one only."""
        if self.schemas.get(row.model) != row.schema:
            return None
        return self.memory.get(row.model)

    def as_dict(self) -> dict[str, Any]:
        models = []
        for row in self.rows:
            data = row.as_dict()
            data["load_ms_p50"] = _finite(data["load_ms_p50"])
            data["load_ms_p95"] = _finite(data["load_ms_p95"])
            estimate = self.memory_of(row)
            data["memory"] = estimate.total_bytes if estimate is not None else None
            data["memory_keys"] = estimate.keys if estimate is not None else None
            models.append(data)
        return {
            "window": self.window,
            "key_prefix": str(app_settings.KEY_PREFIX),
            "models": models,
            "redis": self.health.as_dict(),
        }


class Command(BaseCommand):
    help = (
        "Hit rates, misses, fills, lock waits, invalidations and database load per cached model "
        "(one row per schema stamp), the memory its keys use, and Redis's memory health."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add = parser.add_argument
        # fmt: off
        add("--model", action="append", dest="models", metavar="app_label.ModelName",
            help="Only this cached model (repeatable).")
        add("--window", help="How far back: 15m, 1h (the default), 24h, 7d... up to STATS_RETENTION.")
        add("--json", action="store_true", help="One JSON document (schema: docs/stats.md).")
        add("--watch", type=float, metavar="SECONDS",
            help="Print again every SECONDS (at least 1) until interrupted with Ctrl-C.")
        add("--reset", action="store_true",
            help="Drop the stats of this KEY_PREFIX (every model, process and host); asks first.")
        add("--noinput", "--no-input", action="store_false", dest="interactive",
            help="With --reset: do not ask for confirmation.")
        # fmt: on

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = int(options["verbosity"])
        if options["reset"]:
            self.reset(options)
            return
        window = parse_window(options["window"] or "1h")
        labels = self.chosen_models(options["models"])
        watch = options["watch"]
        if watch is not None and not (math.isfinite(watch) and watch >= 1):
            raise CommandError(f"--watch {watch:g}: give a number of seconds, at least 1.")
        if not app_settings.STATS:
            self.stderr.write(
                self.style.WARNING("CACHEASIDE['STATS'] is False: nothing is being counted.")
            )
        if watch is None:
            self.show(self.collect(window, labels), options["json"], watch)
            return
        try:
            self.show(self.collect(window, labels), options["json"], watch)
            while True:
                time.sleep(watch)
                try:
                    report = self.collect(window, labels)
                except CommandError as error:  # Redis went away: say so, keep watching
                    self.stderr.write(self.style.ERROR(str(error)))
                    continue
                self.show(report, options["json"], watch)
        except KeyboardInterrupt:
            return

    # -- options -------------------------------------------------------------------------------

    def chosen_models(self, given: list[str] | None) -> list[str] | None:
        if not given:
            return None
        valid = {label.lower(): label for label in current_schemas()}
        chosen = []
        for label in given:
            if label.lower() not in valid:
                names = ", ".join(valid.values()) or "none"
                raise CommandError(
                    f"--model {label!r} is not a cached model (app_label.ModelName). "
                    f"Cached models: {names}."
                )
            chosen.append(valid[label.lower()])
        return list(dict.fromkeys(chosen))

    # -- Redis -----------------------------------------------------------------------------------

    @contextmanager
    def redis_errors(self, doing: str) -> Iterator[list[BaseException]]:
        """Turn a Redis failure into a ``CommandError`` naming the cause the backend reported."""
        errors: list[BaseException] = []
        me = threading.get_ident()

        def record(sender: Any, error: BaseException, **kwargs: Any) -> None:
            if threading.get_ident() == me:
                errors.append(error)

        signals.cache_error.connect(record, weak=False)
        try:
            try:
                where = _where()
                if not get_backend().cluster:
                    where = f"Redis at {where}"
            except ImproperlyConfigured as exc:
                raise CommandError(str(exc)) from exc
            except RedisClusterException as exc:  # no node of the cluster answered
                raise CommandError(
                    f"Cannot {doing}: the Redis Cluster did not answer ({exc}). Check that it is "
                    "running and CACHEASIDE['REDIS'] points at one of its nodes."
                ) from exc
            try:
                yield errors
            except BackendError as exc:
                errors.append(exc)
            if errors:
                raise CommandError(
                    f"Cannot {doing}: {where} did not answer ({errors[0]}). Check that it is "
                    "running and CACHEASIDE['REDIS'] (or CACHES[CACHE_ALIAS]) points at it."
                )
        finally:
            signals.cache_error.disconnect(record)

    def collect(self, window: int, labels: list[str] | None) -> Report:
        schemas = current_schemas()
        if labels is not None:
            schemas = {label: schemas[label] for label in labels}
        with self.redis_errors("read the stats"):
            snap = stats.snapshot(window, labels)
            health = redis_health()
            memory = memory_estimates(schemas)
        rows = list(snap.models)
        present = {(row.model, row.schema) for row in rows}
        rows += [ModelStats(label, schema) for label, schema in schemas.items()
                 if (label, schema) not in present]  # fmt: skip
        rows.sort(key=lambda r: (r.model == ANY_MODEL, r.model, r.schema != schemas.get(r.model)))
        return Report(window, rows, schemas, health, memory, chosen=labels is not None)

    def reset(self, options: dict[str, Any]) -> None:
        for dest, name in (("models", "model"), ("window", "window"), ("watch", "watch"),
                           ("json", "json")):  # fmt: skip
            if options[dest] not in (None, False):
                raise CommandError(f"--reset drops every model's stats; it takes no --{name}.")
        prefix = app_settings.KEY_PREFIX
        if options["interactive"]:
            try:
                answer = input(
                    f"This drops the stats of KEY_PREFIX {prefix!r} (every model, every process and "
                    "host sharing this Redis). They cannot be recovered.\n"
                    "Type 'yes' to continue, or 'no' to cancel: "
                )
            except EOFError:
                raise CommandError(
                    "--reset needs an answer and the input is closed; use --noinput to skip it."
                ) from None
            if answer.strip() != "yes":
                self.stdout.write("Reset cancelled.")
                return
        with self.redis_errors("reset the stats"):
            dropped = stats.reset()
        if self.verbosity >= 1:
            self.stdout.write(f"Stats of KEY_PREFIX {prefix!r} reset: {dropped} buckets dropped.")

    # -- output ----------------------------------------------------------------------------------

    def show(self, report: Report, as_json: bool, watch: float | None) -> None:
        if as_json:
            document = report.as_dict()
            indent = None if watch is not None else 2  # watching: one document per line
            self.stdout.write(json.dumps(document, indent=indent, allow_nan=False))
            return
        if self.verbosity == 0:
            for warning in report.health.warnings:
                self.stderr.write(self.style.WARNING(f"Warning: {warning}"))
            return
        if watch is not None:
            if self.stdout.isatty():
                self.stdout.write("\x1b[H\x1b[2J", ending="")
            stamp = time.strftime("%H:%M:%S")
            self.stdout.write(f"{stamp}, every {watch:g} s (Ctrl-C to stop)")
        self.write_table(report)
        self.write_redis(report.health)

    def write_table(self, report: Report) -> None:
        prefix = app_settings.KEY_PREFIX
        self.stdout.write(
            self.style.MIGRATE_HEADING(
                f"Cache stats, last {window_text(report.window)} (KEY_PREFIX {prefix!r})"
            )
        )
        head = ["model", "schema", "reads", "hit rate", "misses", "fills", "lock waits/timeouts",
                "invalidations", "errors", "load p50", "load p95", "memory"]  # fmt: skip
        table = [head]
        other = False
        rows = [row for row in report.rows if self.listed(report, row)]
        for row in rows:
            schema = row.schema
            if row.model in report.schemas and schema != report.schemas[row.model]:
                schema, other = f"{schema}*", True
            causes = ", ".join(f"{cause} {n}" for cause, n in row.invalidations.items() if n)
            total = sum(row.invalidations.values())
            estimate = report.memory_of(row)
            table.append([
                row.model, schema, str(row.reads), _rate(row.hit_rate), str(row["misses"]),
                str(row["fills"]), f"{row['lock_waits']}/{row['lock_timeouts']}",
                f"{total} ({causes})" if total else "0", str(row["errors"]),
                _ms(row.load_percentile(0.5)), _ms(row.load_percentile(0.95)),
                "-" if estimate is None else f"~{format_bytes(estimate.total_bytes)}"
                if estimate.keys else "0 B",
            ])  # fmt: skip
        widths = [max(len(line[i]) for line in table) for i in range(len(head))]
        for n, line in enumerate(table):
            cells = [cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in
                     enumerate(zip(line, widths, strict=True))]  # fmt: skip
            text = "  ".join(cells).rstrip()
            self.stdout.write(self.style.SQL_FIELD(text) if n == 0 else text)
            if n and self.verbosity >= 2:
                self.write_details(rows[n - 1], report.memory_of(rows[n - 1]))
        if not rows:
            self.stdout.write(
                "Nothing counted in this window, and no keys (-v 2 lists every model)."
            )
        if other:
            self.stdout.write(
                "* not the schema stamp of this code: entries another version of the model wrote "
                "(e.g. before a deploy), which this version reads as misses and refills."
            )

    def listed(self, report: Report, row: ModelStats) -> bool:
        """Text rows: idle ones (nothing counted, no keys) only with -v 2 or --model."""
        if self.verbosity >= 2 or report.chosen or any(row.counts.values()):
            return True
        estimate = report.memory_of(row)
        return estimate is not None and estimate.keys > 0

    def write_details(self, row: ModelStats, estimate: MemoryEstimate | None) -> None:
        mean = row["load_us"] / row["load_count"] / 1000 if row["load_count"] else None
        self.stdout.write(
            f"    hits {row['hits']}, negative hits {row['negative_hits']}, query hits/misses "
            f"{row['query_hits']}/{row['query_misses']}, fills refused {row['fills_refused']}, "
            f"coalesced {row['coalesced']}, early/stale refreshes {row['early_refreshes']}/"
            f"{row['stale_refreshes']}, stale served {row['stale_served']}, mean load "
            + ("-" if mean is None else f"{mean:.2f} ms")
        )
        if estimate is not None and estimate.keys == 0:
            self.stdout.write("    memory: no keys")
        elif estimate is not None:
            how = (
                "counted over the whole database"
                if estimate.exact_count
                else f"{estimate.matched} of {estimate.examined} scanned keys, times DBSIZE "
                f"{estimate.dbsize}"
            )
            self.stdout.write(
                f"    memory: {estimate.keys} keys ({how}), mean MEMORY USAGE of {estimate.sampled}"
                f" sampled, about +-{estimate.relative_error:.0%}"
            )

    def write_redis(self, health: RedisHealth) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(redis_heading(health)))
        figures = health_figures(health)
        width = max(len(name) for name, _ in figures)
        for name, value in figures:
            self.stdout.write(f"  {name.ljust(width)}  {value}")
        rows = node_rows(health)
        if rows:
            self.stdout.write("  per primary:")
            table = [[heading for _, heading in NODE_COLUMNS]]
            table += [[row[key] for key, _ in NODE_COLUMNS] for row in rows]
            widths = [max(len(line[i]) for line in table) for i in range(len(NODE_COLUMNS))]
            left = [key in ("node", "maxmemory_policy", "version") for key, _ in NODE_COLUMNS]
            for n, line in enumerate(table):
                cells = [cell.ljust(w) if text_column else cell.rjust(w) for cell, w, text_column
                         in zip(line, widths, left, strict=True)]  # fmt: skip
                text = "    " + "  ".join(cells).rstrip()
                self.stdout.write(self.style.SQL_FIELD(text) if n == 0 else text)
        for warning in health.warnings:
            self.stdout.write(self.style.WARNING(f"Warning: {warning}"))
