"""Bad bytes in Redis and entry signing: whatever is stored under a key, a read answers the
database's row (or raises ``DoesNotExist`` like the ORM), never an exception and never another
object. Tenancy: two ``KEY_PREFIX`` values on one Redis never see each other's keys."""

from __future__ import annotations

import os
import pickle
import random
import struct
from collections.abc import Iterator
from typing import Any

import pytest

import django_cacheaside
from django_cacheaside import entries, keys, signals, signing, stats
from django_cacheaside.codec import Codec, SignedCodec
from django_cacheaside.conf import app_settings
from django_cacheaside.serializers.pickle import PickleSerializer
from django_cacheaside.stats import counters, flusher
from tests.factories import ArticleFactory, OrgFactory, PostFactory, update_behind_our_back
from tests.testapp.models import Article, Org, Post

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=[False, True], ids=["unsigned", "signed"])
def signed(request: pytest.FixtureRequest, settings: Any) -> bool:
    on: bool = request.param
    settings.CACHEASIDE = {**settings.CACHEASIDE, "SIGN_ENTRIES": on}
    return on


def sign_entries(settings: Any, on: bool) -> None:
    settings.CACHEASIDE = {**settings.CACHEASIDE, "SIGN_ENTRIES": on}


def stored(redis_client: Any, key: str) -> bytes:
    entry: bytes = redis_client.hget(key, "d")
    assert entry, f"nothing stored under {key}"
    return entry


def plant(redis_client: Any, key: str, entry: bytes) -> None:
    redis_client.hset(key, "d", entry)


def filled_then_changed(title: str = "fresh") -> tuple[Article, str, bytes]:
    """An article whose entry is cached, then whose row changed behind the cache's back: a read
    that decodes the old entry would answer the old title, one from the database ``title``."""
    article = ArticleFactory.create(title="old")
    Article.cached.get(pk=article.pk)
    key = Article.cached.key_for_pk(article.pk)
    update_behind_our_back(Article, article.pk, title=title)
    return article, key, Article.cached.codec.prefix


def assert_from_database(article: Article, title: str = "fresh") -> None:
    got = Article.cached.get(pk=article.pk)
    assert (type(got), got.pk, got.title, got.slug) == (Article, article.pk, title, article.slug)


# -- corrupted, truncated and foreign entries --------------------------------------------------


def test_an_entry_truncated_at_any_length_is_a_miss(redis_client: Any, signed: bool) -> None:
    article = ArticleFactory.create(title="old")
    key = Article.cached.key_for_pk(article.pk)
    Article.cached.get(pk=article.pk)
    entry = stored(redis_client, key)
    update_behind_our_back(Article, article.pk, title="fresh")
    assert len(entry) > entries.HEADER_LEN
    for length in range(len(entry)):
        plant(redis_client, key, entry[:length])
        assert_from_database(article)
    plant(redis_client, key, entry)  # whole: a hit on the old row, so the loop above was not
    assert Article.cached.get(pk=article.pk).title == "old"


def test_truncated_negative_and_pointer_entries_are_misses(redis_client: Any, signed: bool) -> None:
    article = ArticleFactory.create(title="old")
    absent_key = Article.cached.key_for_pk(10**9)
    with pytest.raises(Article.DoesNotExist):
        Article.cached.get(pk=10**9)
    negative = stored(redis_client, absent_key)
    Article.cached.get(org=article.org, slug=article.slug)
    pointer_key = Article.cached.key_for_lookup(
        Article.cached._resolver.resolve({"org": article.org, "slug": article.slug})
    )
    pointer = stored(redis_client, pointer_key)
    update_behind_our_back(Article, article.pk, title="fresh")
    for length in range(len(pointer)):
        plant(redis_client, pointer_key, pointer[:length])
        assert Article.cached.get(org=article.org, slug=article.slug).title == "fresh"
    for length in range(len(negative)):
        plant(redis_client, absent_key, negative[:length])
        with pytest.raises(Article.DoesNotExist):
            Article.cached.get(pk=10**9)


