"""Tags: ``tags=`` on a manager, ``invalidate_tags()``, bounded tag sets, and fills racing purges."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.core import checks
from django.db import connection, transaction

import django_cacheaside
from django_cacheaside import keys, signals
from django_cacheaside.backend import get_backend
from django_cacheaside.managers import CacheAsideManager
from django_cacheaside.tags import TagSpec
from tests.factories import LabelFactory, OrgFactory, PostFactory, update_behind_our_back
from tests.testapp.models import BriefPost, Label, Org, Post

pytestmark = pytest.mark.django_db(transaction=True)


def tag_key(tag: str) -> str:
    return keys.tag_key(Post.cached._settings().namespace, tag)


def entry(model: Any, pk: Any, redis_client: Any) -> bytes | None:
    value: bytes | None = redis_client.hget(model.cached.key_for_pk(pk), "d")
    return value


def test_field_tags_name_the_field_and_its_value() -> None:
    post = PostFactory.create()
    assert Post.cached._tags.of(post) == [f"org:{post.org_id}"]
    label = LabelFactory.create(name="red")
    assert Label.cached._tags.of(label) == ["labels", "label:red"]


def test_bad_tags_options_are_refused_clearly() -> None:
    with pytest.raises(TypeError, match="tags= takes field names"):
        CacheAsideManager(tags="org")
    with pytest.raises(TypeError, match="tags= takes field names"):
        CacheAsideManager(tags=[1, 2])  # type: ignore[list-item]
    spec = TagSpec(("nope",))
    with pytest.raises(Exception, match="'nope', which is not a concrete field"):
        spec.fields(Post)
    bad = TagSpec(lambda obj: [""])
    with pytest.raises(TypeError, match="tags are non-empty strings"):
        bad.of(PostFactory.create())
    with pytest.raises(TypeError, match="non-empty strings"):
        django_cacheaside.invalidate_tags("org:1", "")


def test_e012_names_a_tag_that_is_not_a_field() -> None:
    manager = Post.cached
    original = manager._tags
    manager._tags = TagSpec(("org", "publisher"))
    try:
        ids = [m.id for m in checks.run_checks(tags=["cacheaside"])]
    finally:
        manager._tags = original
    assert ids == ["cacheaside.E012"]


def test_invalidate_tags_drops_every_entry_filled_under_the_tag(redis_client: Any) -> None:
    org, other = OrgFactory.create_batch(2)
    posts = PostFactory.create_batch(3, org=org)
    kept = PostFactory.create(org=other)
    Post.cached.get_many([p.pk for p in posts])
    Post.cached.get(pk=kept.pk)
    members = redis_client.zrange(tag_key(f"org:{org.pk}"), 0, -1)
    assert sorted(members) == sorted(Post.cached.key_for_pk(p.pk).encode() for p in posts)
    for post in posts:
        update_behind_our_back(Post, post.pk, title="behind")
    assert django_cacheaside.invalidate_tags(f"org:{org.pk}") == 3
    assert all(entry(Post, p.pk, redis_client) is None for p in posts)
    assert entry(Post, kept.pk, redis_client) is not None
    assert {p.title for p in Post.cached.get_many([p.pk for p in posts]).values()} == {"behind"}
    assert not redis_client.exists(tag_key(f"org:{other.pk}")) or entry(Post, kept.pk, redis_client)


def test_callable_tags_and_several_tags_at_once(redis_client: Any) -> None:
    red, blue, green = (LabelFactory.create(name=n) for n in ("red", "blue", "green"))
    Label.cached.get_many([red.pk, blue.pk, green.pk])
    assert django_cacheaside.invalidate_tags("label:red", "label:blue") == 2
    assert entry(Label, green.pk, redis_client) is not None
    Label.cached.get_many([red.pk, blue.pk])
    assert django_cacheaside.invalidate_tags("labels") == 3


def test_tag_sets_and_markers_expire(redis_client: Any) -> None:
    post = PostFactory.create()
    Post.cached.get(pk=post.pk)
    key = tag_key(f"org:{post.org_id}")
    ttl_ms = redis_client.pttl(key)
    assert 270_000 <= ttl_ms <= 331_000  # the entry's TTL (300 s +-10%) and 1 s of slack
    score = redis_client.zscore(key, Post.cached.key_for_pk(post.pk))
    now_ms = time.time() * 1000
    assert 270_000 <= score - now_ms <= 331_000
    django_cacheaside.invalidate_tags(f"org:{post.org_id}")
    assert not redis_client.exists(key)
    assert 3_590_000 <= redis_client.pttl(keys.tag_marker_key(key)) <= 3_600_000
    clock = keys.clock_key(Post.cached._settings().namespace)
    assert 7_190_000 <= redis_client.pttl(clock) <= 7_200_000


def test_invalidate_tags_inside_a_transaction_runs_now_and_at_commit(redis_client: Any) -> None:
    post = PostFactory.create()
    tag = f"org:{post.org_id}"
    Post.cached.get(pk=post.pk)
    with transaction.atomic():
        django_cacheaside.invalidate_tags(tag)
        assert entry(Post, post.pk, redis_client) is None  # at once
        update_behind_our_back(Post, post.pk, title="in the transaction")
        # The transaction is now dirty for tagged models: reads bypass and never fill.
        assert Post.cached.get(pk=post.pk).title == "in the transaction"
        assert entry(Post, post.pk, redis_client) is None
        # Another process refills the old committed row meanwhile:
        other = get_backend()
        read = other.read_or_begin(Post.cached.key_for_pk(post.pk), 60_000)
        assert read.stamp is not None
        other.fill(Post.cached.key_for_pk(post.pk), read.stamp, b"stale", 60_000)
        redis_client.zadd(
            tag_key(tag), {Post.cached.key_for_pk(post.pk): time.time() * 1000 + 60_000}
        )
    assert entry(Post, post.pk, redis_client) is None  # the commit purged it again
    assert Post.cached.get(pk=post.pk).title == "in the transaction"


def test_an_invalidated_object_leaves_its_tag_sets(redis_client: Any) -> None:
    post = PostFactory.create()
    Post.cached.get(pk=post.pk)
    key = tag_key(f"org:{post.org_id}")
    assert redis_client.zcard(key) == 1
    post.title = "saved"
    post.save()
    assert redis_client.zcard(key) == 0
    Post.cached.get(pk=post.pk)
    assert redis_client.zcard(key) == 1


# -- fills racing a purge (deterministic interleavings) ---------------------------------------


def test_a_purge_during_the_load_keeps_the_fill_from_writing(redis_client: Any) -> None:
    post = PostFactory.create(title="v1")
    tag = f"org:{post.org_id}"
    fills: list[bool] = []
    done = False

    def purge_after_the_select(execute: Any, sql: str, params: Any, many: bool, ctx: Any) -> Any:
        nonlocal done
        result = execute(sql, params, many, ctx)  # the fill has read v1 ...
        if not done and "testapp_post" in sql:
            done = True
            update_behind_our_back(Post, post.pk, title="v2")  # ... then v2 commits ...
            django_cacheaside.invalidate_tags(tag)  # ... and the tag is purged
        return result

    def record(sender: Any, written: bool, **kwargs: Any) -> None:
        fills.append(written)

    signals.cache_fill.connect(record)
    try:
        with connection.execute_wrapper(purge_after_the_select):
            assert Post.cached.get(pk=post.pk).title == "v1"  # a fair answer: it began before
    finally:
        signals.cache_fill.disconnect(record)
    assert fills == [False]  # the tag was purged after the fill began: not written
    assert entry(Post, post.pk, redis_client) is None
    assert Post.cached.get(pk=post.pk).title == "v2"


def test_a_purge_between_joining_and_writing_deletes_the_fill(redis_client: Any) -> None:
    post = PostFactory.create(title="v1")
    tag = f"org:{post.org_id}"
    backend = get_backend()
    original = backend.join_tags

    def join_then_purge(*args: Any, **kwargs: Any) -> Any:
        purged = original(*args, **kwargs)  # joined; the tag was not purged yet
        update_behind_our_back(Post, post.pk, title="v2")
        django_cacheaside.invalidate_tags(tag)  # the purge finds the fill among the members
        return purged

    backend.join_tags = join_then_purge  # type: ignore[method-assign]
    try:
        assert Post.cached.get(pk=post.pk).title == "v1"
    finally:
        del backend.join_tags
    assert entry(Post, post.pk, redis_client) is None  # its compare-and-set lost
    assert Post.cached.get(pk=post.pk).title == "v2"


def test_get_many_fills_skip_the_purged_tag_only(redis_client: Any) -> None:
    org, other = OrgFactory.create_batch(2)
    hit = PostFactory.create(org=org, title="v1")
    spared = PostFactory.create(org=other)
    done = False

    def purge_after_the_select(execute: Any, sql: str, params: Any, many: bool, ctx: Any) -> Any:
        nonlocal done
        result = execute(sql, params, many, ctx)
        if not done and "testapp_post" in sql:
            done = True
            update_behind_our_back(Post, hit.pk, title="v2")
            django_cacheaside.invalidate_tags(f"org:{org.pk}")
        return result

    with connection.execute_wrapper(purge_after_the_select):
        Post.cached.get_many([hit.pk, spared.pk])
    assert entry(Post, hit.pk, redis_client) is None
    assert entry(Post, spared.pk, redis_client) is not None
    assert Post.cached.get(pk=hit.pk).title == "v2"


def test_fills_that_began_after_a_purge_are_kept(redis_client: Any) -> None:
    post = PostFactory.create()
    django_cacheaside.invalidate_tags(f"org:{post.org_id}")
    Post.cached.get(pk=post.pk)
    assert entry(Post, post.pk, redis_client) is not None


# -- bounded tag sets -------------------------------------------------------------------------


@pytest.mark.single_redis  # 0.4 s TTLs: a round of 1000-key get_many() on a cluster outlasts them
def test_tag_sets_stay_bounded_by_the_live_entries(redis_client: Any) -> None:
    """Fills and invalidations under one tag leave at most the live entries' members.

    100k fills and 10k invalidations on PostgreSQL (the CI run that has the time for it), a tenth of
    that elsewhere. Entries live 0.4 s: each round waits for the last one's to expire, refills every
    row and invalidates a different tenth of them.
    """
    scale = 10 if connection.vendor == "postgresql" else 1
    rows, rounds = 1000 * scale, 10
    org = Org.objects.create(name="bounded")
    BriefPost.objects.bulk_create([BriefPost(org=org, title=str(n)) for n in range(rows)])
    pks = list(BriefPost.objects.values_list("pk", flat=True))
    key = keys.tag_key(BriefPost.cached._settings().namespace, f"org:{org.pk}")
    fills: list[bool] = []

    def record(sender: Any, written: bool, **kwargs: Any) -> None:
        fills.append(written)

    signals.cache_fill.connect(record, sender=BriefPost)
    try:
        for round_number in range(rounds):
            for start in range(0, rows, 1000):
                BriefPost.cached.get_many(pks[start : start + 1000])
            doomed = pks[round_number::rounds]
            BriefPost.objects.filter(pk__in=doomed).update(title=f"round {round_number}")
            # Every row joined this round and the invalidated ones left; members of entries that
            # expired meanwhile (a slow round) may be pruned already. Never more than the rest:
            assert 0 < redis_client.zcard(key) <= rows - len(doomed)
            time.sleep(0.45)  # every entry expires
    finally:
        signals.cache_fill.disconnect(record, sender=BriefPost)
    assert len(fills) == rounds * rows  # every row was filled every round ...
    # ... and written, but for the few whose 0.4 s stamp expired before their fill on a slow
    # moment of a loaded machine (their compare-and-set then fails, as it must):
    assert fills.count(True) >= 0.9 * rounds * rows
    time.sleep(1.0)  # past the members' second of slack after their entries
    BriefPost.cached.get(pk=pks[0])  # one more fill: joining prunes the expired members
    assert redis_client.zcard(key) == 1
    assert redis_client.pttl(key) <= 400 + 1000
