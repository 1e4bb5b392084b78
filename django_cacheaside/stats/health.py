"""Redis's side of the stats: its memory and eviction figures, and how much memory a model's keys use.

:func:`redis_health` reads ``INFO`` and says what to change where it matters (no ``maxmemory``,
``noeviction``, evictions rising, an ``allkeys-*`` policy, AOF on). :func:`memory_estimate` samples a
model's keys with a bounded ``SCAN`` (never ``KEYS``) and ``MEMORY USAGE``. Both raise
:class:`~django_cacheaside.exceptions.BackendError` when Redis cannot be read. The method and its
error are described in ``docs/stats.md``.
"""

from __future__ import annotations

import math
import random
import re
import statistics
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from django.apps import apps

from django_cacheaside import keys
from django_cacheaside.backend import get_backend
from django_cacheaside.conf import app_settings
from django_cacheaside.exceptions import BackendError

# The evicted_keys figure of the previous check lives this long under <namespace>stats:evicted.
EVICTIONS_MARKER_TTL_MS = 24 * 3600 * 1000
# Keys a memory estimate's SCAN examines at most (whole SCAN replies: a few hundred more at worst).
SCAN_BUDGET = 10_000
# Keys whose MEMORY USAGE is read per model.
SAMPLE_SIZE = 50


@dataclass
class RedisHealth:
    """The ``INFO`` figures that matter to a cache, and what to change about them."""

    version: str
    used_memory: int
    maxmemory: int  # 0: no limit
    maxmemory_policy: str
    evicted_keys: int  # since the server started (or CONFIG RESETSTAT)
    evicted_since_last_check: int | None  # None: no earlier check of this server to compare with
    seconds_since_last_check: float | None
    keyspace_hits: int
    keyspace_misses: int
    aof_enabled: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def keyspace_hit_rate(self) -> float | None:
        """Server-wide key lookups that found their key (every client, every command)."""
        lookups = self.keyspace_hits + self.keyspace_misses
        return self.keyspace_hits / lookups if lookups else None

    def as_dict(self) -> dict[str, Any]:
        """The ``redis`` object of ``cachestats --json``."""
        return {**asdict(self), "keyspace_hit_rate": self.keyspace_hit_rate}


def _int(info: Mapping[str, Any], name: str) -> int:
    try:
        return int(info.get(name) or 0)
    except (TypeError, ValueError):
        return 0


def _run_id(info: Mapping[str, Any]) -> str:
    return str(info.get("run_id") or "-")


def format_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def health_from_info(info: Mapping[str, Any], previous: str = "", now: float = 0.0) -> RedisHealth:
    """:class:`RedisHealth` from an ``INFO`` reply and the marker the previous check left
    (``"<run_id> <evicted_keys> <unix time>"``, or ``""``). Pure: no I/O."""
    evicted = _int(info, "evicted_keys")
    since: int | None = None
    elapsed: float | None = None
    parts = previous.split()
    if len(parts) == 3 and parts[0] == _run_id(info):
        try:
            before, then = int(parts[1]), float(parts[2])
        except ValueError:
            pass
        else:
            if evicted >= before:  # fewer: the counter was reset (CONFIG RESETSTAT)
                since, elapsed = evicted - before, max(0.0, now - then)
    health = RedisHealth(
        version=str(info.get("redis_version", "")),
        used_memory=_int(info, "used_memory"),
        maxmemory=_int(info, "maxmemory"),
        maxmemory_policy=str(info.get("maxmemory_policy", "")),
        evicted_keys=evicted,
        evicted_since_last_check=since,
        seconds_since_last_check=elapsed,
        keyspace_hits=_int(info, "keyspace_hits"),
        keyspace_misses=_int(info, "keyspace_misses"),
        aof_enabled=_int(info, "aof_enabled") == 1,
    )
    health.warnings = health_warnings(health)
    return health