def test_random_bytes_are_misses(redis_client: Any, signed: bool) -> None:
    article, key, prefix = filled_then_changed()
    rng = random.Random(6)
    planted = [rng.randbytes(rng.randrange(0, 300)) for _ in range(60)]
    # Bytes behind a valid header reach the serializer (unsigned) or the MAC check (signed).
    # (Unsigned, a valid header of kind MISSING is a well-formed negative entry, not garbage.)
    kinds = [entries.ROW, entries.POINTER, b"X"] + ([entries.MISSING] if signed else [])
    for kind in kinds:
        timing = struct.pack(">Qf", 2**62, 0.0)
        planted += [prefix + kind + timing + rng.randbytes(rng.randrange(0, 80)) for _ in range(15)]
    # A pointer (kind P, a one-element list) is only ever valid under a lookup's key.
    planted.append(prefix + entries.POINTER + timing + b"\x91\x01")
    for entry in planted:
        plant(redis_client, key, entry)
        got = Article.cached.get(pk=article.pk)  # never DoesNotExist: that would be a MISSING entry
        assert (got.pk, got.title) == (article.pk, "fresh")


def test_an_entry_of_another_models_schema_is_a_miss(redis_client: Any, signed: bool) -> None:
    article, key, _prefix = filled_then_changed()
    org = Org.objects.get(pk=article.org_id)
    Org.cached.get(pk=org.pk)
    foreign = stored(redis_client, Org.cached.key_for_pk(org.pk))
    assert Org.cached.schema != Article.cached.schema
    plant(redis_client, key, foreign)
    assert_from_database(article)
    # Re-encoded by Org's codec for Article's key: signed right, still another schema.
    plant(redis_client, key, Org.cached.codec.encode_row(org, (2**62, 0.0), key))
    assert_from_database(article)


def boom(marker: Any) -> Any:
    """A pickle that creates ``marker`` when it is unpickled."""

    class Boom:
        def __reduce__(self) -> Any:
            return (os.system, (f"touch {marker}",))

    return pickle.dumps([Boom()])


def test_an_entry_of_another_serializer_is_never_decoded(redis_client: Any, tmp_path: Any) -> None:
    marker = tmp_path / "pwned"

    article, key, _prefix = filled_then_changed()
    pickled = Codec(Article, PickleSerializer())
    assert pickled.schema != Article.cached.schema  # the format version is in the stamp
    plant(
        redis_client, key, entries.encode(pickled.prefix, entries.ROW, boom(marker), (2**62, 0.0))
    )
    assert_from_database(article)
    assert not marker.exists()
    plant(redis_client, key, pickled.encode_row(Article.objects.get(pk=article.pk)))
    assert_from_database(article)


@pytest.mark.parametrize("format_byte", [b"\x00", b"\x01", b"\x02", b"\x03", b"\x04", b"\xff"])
def test_an_entry_of_another_format_is_a_miss(
    redis_client: Any, signed: bool, format_byte: bytes
) -> None:
    article, key, prefix = filled_then_changed()
    entry = stored(redis_client, key)
    plant(redis_client, key, format_byte + entry[1:])
    if format_byte == prefix[:1]:  # the reader's own format: the entry is good (and old)
        assert Article.cached.get(pk=article.pk).title == "old"
    else:
        assert_from_database(article)


def test_an_entry_copied_from_another_objects_key_is_a_miss(
    redis_client: Any, signed: bool
) -> None:
    """Unsigned, the codec compares the row's pk with the one asked for; signed, the MAC covers the
    key name as well. Either way pk=2's row is never answered for pk=1."""
    first, second = ArticleFactory.create_batch(2)
    Article.cached.get_many([first.pk, second.pk])
    key_1, key_2 = Article.cached.key_for_pk(first.pk), Article.cached.key_for_pk(second.pk)
    plant(redis_client, key_1, stored(redis_client, key_2))
    got = Article.cached.get(pk=first.pk)
    assert (got.pk, got.slug) == (first.pk, first.slug)
    plant(redis_client, key_1, stored(redis_client, key_2))
    found = Article.cached.get_many([first.pk, second.pk])
    assert {pk: a.slug for pk, a in found.items()} == {first.pk: first.slug, second.pk: second.slug}


