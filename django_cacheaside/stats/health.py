"""Redis's side of the stats: its memory and eviction figures, and how much memory a model's keys use.

:func:`redis_health` reads ``INFO`` and says what to change where it matters (no ``maxmemory``,
``noeviction``, evictions rising, an ``allkeys-*`` policy, AOF on); on a Redis Cluster it reads every
primary and reports their figures summed and one by one. :func:`memory_estimate` samples a
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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
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
    """The ``INFO`` figures that matter to a cache, and what to change about them.

    Of one server; or, on a Redis Cluster, summed over its primaries (see :func:`combine_health`),
    with each primary's own figures in ``nodes`` (empty for a single server)."""

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
    keys: int = 0  # keys on the server, every database (INFO keyspace)
    nodes: dict[str, RedisHealth] = field(default_factory=dict)  # "host:port": one primary's

    @property
    def keyspace_hit_rate(self) -> float | None:
        """Server-wide key lookups that found their key (every client, every command)."""
        lookups = self.keyspace_hits + self.keyspace_misses
        return self.keyspace_hits / lookups if lookups else None

    def as_dict(self) -> dict[str, Any]:
        """The ``redis`` object of ``cachestats --json`` (its ``nodes``: the same object per
        primary, without ``nodes``)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "nodes"}
        data["warnings"] = list(self.warnings)
        data["keyspace_hit_rate"] = self.keyspace_hit_rate
        data["nodes"] = {address: node._figures() for address, node in self.nodes.items()}
        return data

    def _figures(self) -> dict[str, Any]:
        data = self.as_dict()
        del data["nodes"]
        return data


def _int(info: Mapping[str, Any], name: str) -> int:
    try:
        return int(info.get(name) or 0)
    except (TypeError, ValueError):
        return 0


def _run_id(info: Mapping[str, Any]) -> str:
    return str(info.get("run_id") or "-")


_DATABASE = re.compile(r"db\d+")


def _keys(info: Mapping[str, Any]) -> int:
    """Keys of every database, from ``INFO keyspace`` (``db0: {"keys": 12, ...}`` as redis-py
    parses it, or the raw ``keys=12,expires=...``)."""
    total = 0
    for name, value in info.items():
        if not _DATABASE.fullmatch(str(name)):
            continue
        if isinstance(value, str):
            value = dict(part.partition("=")[::2] for part in value.split(","))
        if isinstance(value, Mapping):
            total += _int(value, "keys")
    return total


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else -1 for part in text.split(".")) if text else ()


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
        keys=_keys(info),
    )
    health.warnings = health_warnings(health)
    return health


def evictions_marker(info: Mapping[str, Any], now: float) -> str:
    """What a check of one server leaves for the next one to compare with."""
    return f"{_run_id(info)} {_int(info, 'evicted_keys')} {now:.3f}"


def nodes_marker(infos: Mapping[str, Mapping[str, Any]], now: float) -> str:
    """The same for several servers (a cluster's primaries): a line per server,
    ``"<host:port> <run_id> <evicted_keys> <unix time>"``."""
    return "\n".join(f"{address} {evictions_marker(info, now)}" for address, info in infos.items())


def _node_markers(previous: str) -> dict[str, str]:
    markers = {}
    for line in previous.splitlines():
        address, _, marker = line.strip().partition(" ")
        if address and marker:
            markers[address] = marker
    return markers


def combine_health(nodes: Mapping[str, RedisHealth]) -> RedisHealth:
    """One :class:`RedisHealth` for several servers (a cluster's primaries, by ``"host:port"``),
    with each of them in ``nodes``. Pure.

    Memory, keys, evictions and keyspace hits and misses are summed; ``maxmemory`` too, but it is
    0 (no limit) as soon as one server has none; ``version`` is the lowest; ``maxmemory_policy``
    the policy if all agree, else ``"mixed (<policy>, <policy>...)"``; ``aof_enabled`` if any has
    it. ``evicted_since_last_check`` sums the servers that could be compared with the previous
    check (``None`` if none could: a restarted server resets its own comparison only)."""
    if not nodes:
        raise ValueError("combine_health() needs one server or more")
    members = dict(nodes)
    values = list(members.values())
    policies = sorted({node.maxmemory_policy for node in values})
    compared = [node for node in values if node.evicted_since_last_check is not None]
    since: int | None = None
    elapsed: float | None = None
    if compared:
        since = sum(node.evicted_since_last_check or 0 for node in compared)
        elapsed = max(node.seconds_since_last_check or 0.0 for node in compared)
    unbounded = any(node.maxmemory == 0 for node in values)
    combined = RedisHealth(
        version=min((node.version for node in values), key=_version),
        used_memory=sum(node.used_memory for node in values),
        maxmemory=0 if unbounded else sum(node.maxmemory for node in values),
        maxmemory_policy=policies[0] if len(policies) == 1 else f"mixed ({', '.join(policies)})",
        evicted_keys=sum(node.evicted_keys for node in values),
        evicted_since_last_check=since,
        seconds_since_last_check=elapsed,
        keyspace_hits=sum(node.keyspace_hits for node in values),
        keyspace_misses=sum(node.keyspace_misses for node in values),
        aof_enabled=any(node.aof_enabled for node in values),
        keys=sum(node.keys for node in values),
        nodes=members,
    )
    combined.warnings = health_warnings(combined)
    return combined


def health_from_infos(
    infos: Mapping[str, Mapping[str, Any]], previous: str = "", now: float = 0.0
) -> RedisHealth:
    """:func:`combine_health` of each server's :func:`health_from_info`, from their ``INFO``
    replies by ``"host:port"`` and the marker the previous check left (:func:`nodes_marker`).
    Pure: no I/O."""
    markers = _node_markers(previous)
    return combine_health(
        {
            address: health_from_info(info, markers.get(address, ""), now)
            for address, info in infos.items()
        }
    )


def _names(addresses: Iterable[str]) -> str:
    return ", ".join(addresses)


def health_warnings(health: RedisHealth) -> list[str]:
    """One sentence per figure that needs changing, saying what to change. Pure.

    With ``health.nodes`` (a cluster), each sentence names the primaries it is about."""
    servers = health.nodes or {"": health}

    def where(addresses: list[str]) -> str:
        if not health.nodes:
            return ""
        if len(addresses) == len(servers) > 1:
            return " on every primary"
        return f" on {_names(addresses)}"

    def having(test: Callable[[RedisHealth], bool]) -> list[str]:
        return [address for address, server in servers.items() if test(server)]

    def by_policy(addresses: list[str]) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for address in addresses:
            groups.setdefault(servers[address].maxmemory_policy, []).append(address)
        return groups

    warnings = []
    unbounded = having(lambda server: server.maxmemory == 0)
    if unbounded:
        used = sum(servers[address].used_memory for address in unbounded)
        warnings.append(
            f"maxmemory is not set{where(unbounded)}: Redis grows ({format_bytes(used)} now) until "
            "the host runs out of memory and nothing is ever evicted. Set maxmemory to what the "
            "host can spare, with maxmemory-policy volatile-ttl."
        )
    policies = by_policy(list(servers))
    if len(policies) > 1:
        which = "; ".join(
            f"{policy or '?'} on {_names(names)}" for policy, names in policies.items()
        )
        warnings.append(
            f"The primaries do not agree on maxmemory-policy: {which}. Whether a key is evicted "
            "then depends on which primary its hash slot is on. Set the same maxmemory-policy "
            "(volatile-ttl) on every primary."
        )
    refusing = having(
        lambda server: server.maxmemory != 0 and server.maxmemory_policy == "noeviction"
    )
    if refusing:
        warnings.append(
            f"maxmemory-policy is noeviction{where(refusing)}: at maxmemory every fill is refused "
            "with an OOM error, so reads fall back to the database. Set maxmemory-policy "
            "volatile-ttl."
        )
    allkeys = having(lambda server: server.maxmemory_policy.startswith("allkeys-"))
    if allkeys:
        which = ", ".join(f"{policy}{where(names)}" for policy, names in by_policy(allkeys).items())
        warnings.append(
            f"maxmemory-policy is {which}: it evicts keys without a TTL too (other data in this "
            "Redis), and may evict a tag set or purge marker while the entries it covers live on. "
            "Set maxmemory-policy volatile-ttl, which evicts the entries closest to expiry first."
        )
    evicting = having(lambda server: bool(server.evicted_since_last_check))
    if evicting:
        elapsed = max(servers[address].seconds_since_last_check or 0.0 for address in evicting)
        details = []
        for address in evicting:
            server = servers[address]
            limit = f" of {format_bytes(server.maxmemory)}" if server.maxmemory else ""
            usage = f"used_memory {format_bytes(server.used_memory)}{limit}"
            details.append(
                f"{address} ({server.evicted_since_last_check}, {usage})" if address else usage
            )
        total = sum(servers[address].evicted_since_last_check or 0 for address in evicting)
        on = f" on {_names(details)}" if health.nodes else f" ({details[0]})"
        warnings.append(
            f"Redis evicted {total} keys in the last {format_duration(elapsed)}{on}: evicted "
            "entries come back as misses. Raise maxmemory, or cache less (shorter TTLs, fewer "
            "models)."
        )
    appending = having(lambda server: server.aof_enabled)
    if appending:
        on = where(appending).replace(" on ", " for ", 1)  # "appendonly is on for every primary"
        warnings.append(
            f"appendonly is on{on}: every fill and invalidation is also written to disk, which a "
            "cache does not need. Set appendonly no, unless other data in this Redis must survive "
            "restarts."
        )
    return warnings


def _require(value: Any, what: str) -> Any:
    if value is None:
        raise BackendError(f"Redis could not be read ({what})")
    return value


def _address_order(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return (host, int(port)) if port.isdigit() else (address, 0)


def redis_health() -> RedisHealth:
    """``INFO`` now, compared with the previous check's ``evicted_keys`` (kept in Redis, under the
    namespace, for a day): "evictions rising" means keys were evicted since that check. On a
    Redis Cluster, ``INFO`` of every primary: their figures summed, and each primary's in
    ``nodes``. Two round trips (one per primary for ``INFO`` on a cluster). Raises
    ``BackendError`` if Redis cannot be read."""
    backend = get_backend()
    infos: dict[str, dict[str, Any]] = _require(backend.server_info() or None, "INFO")
    now = time.time()
    key = f"{keys.namespace(app_settings.KEY_PREFIX)}stats:evicted"
    if not backend.cluster:
        info = next(iter(infos.values()))
        previous = _require(
            backend.swap_marker(key, evictions_marker(info, now), EVICTIONS_MARKER_TTL_MS), "SET"
        )
        return health_from_info(info, previous, now)
    infos = {address: infos[address] for address in sorted(infos, key=_address_order)}
    previous = _require(
        backend.swap_marker(key, nodes_marker(infos, now), EVICTIONS_MARKER_TTL_MS), "SET"
    )
    return health_from_infos(infos, previous, now)


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