def health_warnings(health: RedisHealth) -> list[str]:
    """One sentence per figure that needs changing, saying what to change. Pure."""
    warnings = []
    policy = health.maxmemory_policy
    if health.maxmemory == 0:
        warnings.append(
            f"maxmemory is not set: Redis grows ({format_bytes(health.used_memory)} now) until the host "
            "runs out of memory and nothing is ever evicted. Set maxmemory to what the host can "
            "spare, with maxmemory-policy volatile-ttl."
        )
    elif policy == "noeviction":
        warnings.append(
            "maxmemory-policy is noeviction: at maxmemory every fill is refused with an OOM error, "
            "so reads fall back to the database. Set maxmemory-policy volatile-ttl."
        )
    if policy.startswith("allkeys-"):
        warnings.append(
            f"maxmemory-policy is {policy}: it evicts keys without a TTL too (other data in this "
            "Redis), and may evict a tag set or purge marker while the entries it covers live on. "
            "Set maxmemory-policy volatile-ttl, which evicts the entries closest to expiry first."
        )
    if health.evicted_since_last_check:
        elapsed = health.seconds_since_last_check or 0.0
        limit = f" of {format_bytes(health.maxmemory)}" if health.maxmemory else ""
        warnings.append(
            f"Redis evicted {health.evicted_since_last_check} keys in the last {format_duration(elapsed)} "
            f"(used_memory {format_bytes(health.used_memory)}{limit}): evicted entries come back as misses. "
            "Raise maxmemory, or cache less (shorter TTLs, fewer models)."
        )
    if health.aof_enabled:
        warnings.append(
            "appendonly is on: every fill and invalidation is also written to disk, which a cache "
            "does not need. Set appendonly no, unless other data in this Redis must survive restarts."
        )
    return warnings


def _require(value: Any, what: str) -> Any:
    if value is None:
        raise BackendError(f"Redis could not be read ({what})")
    return value


def redis_health() -> RedisHealth:
    """``INFO`` now, compared with the previous check's ``evicted_keys`` (kept in Redis, under the
    namespace, for a day): "evictions rising" means keys were evicted since that check. Two round
    trips. Raises ``BackendError`` if Redis cannot be read."""
    backend = get_backend()
    info = _require(backend.server_info(), "INFO")
    now = time.time()
    marker = f"{_run_id(info)} {_int(info, 'evicted_keys')} {now:.3f}"
    key = f"{keys.namespace(app_settings.KEY_PREFIX)}stats:evicted"
    previous = _require(backend.swap_marker(key, marker, EVICTIONS_MARKER_TTL_MS), "SET")
    return health_from_info(info, previous, now)


@dataclass
class MemoryEstimate:
    """About how much memory one model's keys (entries, pointers, leases, query results) use."""

    model: str  # "app_label.ModelName"
    total_bytes: int
    keys: int  # how many keys: counted if ``exact_count``, else extrapolated
    exact_count: bool  # the SCAN went over the whole database
    examined: int  # keys the SCAN examined
    matched: int  # of which this model's
    sampled: int  # keys whose MEMORY USAGE was read
    dbsize: int
    relative_error: float  # sampling error (about 95%), as a fraction of ``total_bytes``


_LITERAL = re.compile(r"\\(.)")


def literal_prefix(pattern: str) -> str:
    """The text every key matching ``pattern`` starts with: ``pattern`` must be an escaped
    literal followed by ``*`` (as :func:`keys.model_pattern` builds it)."""
    body = pattern[:-1]
    if not pattern.endswith("*") or re.search(r"(?<!\\)(?:\\\\)*[*?\[]", body):
        raise ValueError(f"not a literal prefix pattern: {pattern!r}")
    return _LITERAL.sub(r"\1", body)


def _prefix(label: str) -> bytes:
    try:
        model = apps.get_model(label)
    except (LookupError, ValueError) as exc:
        raise ValueError(f"{label!r} is not an installed model (app_label.ModelName).") from exc
    namespace = keys.namespace(app_settings.KEY_PREFIX)
    return literal_prefix(keys.model_pattern(namespace, keys.model_label(model))).encode()