def test_a_copied_negative_entry_hides_a_row_only_when_unsigned(
    redis_client: Any, signed: bool
) -> None:
    """A "no such row" entry holds no pk to compare: copied under an existing row's key it makes the
    row look absent until it expires, unless entries are signed (docs/security.md)."""
    article = ArticleFactory.create()
    with pytest.raises(Article.DoesNotExist):
        Article.cached.get(pk=10**9)
    Article.cached.get(pk=article.pk)
    plant(
        redis_client,
        Article.cached.key_for_pk(article.pk),
        stored(redis_client, Article.cached.key_for_pk(10**9)),
    )
    if signed:
        assert Article.cached.get(pk=article.pk).pk == article.pk
    else:
        with pytest.raises(Article.DoesNotExist):
            Article.cached.get(pk=article.pk)


def test_a_pointer_to_another_object_is_not_followed(redis_client: Any, signed: bool) -> None:
    org = OrgFactory.create()
    first, second = ArticleFactory.create_batch(2, org=org)
    resolve = Article.cached._resolver.resolve
    key_1 = Article.cached.key_for_lookup(resolve({"org": org, "slug": first.slug}))
    key_2 = Article.cached.key_for_lookup(resolve({"org": org, "slug": second.slug}))
    Article.cached.get(org=org, slug=first.slug)
    Article.cached.get(org=org, slug=second.slug)
    codec = Article.cached.codec
    for planted in (
        stored(redis_client, key_2),  # copied from the other lookup's key
        codec.encode_pointer(second.pk, (2**62, 0.0), key_1),  # written for this key
    ):
        plant(redis_client, key_1, planted)
        assert Article.cached.get(org=org, slug=first.slug).pk == first.pk


def query_key(redis_client: Any) -> str:
    namespace = keys.namespace(app_settings.KEY_PREFIX)
    pattern = keys.glob_escape(keys.query_generations_key(namespace, "testapp.article")) + ":*"
    (found,) = redis_client.scan_iter(match=pattern, count=1000)
    return found.decode() if isinstance(found, bytes) else str(found)


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xc1", id="never-used-byte"),
        pytest.param(random.Random(6).randbytes(40), id="random"),
        pytest.param(pickle.dumps([1, 2]), id="pickle"),
        pytest.param(b"\x92\xa1x\xc0", id="not-pks"),  # ["x", None]
        pytest.param(b"\x91\x91\x01", id="nested"),  # [[1]]
        pytest.param(b"\x81\x01\x02", id="map"),  # {1: 2}
        pytest.param(b"\x91\xc3", id="bool"),  # [True]: an exists entry, not a list of pks
    ],
)
def test_a_garbage_query_result_is_a_miss(redis_client: Any, signed: bool, garbage: bytes) -> None:
    org = OrgFactory.create()
    articles = ArticleFactory.create_batch(3, org=org)
    query = Article.cached.filter(org=org).order_by("pk")
    expected = [a.pk for a in articles]
    assert [a.pk for a in query.all()] == expected
    key = query_key(redis_client)
    plant(redis_client, key, garbage)
    assert [a.pk for a in query.all()] == expected
    assert [a.pk for a in query.all()] == expected  # refilled


# -- signing -----------------------------------------------------------------------------------


def test_signed_entries_hit_and_carry_a_tag_over_their_key(
    redis_client: Any, settings: Any, django_assert_num_queries: Any
) -> None:
    sign_entries(settings, True)
    article = ArticleFactory.create()
    Article.cached.get(pk=article.pk)
    with django_assert_num_queries(0):
        assert Article.cached.get(pk=article.pk) == article
        assert Article.cached.get_many([article.pk]) == {article.pk: article}
    key = Article.cached.key_for_pk(article.pk)
    entry = stored(redis_client, key)
    assert entry[:1] == entries.SIGNED_FORMAT
    signer = signing.current_signer()
    assert signer.open(key, entry) == entry[: -signing.TAG_LEN]
    assert signer.open(key + "x", entry) is None


def test_any_modified_byte_of_a_signed_entry_is_a_miss(redis_client: Any, settings: Any) -> None:
    sign_entries(settings, True)
    article, key, _prefix = filled_then_changed()
    entry = stored(redis_client, key)
    rng = random.Random(6)
    for i in range(len(entry)):
        changed = bytearray(entry)
        changed[i] ^= 1 << rng.randrange(8)
        plant(redis_client, key, bytes(changed))
        assert_from_database(article)
    for planted in (entry + b"\x00", entry[:-1] + b"\x00" + entry[-1:], entry[:9] + entry[10:]):
        plant(redis_client, key, planted)
        assert_from_database(article)
    plant(redis_client, key, entry)
    assert Article.cached.get(pk=article.pk).title == "old"  # unmodified: the (old) hit


