"""The per-thread direct connection: what happens when the connection under it goes away."""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
from typing import Any

import pytest
from django.db.models.signals import post_init

from django_cacheaside import signals
from django_cacheaside.backend import get_backend
from django_cacheaside.backend.direct import DirectCommands
from tests.factories import ArticleFactory
from tests.testapp.models import Article

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.single_redis]


@pytest.fixture
def direct() -> DirectCommands:
    commands = get_backend()._direct
    if commands is None:  # pragma: no cover - the suite's client is a plain redis.Redis
        pytest.fail("the test settings' client should take the direct path")
    return commands


def test_django_redis_client_takes_the_direct_path(direct: DirectCommands) -> None:
    assert isinstance(direct, DirectCommands)


def test_a_connection_closed_by_the_server_is_replaced(
    direct: DirectCommands, redis_client: Any, django_assert_num_queries: Any
) -> None:
    article = ArticleFactory.create()
    Article.cached.get(pk=article.pk)
    conn, _reused = direct._connection()
    client_id = int(direct.execute("CLIENT", "ID"))
    redis_client.client_kill_filter(_id=client_id)
    errors: list[str] = []

    def record(sender: Any, operation: str, **kwargs: Any) -> None:
        errors.append(operation)

    signals.cache_error.connect(record)
    try:
        with django_assert_num_queries(0):
            assert Article.cached.get(pk=article.pk) == article  # served from Redis
    finally:
        signals.cache_error.disconnect(record)
    assert errors == []  # the dead connection was replaced, not reported as an outage
    assert direct._connection()[0] is not conn


def test_an_error_reply_keeps_the_connection(direct: DirectCommands, redis_client: Any) -> None:
    conn, _reused = direct._connection()
    redis_client.set("cacheaside-test-wrongtype", b"x", px=5_000)
    with pytest.raises(Exception, match="WRONGTYPE"):
        direct.execute("HGET", "cacheaside-test-wrongtype", "d")
    assert direct._connection()[0] is conn
    redis_client.delete("cacheaside-test-wrongtype")


def test_pipelined_replies_stay_in_step_around_an_error(direct: DirectCommands) -> None:
    replies = direct.execute_many([("PING",), ("NO-SUCH-COMMAND",), ("ECHO", "after")])
    assert replies[0] in (b"PONG", "PONG", True)
    assert isinstance(replies[1], Exception)
    assert replies[2] == b"after"


def test_each_thread_has_its_own_connection(direct: DirectCommands) -> None:
    mine = direct._connection()[0]
    theirs: list[Any] = []
    thread = threading.Thread(target=lambda: theirs.append(direct._connection()[0]))
    thread.start()
    thread.join()
    assert theirs and theirs[0] is not mine


def test_a_forked_child_opens_its_own_connection(direct: DirectCommands) -> None:
    parent = direct._connection()[0]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        ok = direct._connection()[0] is not parent and direct.execute("PING") in (b"PONG", True)
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    assert direct.execute("ECHO", "parent") == b"parent"  # the parent's socket is untouched


def test_instances_skip_init_only_when_nobody_listens() -> None:
    article = ArticleFactory.create()
    Article.cached.get(pk=article.pk)
    seen: list[Any] = []

    def record(sender: Any, instance: Any, **kwargs: Any) -> None:
        seen.append(instance.pk)

    post_init.connect(record, sender=Article)
    try:
        cached = Article.cached.get(pk=article.pk)
    finally:
        post_init.disconnect(record, sender=Article)
    assert seen == [article.pk]  # a listener gets its post_init, as with the ORM
    fast = Article.cached.get(pk=article.pk)
    assert vars(fast).keys() == vars(cached).keys()
    assert {k: v for k, v in vars(fast).items() if k != "_state"} == {
        k: v for k, v in vars(cached).items() if k != "_state"
    }
    assert (fast._state.db, fast._state.adding) == (cached._state.db, cached._state.adding)


def test_with_hiredis_replies_are_read_by_the_wire(direct: DirectCommands) -> None:
    pytest.importorskip("hiredis", reason="the wire needs hiredis (pip install hiredis)")
    assert direct._wired
    direct.execute("PING")
    assert direct._local.wire is not None
    assert direct._local.wire.sock is direct._connection()[0]._sock


@pytest.mark.parametrize("wired", [True, False], ids=["wire", "redis-py parser"])
def test_replies_larger_than_a_read_span_several_reads(
    direct: DirectCommands, redis_client: Any, wired: bool
) -> None:
    if wired:
        pytest.importorskip("hiredis", reason="the wire needs hiredis (pip install hiredis)")
    direct._wired = wired
    big = {f"cacheaside-test-big-{i}": os.urandom(150_000 + i) for i in range(3)}
    try:
        for key, value in big.items():
            redis_client.hset(key, "d", value)
            redis_client.pexpire(key, 10_000)
        assert direct.hget_entries(list(big)) == list(big.values())
        assert direct.hget_entry("cacheaside-test-big-1") == big["cacheaside-test-big-1"]
        replies = direct.execute_many(
            [("NO-SUCH-COMMAND",), ("HGET", "cacheaside-test-big-0", "d")]
        )
        assert isinstance(replies[0], Exception) and replies[1] == big["cacheaside-test-big-0"]
    finally:
        direct._wired = DirectCommands.for_client(get_backend().client)._wired  # type: ignore[union-attr]
        redis_client.delete(*big)


def test_error_replies_keep_redis_py_exception_classes(direct: DirectCommands) -> None:
    from redis.exceptions import NoScriptError

    (reply,) = direct.execute_many([("EVALSHA", "0" * 40, 0)])
    assert isinstance(reply, NoScriptError)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_RCVTIMEO is used on Linux")
def test_the_kernel_enforces_the_wire_timeout(direct: DirectCommands) -> None:
    pytest.importorskip("hiredis", reason="the wire needs hiredis (pip install hiredis)")
    direct.execute("PING")
    sock = direct._local.wire.sock
    assert sock.gettimeout() is None  # blocking: no poll() before each send and receive
    size = struct.calcsize("ll")
    for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
        seconds, micros = struct.unpack("ll", sock.getsockopt(socket.SOL_SOCKET, option, size))
        assert seconds + micros / 1e6 == pytest.approx(direct._kwargs["socket_timeout"], abs=0.005)