def estimate_from_sample(
    label: str,
    found: list[bytes],
    sizes: list[int],
    examined: int,
    complete: bool,
    dbsize: int,
) -> MemoryEstimate | None:
    """The estimate from what the scan found (``found``: the model's keys among ``examined``) and
    the ``MEMORY USAGE`` of a sample of them (``sizes``). Pure."""
    matched = len(found)
    if complete:
        count, count_error = matched, 0.0
    elif matched == 0 or examined == 0:
        return None  # too few of its keys in the part scanned to say anything
    else:
        share = matched / examined
        dbsize = max(dbsize, examined)
        count = round(share * dbsize)
        fpc = 1 - examined / dbsize
        count_error = 1.96 * math.sqrt(max(0.0, (1 - share) / (examined * share) * fpc))
    if count == 0:
        return MemoryEstimate(label, 0, 0, complete, examined, 0, 0, dbsize, 0.0)
    if not sizes:
        return None  # MEMORY USAGE refused, or every sampled key expired meanwhile
    mean = statistics.fmean(sizes)
    size_error = 0.0
    if len(sizes) > 1 and mean > 0:
        fpc = max(0.0, 1 - len(sizes) / max(count, len(sizes)))
        size_error = 1.96 * statistics.stdev(sizes) / mean / math.sqrt(len(sizes)) * math.sqrt(fpc)
    return MemoryEstimate(
        model=label,
        total_bytes=round(mean * count),
        keys=count,
        exact_count=complete,
        examined=examined,
        matched=matched,
        sampled=len(sizes),
        dbsize=dbsize,
        relative_error=math.hypot(count_error, size_error),
    )


def memory_estimates(
    labels: Iterable[str], *, scan_budget: int = SCAN_BUDGET, sample_size: int = SAMPLE_SIZE
) -> dict[str, MemoryEstimate | None]:
    """:func:`memory_estimate` of several models from one shared ``SCAN``; ``None`` where no
    estimate can be made. Three round trips plus one per ``SCAN`` reply (1000 keys each)."""
    wanted = list(dict.fromkeys(labels))
    prefixes = {label: _prefix(label) for label in wanted}  # a proxy shares its model's prefix
    backend = get_backend()
    budget = max(1, scan_budget)
    dbsize = _require(backend.dbsize(), "DBSIZE")
    sample = _require(
        backend.scan_sample(sorted(set(prefixes.values())), budget, min(budget, 1000)), "SCAN"
    )
    picked = {
        prefix: random.sample(found, min(len(found), max(1, sample_size)))
        for prefix, found in sample.matched.items()
    }
    flat = [key for chosen in picked.values() for key in chosen]
    usage = dict(zip(flat, _require(backend.memory_usage(flat), "MEMORY USAGE"), strict=True))
    result: dict[str, MemoryEstimate | None] = {}
    for label, prefix in prefixes.items():
        sizes = [size for key in picked[prefix] if (size := usage[key]) is not None]
        found = sample.matched[prefix]
        result[label] = estimate_from_sample(
            label, found, sizes, sample.examined, sample.complete, dbsize
        )
    return result


def memory_estimate(
    model_label: str, *, scan_budget: int = SCAN_BUDGET, sample_size: int = SAMPLE_SIZE
) -> MemoryEstimate | None:
    """About how much memory the keys of ``model_label`` (``"app_label.ModelName"``) use.

    A ``SCAN`` of at most about ``scan_budget`` keys finds the model's keys (those matching
    :func:`keys.model_pattern`); ``MEMORY USAGE`` of up to ``sample_size`` of them gives a mean size;
    the number of keys is the count found if the scan covered the database, else the share of
    examined keys that matched times ``DBSIZE``. ``None`` when an incomplete scan found none of the
    model's keys. Raises ``BackendError`` if Redis cannot be read, ``ValueError`` for an unknown
    model.
    """
    return memory_estimates([model_label], scan_budget=scan_budget, sample_size=sample_size)[
        model_label
    ]