def test_an_entry_signed_with_another_secret_key_is_a_miss(
    redis_client: Any, settings: Any
) -> None:
    sign_entries(settings, True)
    article, key, _prefix = filled_then_changed()
    entry = stored(redis_client, key)
    other = signing.Signer(signing.derive_key("not our SECRET_KEY"))
    plant(redis_client, key, other.sign(key, entry[: -signing.TAG_LEN]))
    assert_from_database(article)
    # A process with another SECRET_KEY sharing the Redis: its entries are misses here.
    update_behind_our_back(Article, article.pk, title="newer")
    settings.SECRET_KEY = "another deployment"
    assert Article.cached.get(pk=article.pk).title == "newer"  # and filled under its key
    update_behind_our_back(Article, article.pk, title="newest")
    settings.SECRET_KEY = "tests"
    assert Article.cached.get(pk=article.pk).title == "newest"


def test_toggling_sign_entries_makes_existing_entries_misses(
    settings: Any, django_assert_num_queries: Any
) -> None:
    org = OrgFactory.create()
    article = ArticleFactory.create(org=org)

    def read_all() -> None:
        Article.cached.get(pk=article.pk)
        Article.cached.get(org=org, slug=article.slug)
        with pytest.raises(Article.DoesNotExist):
            Article.cached.get(pk=10**9)
        assert len(Article.cached.filter(org=org)) == 1

    # Misses: the row, the pointer, the absent row, the query's pks. Signed and unsigned query
    # results live under different keys, so the unsigned one of the first round (still valid: no
    # write since) is a hit again in the last; the other entries were replaced by signed ones.
    errors: list[str] = []

    def record(sender: Any, operation: str, **kwargs: Any) -> None:
        errors.append(operation)

    signals.cache_error.connect(record)
    try:
        for on, misses in ((False, 4), (True, 4), (False, 3)):
            sign_entries(settings, on)
            with django_assert_num_queries(misses):
                read_all()
            with django_assert_num_queries(0):
                read_all()
    finally:
        signals.cache_error.disconnect(record)
    assert errors == []  # plain misses (another format byte), not entries failing to decode


def test_a_forged_signed_query_result_is_a_miss(redis_client: Any, settings: Any) -> None:
    sign_entries(settings, True)
    org = OrgFactory.create()
    articles = ArticleFactory.create_batch(2, org=org)
    other = ArticleFactory.create()
    query = Article.cached.filter(org=org).order_by("pk")
    assert [a.pk for a in query.all()] == [a.pk for a in articles]
    key = query_key(redis_client)
    entry = stored(redis_client, key)
    forged = Article.cached.codec.serializer.dumps([other.pk]) + entry[-signing.TAG_LEN :]
    plant(redis_client, key, forged)
    assert [a.pk for a in query.all()] == [a.pk for a in articles]
    unsigned = Codec(Article, Article.cached.codec.serializer)
    plant(redis_client, key, unsigned.encode_query(key, [other.pk]))
    assert [a.pk for a in query.all()] == [a.pk for a in articles]


def test_a_signed_codec_refuses_to_write_without_a_key_name() -> None:
    codec = SignedCodec(Article, PickleSerializer(), signing.current_signer())
    with pytest.raises(ValueError, match="name of the key"):
        codec.encode_missing()


def test_pickle_is_safe_behind_signing(redis_client: Any, settings: Any, tmp_path: Any) -> None:
    """With PickleSerializer and SIGN_ENTRIES, planted pickles are rejected before unpickling."""
    marker = tmp_path / "pwned"
    settings.CACHEASIDE = {
        **settings.CACHEASIDE,
        "SIGN_ENTRIES": True,
        "SERIALIZER": "django_cacheaside.serializers.pickle.PickleSerializer",
    }
    article, key, prefix = filled_then_changed()
    body = entries.encode(prefix, entries.ROW, boom(marker), (2**62, 0.0))
    plant(redis_client, key, body + os.urandom(signing.TAG_LEN))
    assert_from_database(article)
    assert not marker.exists()


# -- tenancy -----------------------------------------------------------------------------------


