"""``manage.py cachestats`` and the Redis health behind it (``django_cacheaside.stats.health``)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

import django_cacheaside
from django_cacheaside import keys, signals
from django_cacheaside.backend import Backend, get_backend, scan_keys
from django_cacheaside.conf import app_settings
from django_cacheaside.exceptions import BackendError
from django_cacheaside.management.commands import cachestats
from django_cacheaside.stats import counters, flusher
from django_cacheaside.stats import health as stats_health
from django_cacheaside.stats.health import (
    estimate_from_sample,
    health_from_info,
    literal_prefix,
    memory_estimate,
    redis_health,
)
from tests.factories import ArticleFactory, OrgFactory
from tests.testapp.models import Article, Org, Token

pytestmark = pytest.mark.django_db(transaction=True)

UNREACHABLE = "redis://127.0.0.1:1/0?socket_connect_timeout=0.2&socket_timeout=0.2"
# A server with nothing to say about it.
HEALTHY = {
    "redis_version": "7.2.4",
    "run_id": "abc",
    "used_memory": 10 << 20,
    "maxmemory": 1 << 30,
    "maxmemory_policy": "volatile-ttl",
    "evicted_keys": 0,
    "keyspace_hits": 90,
    "keyspace_misses": 10,
    "aof_enabled": 0,
}


@pytest.fixture(autouse=True)
def no_stray_counts() -> Iterator[None]:
    """Counts left in this process's buffer by earlier tests would be flushed into this test's
    namespace (and ours into the next test's)."""
    counters.buffer.take()
    yield
    counters.buffer.take()


def run(*args: str, **options: Any) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("cachestats", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def stats_json(*args: str) -> dict[str, Any]:
    out, _err = run("--json", *args)
    document: dict[str, Any] = json.loads(out)
    return document


def row(document: dict[str, Any], model: str, schema: str | None = None) -> dict[str, Any]:
    schema = schema or Article.cached.schema
    rows: list[dict[str, Any]] = document["models"]
    (found,) = [r for r in rows if r["model"] == model and r["schema"] == schema]
    return found


def workload() -> None:
    """testapp.Article: 2 hits, 1 negative hit, 3 misses, 3 fills; invalidations: save 5,
    delete 1, bulk 1, manual 1, model 1."""
    first, second = ArticleFactory.create_batch(2)  # save, save
    for _ in range(3):
        Article.cached.get(pk=first.pk)  # miss + fill, hit, hit
    Article.cached.get(pk=second.pk)  # miss + fill
    for _ in range(2):
        with pytest.raises(Article.DoesNotExist):
            Article.cached.get(pk=10**9)  # miss + fill, negative hit
    first.title = "changed"
    first.save()  # save
    ArticleFactory.create(org=first.org)  # save
    second.delete()  # delete
    Article.objects.filter(pk=first.pk).update(title="bulk")  # bulk
    django_cacheaside.invalidate(first)  # manual
    django_cacheaside.invalidate_model(Article)  # model
    first.save()  # save


def add_counts(fields: dict[str, int]) -> None:
    """Counts as another process would flush them into the current minute."""
    namespace = keys.namespace(app_settings.KEY_PREFIX)
    key = flusher.bucket_key(namespace, int(time.time() // 60))
    assert get_backend().add_counts(key, fields, 600_000)


# -- counts ------------------------------------------------------------------------------------


def test_json_has_the_exact_counts_of_a_workload() -> None:
    workload()
    document = stats_json()
    assert set(document) == {"window", "key_prefix", "models", "redis"}
    assert document["window"] == 3600
    assert document["key_prefix"] == app_settings.KEY_PREFIX
    article = row(document, "testapp.Article")
    assert (article["hits"], article["negative_hits"], article["misses"]) == (2, 1, 3)
    assert article["reads"] == 6
    assert article["hit_rate"] == 0.5
    assert (article["fills"], article["fills_refused"]) == (3, 0)
    assert article["load_count"] == 3
    assert article["invalidations"] == {
        "save": 5, "delete": 1, "bulk": 1, "tag": 0, "manual": 1, "model": 1
    }  # fmt: skip
    assert (article["lock_waits"], article["lock_timeouts"]) == (0, 0)
    assert article["load_ms_p50"] is not None and article["load_ms_p95"] is not None
    # Every cached model has a row for its current schema, counted or not.
    org = row(document, "testapp.Org", Org.cached.schema)
    assert (org["reads"], org["hit_rate"], org["invalidations"]["save"]) == (0, None, 2)
    token = row(document, "testapp.Token", Token.cached.schema)
    assert (token["reads"], token["hit_rate"], token["memory"]) == (0, None, 0)


def test_rows_are_per_schema_stamp_so_a_deploy_shows_old_and_new_side_by_side() -> None:
    Article.cached.get(pk=ArticleFactory.create().pk)  # miss under the current stamp
    add_counts({"testapp.Article|0ld5c4e3|hits": 7, "testapp.Article|0ld5c4e3|misses": 1})
    document = stats_json("--model", "testapp.Article")
    old, new = row(document, "testapp.Article", "0ld5c4e3"), row(document, "testapp.Article")
    assert (old["hits"], old["misses"], old["hit_rate"]) == (7, 1, 7 / 8)
    assert (new["hits"], new["misses"], new["hit_rate"]) == (0, 1, 0.0)
    assert old["memory"] is None and new["memory"] is not None  # the keys are counted once
    text, _err = run("--model", "testapp.Article")
    lines = [line for line in text.splitlines() if line.startswith("testapp.Article ")]
    assert [line.split()[1] for line in lines] == [Article.cached.schema, "0ld5c4e3*"]
    assert "* not the schema stamp of this code" in text


def test_errors_of_no_single_model_have_their_own_row() -> None:
    for _ in range(2):
        signals.cache_error.send(sender=Backend, operation="read", error=BackendError("x"))
    (errors,) = [r for r in stats_json()["models"] if r["model"] == "-"]
    assert errors["errors"] == 2
    assert stats_json()["models"][-1]["model"] == "-"  # listed last


def test_a_load_slower_than_the_last_bucket_stays_valid_json() -> None:
    schema = Article.cached.schema
    add_counts(
        {f"testapp.Article|{schema}|load_count": 1, f"testapp.Article|{schema}|load_gt_5000": 1}
    )
    out, _err = run("--json")
    assert "Infinity" not in out
    assert row(json.loads(out), "testapp.Article")["load_ms_p95"] is None
    text, _err = run("--model", "testapp.Article")
    assert "> 5 s" in text


def test_text_table_and_verbosity() -> None:
    workload()
    text, _err = run()
    header = next(line for line in text.splitlines() if line.startswith("model "))
    for column in ("schema", "reads", "hit rate", "misses", "fills", "lock waits/timeouts",
                   "invalidations", "errors", "load p50", "load p95", "memory"):  # fmt: skip
        assert column in header
    (article,) = [line for line in text.splitlines() if line.startswith("testapp.Article ")]
    assert Article.cached.schema in article and "50.0%" in article
    assert "9 (save 5, delete 1, bulk 1, manual 1, model 1)" in article
    assert "testapp.Token " not in text  # idle: listed with -v 2 only
    assert "maxmemory_policy" in text
    assert ("per primary:" in text) == get_backend().cluster  # a line per primary of a cluster
    detailed, _err = run("-v", "2")
    assert "testapp.Token " in detailed and "negative hits 1" in detailed


def test_verbosity_0_prints_only_the_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    info = {**HEALTHY, "aof_enabled": 1}
    monkeypatch.setattr(cachestats, "redis_health", lambda: health_from_info(info))
    workload()
    out, err = run("-v", "0")
    assert out == ""
    assert err.count("Warning:") == 1 and "appendonly is on" in err
    monkeypatch.setattr(cachestats, "redis_health", lambda: health_from_info(HEALTHY))
    assert run("-v", "0") == ("", "")


def test_stats_off_is_said(settings: Any) -> None:
    settings.CACHEASIDE = {**settings.CACHEASIDE, "STATS": False}
    _out, err = run()
    assert "CACHEASIDE['STATS'] is False" in err


# -- options -----------------------------------------------------------------------------------


def test_model_filter() -> None:
    workload()
    only = stats_json("--model", "testapp.Article")
    assert {r["model"] for r in only["models"]} == {"testapp.Article"}
    both = stats_json("--model", "testapp.article", "--model", "testapp.Org")  # any case
    assert {r["model"] for r in both["models"]} == {"testapp.Article", "testapp.Org"}


def test_model_filter_refuses_what_is_not_cached() -> None:
    for label in ("testapp.Uncached", "nope", "testapp.Nope"):
        with pytest.raises(CommandError, match=r"not a cached model.*auth\.User.*testapp\.Article"):
            run("--model", label)


@pytest.mark.parametrize(
    ("window", "seconds"),
    [("15m", 900), ("1h", 3600), ("24h", 86400), ("7d", 604800), ("120s", 120)],
)
def test_windows(window: str, seconds: int) -> None:
    assert stats_json("--window", window)["window"] == seconds


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ("90s", "at least 60 s and a whole number of minutes"),
        ("30s", "at least 60 s"),
        ("0m", "at least 60 s"),
        ("1w", "is not a duration"),
        ("1.5h", "is not a duration"),
        ("soon", "is not a duration"),
        ("8d", "longer than STATS_RETENTION"),
    ],
)
def test_bad_windows_name_the_accepted_forms(window: str, message: str) -> None:
    with pytest.raises(CommandError, match=message) as info:
        run("--window", window)
    assert "15m" in str(info.value) or "STATS_RETENTION" in str(info.value)


def test_the_window_is_bounded_by_the_retention_setting(settings: Any) -> None:
    settings.CACHEASIDE = {**settings.CACHEASIDE, "STATS_RETENTION": 3600}
    assert stats_json("--window", "60m")["window"] == 3600
    with pytest.raises(CommandError, match=r"STATS_RETENTION \(60 min\)"):
        run("--window", "2h")


def test_reset_asks_first(monkeypatch: pytest.MonkeyPatch) -> None:
    workload()
    prompts: list[str] = []

    def answer_no(prompt: str) -> str:
        prompts.append(prompt)
        return "no"

    monkeypatch.setattr("builtins.input", answer_no)
    out, _err = run("--reset")
    assert "Reset cancelled." in out and "Type 'yes'" in prompts[0]
    assert row(stats_json(), "testapp.Article")["reads"] == 6
    monkeypatch.setattr("builtins.input", lambda prompt: "yes")
    out, _err = run("--reset")
    assert "buckets dropped" in out
    assert row(stats_json(), "testapp.Article")["reads"] == 0


def test_reset_noinput_does_not_ask(monkeypatch: pytest.MonkeyPatch) -> None:
    workload()

    def no_questions(prompt: str) -> str:
        raise AssertionError("asked")

    monkeypatch.setattr("builtins.input", no_questions)
    run("--reset", "--noinput")
    assert row(stats_json(), "testapp.Article")["reads"] == 0
    workload()
    assert run("--reset", interactive=False, verbosity=0) == ("", "")
    assert row(stats_json(), "testapp.Article")["reads"] == 0


def test_reset_refuses_closed_input_and_other_options(monkeypatch: pytest.MonkeyPatch) -> None:
    def closed(prompt: str) -> str:
        raise EOFError

    monkeypatch.setattr("builtins.input", closed)
    with pytest.raises(CommandError, match="use --noinput"):
        run("--reset")
    for extra in (["--window", "1h"], ["--model", "testapp.Article"], ["--json"], ["--watch", "2"]):
        with pytest.raises(CommandError, match=f"--reset .* takes no {extra[0]}"):
            run("--reset", "--noinput", *extra)


def test_watch_redraws_until_interrupted(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    workload()
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 2:  # Redis goes away during the second nap...
            settings.CACHEASIDE = {**settings.CACHEASIDE, "REDIS": UNREACHABLE}
        if len(naps) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", sleep)
    out, err = run("--watch", "5", "--json")  # returns: no exception
    assert naps == [5.0, 5.0, 5.0]
    documents = [json.loads(line) for line in out.splitlines()]  # one document per line
    assert len(documents) == 2
    assert [row(d, "testapp.Article")["reads"] for d in documents] == [6, 6]
    assert "Cannot read the stats" in err  # ...which is said, and watching goes on


def test_watch_text_and_bad_intervals(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", interrupt)
    out, _err = run("--watch", "2")
    assert "every 2 s (Ctrl-C to stop)" in out and "maxmemory_policy" in out
    for bad in ("0", "0.5", "nan", "inf"):
        with pytest.raises(CommandError, match="at least 1"):
            run("--watch", bad)


# -- Redis unreachable ---------------------------------------------------------------------------


def test_unreachable_redis_is_a_command_error(settings: Any) -> None:
    settings.CACHEASIDE = {**settings.CACHEASIDE, "REDIS": UNREACHABLE}
    with pytest.raises(CommandError, match=r"Redis at 127\.0\.0\.1:1 \(db 0\) did not answer"):
        run()
    with pytest.raises(CommandError, match="Cannot reset the stats"):
        run("--reset", "--noinput")
    with pytest.raises(BackendError):
        redis_health()
    with pytest.raises(BackendError):
        memory_estimate("testapp.Article")


def test_unreachable_redis_exits_non_zero() -> None:
    code = (
        "import django; from django.conf import settings\n"
        f"settings.CACHEASIDE = {{**settings.CACHEASIDE, 'REDIS': {UNREACHABLE!r}}}\n"
        "from django.core.management import execute_from_command_line\n"
        "execute_from_command_line(['manage.py', 'cachestats', '--skip-checks'])\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "CommandError: Cannot read the stats: Redis at 127.0.0.1:1" in done.stderr


# -- health ------------------------------------------------------------------------------------


def warnings_of(**info: Any) -> list[str]:
    return health_from_info({**HEALTHY, **info}).warnings


def test_a_healthy_cache_has_no_warnings() -> None:
    assert warnings_of() == []
    assert warnings_of(maxmemory_policy="volatile-lru") == []


def test_health_warnings_say_what_to_change() -> None:
    (unbounded,) = warnings_of(maxmemory=0, maxmemory_policy="noeviction")
    assert "maxmemory is not set" in unbounded and "Set maxmemory" in unbounded
    (full,) = warnings_of(maxmemory_policy="noeviction")
    assert "noeviction" in full and "Set maxmemory-policy volatile-ttl" in full
    (allkeys,) = warnings_of(maxmemory_policy="allkeys-lru")
    assert "allkeys-lru" in allkeys and "tag set" in allkeys and "volatile-ttl" in allkeys
    (aof,) = warnings_of(aof_enabled=1)
    assert "Set appendonly no" in aof
    assert len(warnings_of(maxmemory=0, maxmemory_policy="allkeys-lfu", aof_enabled=1)) == 3


def test_evictions_rising_compares_with_the_previous_check() -> None:
    info = {**HEALTHY, "evicted_keys": 25}
    rising = health_from_info(info, previous="abc 10 1000.0", now=1060.0)
    assert (rising.evicted_since_last_check, rising.seconds_since_last_check) == (15, 60.0)
    (warning,) = rising.warnings
    assert "evicted 15 keys in the last 60 s" in warning and "Raise maxmemory" in warning
    steady = health_from_info(info, previous="abc 25 1000.0", now=1060.0)
    assert (steady.evicted_since_last_check, steady.warnings) == (0, [])
    for previous in ("", "other-run 10 1000.0", "abc 30 1000.0", "abc x 1000", "garbage"):
        unknown = health_from_info(info, previous=previous, now=1060.0)  # restart, reset, none
        assert (unknown.evicted_since_last_check, unknown.warnings) == (None, [])


def test_redis_health_against_the_server(redis_client: Any) -> None:
    first = redis_health()
    assert first.evicted_since_last_check is None  # this namespace was never checked
    second = redis_health()
    assert second.evicted_since_last_check is not None
    assert second.seconds_since_last_check is not None and second.seconds_since_last_check >= 0
    info = redis_client.info()
    assert second.version == info["redis_version"]
    assert second.maxmemory == info["maxmemory"]
    assert second.maxmemory_policy == info["maxmemory_policy"]
    assert second.aof_enabled == (info["aof_enabled"] == 1)
    assert second.used_memory > 0 and second.keyspace_hits > 0 and second.keys > 0
    assert second.warnings == stats_health.health_warnings(second)
    if get_backend().cluster:  # CACHEASIDE_TEST_CLUSTER: summed over the primaries
        assert second.used_memory == sum(node.used_memory for node in second.nodes.values())
        assert second.keys == sum(node.keys for node in second.nodes.values())
    else:
        assert second.nodes == {}
    marker = f"{keys.namespace(app_settings.KEY_PREFIX)}stats:evicted"
    assert 0 < redis_client.pttl(marker) <= stats_health.EVICTIONS_MARKER_TTL_MS
    assert set(stats_json()["redis"]) >= {
        "used_memory", "maxmemory", "maxmemory_policy", "evicted_keys", "keyspace_hits",
        "keyspace_misses", "aof_enabled", "warnings", "keys", "nodes",
    }  # fmt: skip


# -- memory --------------------------------------------------------------------------------------


def real_usage(redis_client: Any, label: str) -> tuple[int, int]:
    namespace = keys.namespace(app_settings.KEY_PREFIX)
    found = scan_keys(keys.model_pattern(namespace, label))
    pipe = redis_client.pipeline(transaction=False)
    for key in found:
        pipe.memory_usage(key)
    return len(found), sum(size or 0 for size in pipe.execute())


def test_memory_estimate_is_close_to_the_real_usage(redis_client: Any) -> None:
    org = OrgFactory.create()
    pks = [a.pk for a in ArticleFactory.create_batch(300, org=org, body="x" * 200)]
    assert len(Article.cached.get_many(pks)) == 300
    count, usage = real_usage(redis_client, "testapp.article")
    assert count == 300
    dbsize = redis_client.dbsize()
    # A scan over the whole database counts the keys; only their mean size is sampled.
    estimate = memory_estimate("testapp.Article", scan_budget=2 * dbsize + 1000)
    assert estimate is not None and estimate.exact_count
    assert (estimate.keys, estimate.matched, estimate.sampled) == (300, 300, 50)
    assert usage / 2 <= estimate.total_bytes <= usage * 2
    # A scan that stops early extrapolates from the share of the keys it examined.
    partial = memory_estimate("testapp.Article", scan_budget=max(100, dbsize // 4))
    assert partial is not None
    assert not partial.exact_count and partial.examined < dbsize
    assert usage / 3 <= partial.total_bytes <= usage * 3
    nothing = memory_estimate("testapp.Token", scan_budget=10**9)
    assert nothing is not None and (nothing.keys, nothing.total_bytes) == (0, 0)
    proxy = memory_estimate("testapp.ProxyArticle", scan_budget=10**9, sample_size=300)
    assert proxy is not None and proxy.total_bytes == usage  # a proxy shares its model's keys


def test_memory_estimate_arithmetic() -> None:
    found = [b"k%d" % i for i in range(10)]
    extrapolated = estimate_from_sample(
        "m", found, [100] * 10, examined=100, complete=False, dbsize=1000
    )
    assert extrapolated is not None
    assert (extrapolated.keys, extrapolated.total_bytes) == (100, 10_000)
    assert 0 < extrapolated.relative_error < 1
    counted = estimate_from_sample("m", found, [100, 300], examined=100, complete=True, dbsize=100)
    assert counted is not None and (counted.keys, counted.total_bytes) == (10, 2000)
    assert estimate_from_sample("m", [], [], examined=100, complete=False, dbsize=1000) is None
    none = estimate_from_sample("m", [], [], examined=100, complete=True, dbsize=100)
    assert none is not None and (none.keys, none.total_bytes) == (0, 0)
    assert estimate_from_sample("m", found, [], examined=100, complete=True, dbsize=100) is None


def test_memory_estimate_refuses_unknown_models_and_never_uses_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValueError, match="not an installed model"):
        memory_estimate("testapp.Nope")

    def keys_command(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("KEYS")

    monkeypatch.setattr(get_backend().client, "keys", keys_command)
    assert memory_estimate("testapp.Article") is not None


def test_literal_prefix_undoes_the_pattern_escaping() -> None:
    pattern = keys.model_pattern("we*ird?[p]\\:ca:", "app.model")
    assert literal_prefix(pattern) == "we*ird?[p]\\:ca:{app.model:"
    for bad in ("a*b*", "a?*", "abc", "a\\\\*b*"):
        with pytest.raises(ValueError, match="not a literal prefix"):
            literal_prefix(bad)