@pytest.fixture
def prefixes(cache_namespace: str) -> tuple[str, str]:
    # One is a string prefix of the other: the namespaces still never overlap.
    return f"{cache_namespace}:t1", f"{cache_namespace}:t10"


def use_prefix(settings: Any, prefix: str) -> None:
    settings.CACHEASIDE = {**settings.CACHEASIDE, "KEY_PREFIX": prefix}


def keys_under(redis_client: Any, prefix: str) -> set[bytes]:
    return set(redis_client.scan_iter(match=keys.glob_escape(f"{prefix}:ca:") + "*", count=1000))


def test_two_prefixes_never_share_entries(
    redis_client: Any, settings: Any, prefixes: tuple[str, str]
) -> None:
    a, b = prefixes
    article = ArticleFactory.create(title="old")
    use_prefix(settings, a)
    Article.cached.get(pk=article.pk)
    update_behind_our_back(Article, article.pk, title="fresh")
    use_prefix(settings, b)
    assert Article.cached.get(pk=article.pk).title == "fresh"  # B's own miss
    use_prefix(settings, a)
    assert Article.cached.get(pk=article.pk).title == "old"  # A's entry, untouched by B's fill
    assert not keys_under(redis_client, a) & keys_under(redis_client, b)


def test_purges_under_one_prefix_leave_the_others_keys(
    redis_client: Any, settings: Any, prefixes: tuple[str, str]
) -> None:
    a, b = prefixes
    post = PostFactory.create()
    article = ArticleFactory.create()
    for prefix in (a, b):
        use_prefix(settings, prefix)
        Post.cached.get(pk=post.pk)
        Article.cached.get(pk=article.pk)
    before = keys_under(redis_client, b)
    use_prefix(settings, a)
    assert django_cacheaside.invalidate_tags(f"org:{post.org_id}") >= 1
    assert django_cacheaside.invalidate_model(Article) >= 1
    assert not redis_client.hexists(Article.cached.key_for_pk(article.pk), "d")
    assert not redis_client.hexists(Post.cached.key_for_pk(post.pk), "d")
    assert keys_under(redis_client, b) == before
    use_prefix(settings, b)
    assert redis_client.hexists(Article.cached.key_for_pk(article.pk), "d")
    assert redis_client.hexists(Post.cached.key_for_pk(post.pk), "d")


@pytest.fixture
def no_counts() -> Iterator[None]:
    counters.buffer.take()
    yield
    counters.buffer.take()


def test_stats_under_one_prefix_are_invisible_to_the_other(
    settings: Any, prefixes: tuple[str, str], no_counts: None
) -> None:
    a, b = prefixes
    article = ArticleFactory.create()
    use_prefix(settings, a)
    Article.cached.get(pk=article.pk)
    Article.cached.get(pk=article.pk)
    assert flusher.flush()
    use_prefix(settings, b)
    assert stats.snapshot(window=300).model("testapp.Article") == []
    Article.cached.get(pk=article.pk)
    assert flusher.flush()
    use_prefix(settings, a)
    assert stats.reset() >= 1
    assert stats.snapshot(window=300).model("testapp.Article") == []
    use_prefix(settings, b)
    (row,) = stats.snapshot(window=300).model("testapp.Article")
    assert row["misses"] == 1  # B's own count survived A's reset


def test_a_row_answered_for_another_pk_is_served_but_not_cached(
    redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database whose collation matches a pk case-insensitively answers ``get(pk="ABC")`` with
    row ``"abc"``. Its entry would be refused under ``"ABC"``'s key, so it is not written."""
    first, second = ArticleFactory.create_batch(2)
    load = Article.cached._load

    def case_insensitive(db: str, lookup: Any) -> tuple[Any, float]:
        return load(db, lookup._replace(items=((lookup.items[0][0], second.pk),)))

    monkeypatch.setattr(Article.cached, "_load", case_insensitive)
    errors: list[str] = []

    def record(sender: Any, operation: str, **kwargs: Any) -> None:
        errors.append(operation)

    signals.cache_error.connect(record)
    try:
        assert Article.cached.get(pk=first.pk).pk == second.pk  # what the database answered
        assert Article.cached.get(pk=first.pk).pk == second.pk
    finally:
        signals.cache_error.disconnect(record)
    assert not redis_client.hexists(Article.cached.key_for_pk(first.pk), "d")
    assert errors == []
