"""``manage.py demo``: a scripted workload that shows what the cache does, with numbers.

Part 1, reads: the same skewed (Zipf-like) sequence of profile and article reads through the ORM,
then through ``Model.cached`` from a cold cache, then through ``Model.cached`` again (warm), counting
database queries and cache hits and misses; then one write, to show the next cached read returns
the new value; then an organisation's article list through ``Article.cached.filter()``, and a purge
of that organisation's articles by their tag.

Part 2, stampede: many threads read the hot ``Dashboard`` row right after it was invalidated, with
every database query slowed down, and we count how many queries reach the database: without a lock
(the textbook helper, and ``Model.cached`` with ``LOCK_WAIT = 0``) and with ``Model.cached``'s.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.db import connection, reset_queries, transaction
from django.db.models import Model
from django.test.utils import CaptureQueriesContext, override_settings

from django_cacheaside import CacheAsideManager, invalidate, invalidate_tags
from saas import cachekeys
from saas.environment import describe_database, describe_redis
from saas.models import Article, Dashboard, Organisation, Profile
from saas.stats import CacheCounter
from saas.views import ARTICLES_PER_PAGE

ZIPF_EXPONENT = 1.0
EDIT_SUFFIX = " (edited by the demo)"
DEFAULTS = {"reads": 5000, "threads": 16, "rounds": 3}
Target = tuple[type[Model], Any]  # (model, pk)


# -- output helpers ----------------------------------------------------------------------------


class Progress:
    """A one-line progress bar redrawn in place with ``\\r``."""

    WIDTH = 30

    def __init__(self, out: OutputWrapper, label: str, total: int) -> None:
        self.out, self.label, self.total = out, label, max(total, 1)
        self.update(0)

    def update(self, done: int) -> None:
        filled = self.WIDTH * done // self.total
        bar = "#" * filled + "." * (self.WIDTH - filled)
        percent = 100 * done // self.total
        self.out.write(f"\r  {self.label:<22} [{bar}] {percent:3d}% {done}/{self.total}", ending="")
        self.out.flush()

    def finish(self, note: str = "") -> None:
        self.update(self.total)
        self.out.write(f"  {note}" if note else "")
        self.out.flush()


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Plain-text table lines: the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  " + " | ".join(parts)

    rule = "  " + "-+-".join("-" * w for w in widths)
    return [line(headers), rule, *(line(r) for r in rows)]


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


# -- part 1: reads -----------------------------------------------------------------------------


@dataclass
class ReadResult:
    path: str
    reads: int
    queries: int
    seconds: float
    counter: CacheCounter | None = None

    def row(self) -> list[str]:
        c = self.counter
        rate = c.hit_rate if c else None
        return [
            self.path,
            f"{self.reads:,}",
            f"{self.queries:,}",
            f"{c.hits:,}" if c else "-",
            f"{c.misses:,}" if c else "-",
            f"{rate:.1%}" if rate is not None else "-",
            seconds(self.seconds),
            f"{self.reads / self.seconds:,.0f}" if self.seconds else "-",
        ]


READ_HEADERS = [
    "path", "reads", "DB queries", "cache hits", "misses", "hit rate", "wall time", "reads/s",
]  # fmt: skip


def skewed_targets(rng: random.Random, reads: int) -> list[Target]:
    """``reads`` (model, pk) picks over every profile and article, the k-th most popular with a
    weight of 1/k (Zipf): a few rows are read all the time, most rarely or never."""
    population: list[Target] = [
        (Profile, pk) for pk in Profile.objects.values_list("pk", flat=True)
    ]
    population += [(Article, pk) for pk in Article.objects.values_list("pk", flat=True)]
    if not population:
        raise CommandError("No profiles or articles: run `python manage.py seed` first.")
    population.sort(key=lambda t: (t[0]._meta.label, t[1]))
    rng.shuffle(population)  # popularity is independent of model and pk
    weights = accumulate(1 / (rank + 1) ** ZIPF_EXPONENT for rank in range(len(population)))
    return rng.choices(population, cum_weights=list(weights), k=reads)


def orm_read(model: type[Model], pk: Any) -> Model:
    return model._default_manager.get(pk=pk)


def cached_read(model: type[Model], pk: Any) -> Model:
    manager: CacheAsideManager[Any] = model.cached  # type: ignore[attr-defined]
    return manager.get(pk=pk)


def run_reads(
    out: OutputWrapper,
    path: str,
    read: Callable[[type[Model], Any], Model],
    targets: Sequence[Target],
    counter: CacheCounter | None,
) -> ReadResult:
    chunk = max(1, min(250, len(targets) // 40))
    progress = Progress(out, path, len(targets))
    queries = 0
    with counter if counter is not None else nullcontext():
        started = time.perf_counter()
        for start in range(0, len(targets), chunk):
            reset_queries()  # connection.queries keeps at most 9000 entries: count per chunk
            with CaptureQueriesContext(connection) as captured:
                for model, pk in targets[start : start + chunk]:
                    read(model, pk)
            queries += len(captured)
            progress.update(min(start + chunk, len(targets)))
        elapsed = time.perf_counter() - started
    progress.finish()
    return ReadResult(path, len(targets), queries, elapsed, counter)


# -- part 2: stampede --------------------------------------------------------------------------


@dataclass
class Scenario:
    """One way of reading the hot row; each becomes a row of the stampede table.

    ``drop`` removes the row's cache entry (what a save elsewhere does); ``setup`` is entered
    around the scenario's stampedes (a setting override, say).
    """

    label: str
    lock: str
    read: Callable[[Any], Model]
    drop: Callable[[Model], None]
    setup: Callable[[], AbstractContextManager[Any]] = nullcontext


def _plain_key(pk: Any) -> str:
    return f"example-plain-dashboard-{pk}"


def plain_cache_aside(pk: Any) -> Model:
    """The textbook helper: GET; on a miss query the database and SET with a TTL. No lock."""
    row = cache.get(_plain_key(pk))
    if row is None:
        row = Dashboard.objects.get(pk=pk)
        cache.set(_plain_key(pk), row, 300)
    return row


def no_lock_wait() -> AbstractContextManager[Any]:
    """``LOCK_WAIT = 0``: a reader that misses never waits for another's refill, it loads."""
    return override_settings(CACHEASIDE={**settings.CACHEASIDE, "LOCK_WAIT": 0})


def cached_dashboard(pk: Any) -> Model:
    return Dashboard.cached.get(pk=pk)


SCENARIOS: list[Scenario] = [
    Scenario(
        "plain cache-aside",
        "none",
        plain_cache_aside,
        lambda row: cache.delete(_plain_key(row.pk)),
    ),
    Scenario(
        "Model.cached, LOCK_WAIT=0", "not waited for", cached_dashboard, invalidate, no_lock_wait
    ),
    Scenario("Model.cached", "refill lease", cached_dashboard, invalidate),
]


@dataclass
class StampedeResult:
    label: str
    lock: str
    readers: int
    queries: list[int] = field(default_factory=list)  # one entry per stampede
    durations: list[float] = field(default_factory=list)
    counter: CacheCounter = field(default_factory=CacheCounter)

    def row(self) -> list[str]:
        rounds = len(self.queries)
        low, high = min(self.queries), max(self.queries)
        per = f"{low}" if low == high else f"{sum(self.queries) / rounds:.1f} ({low}-{high})"
        return [
            self.label,
            self.lock,
            str(self.readers),
            str(rounds),
            per,
            f"{self.counter.misses / rounds:g}",
            f"{self.counter.fills / rounds:g}",
            f"{self.counter.coalesced / rounds:g}",
            f"{self.counter.lock_timeouts / rounds:g}",
            seconds(max(self.durations)),
        ]


STAMPEDE_HEADERS = [
    "path", "lock", "readers", "stampedes", "DB queries/stampede", "misses", "fills", "coalesced",
    "lock timeouts", "slowest stampede",
]  # fmt: skip


@contextmanager
def slow_queries(delay: float) -> Iterator[None]:
    """Every query on this thread's connection takes ``delay`` seconds longer: a slow loader."""

    def wrapper(execute: Callable[..., Any], *args: Any) -> Any:
        time.sleep(delay)
        return execute(*args)

    with connection.execute_wrapper(wrapper):
        yield


def stampede_once(
    scenario: Scenario, dashboard: Dashboard, readers: int, delay: float
) -> tuple[int, float]:
    """Invalidate the hot row, let ``readers`` threads read it at once; (DB queries, seconds)."""
    barrier = threading.Barrier(readers + 1)
    queries = [0] * readers
    errors: list[BaseException] = []

    def reader(index: int) -> None:
        try:
            connection.ensure_connection()  # connecting is not part of the stampede
            with CaptureQueriesContext(connection) as captured, slow_queries(delay):
                barrier.wait(timeout=30)
                scenario.read(dashboard.pk)
            queries[index] = len(captured)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
        finally:
            connection.close()  # each thread has its own connection: do not leak it

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(readers)]
    for thread in threads:
        thread.start()
    scenario.drop(dashboard)  # e.g. a save elsewhere: the entry is gone, the row is still hot
    with suppress(threading.BrokenBarrierError):  # a reader failed: its error is raised below
        barrier.wait(timeout=30)
    started = time.perf_counter()
    for thread in threads:
        thread.join(timeout=60)
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return sum(queries), elapsed


def run_stampedes(
    out: OutputWrapper,
    scenario: Scenario,
    dashboard: Dashboard,
    readers: int,
    rounds: int,
    delay: float,
) -> StampedeResult:
    result = StampedeResult(scenario.label, scenario.lock, readers)
    progress = Progress(out, f"stampede {scenario.label}", rounds)
    with scenario.setup():
        for done in range(rounds):
            scenario.read(dashboard.pk)  # warm: the row is cached before it is invalidated
            with result.counter:
                queries, elapsed = stampede_once(scenario, dashboard, readers, delay)
            result.queries.append(queries)
            result.durations.append(elapsed)
            progress.update(done + 1)
        scenario.drop(dashboard)  # leave no demo entry behind
    progress.finish()
    return result


# -- the command -------------------------------------------------------------------------------


class Command(BaseCommand):
    help = "Run a scripted workload against the ORM and Model.cached, and print what happened."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--quick", action="store_true", help="small counts (CI smoke run)")
        parser.add_argument("--reads", type=int, help="reads per path in part 1 (default 5000)")
        parser.add_argument("--threads", type=int, help="readers per stampede (default 16)")
        parser.add_argument("--rounds", type=int, help="stampedes to run (default 3)")
        parser.add_argument(
            "--delay-ms", type=float, default=50.0, help="added to each query in the stampede"
        )
        parser.add_argument("--seed", type=int, default=7, help="random seed of the workload")

    def handle(self, *args: Any, **options: Any) -> None:
        quick = options["quick"]
        defaults = {"reads": 400, "threads": 8, "rounds": 1} if quick else DEFAULTS
        reads, threads, rounds = (
            defaults[name] if options[name] is None else options[name]
            for name in ("reads", "threads", "rounds")
        )
        if min(reads, threads, rounds) < 1 or options["delay_ms"] < 0:
            raise CommandError(
                "--reads, --threads and --rounds must be at least 1, --delay-ms >= 0."
            )
        out = self.stdout
        say = self.stdout.write

        say("django-cacheaside demo")
        say(f"  database: {describe_database()}")
        say(f"  redis:    {describe_redis()}")
        say(
            f"  keys:     {cachekeys.pattern()} (cleared now: every figure starts from a cold cache)"
        )
        cachekeys.clear()
        say(
            f"  data:     {Organisation.objects.count()} organisations, "
            f"{User.objects.count()} users, {Profile.objects.count()} profiles, "
            f"{Article.objects.count()} articles"
        )

        say(f"\nPart 1 - reads: {reads:,} skewed reads of profiles and articles, by pk")
        targets = skewed_targets(random.Random(options["seed"]), reads)
        distinct = len(set(targets))
        results = [
            run_reads(out, "ORM objects.get", orm_read, targets, None),
            run_reads(out, "cached.get, cold cache", cached_read, targets, CacheCounter()),
            run_reads(out, "cached.get, same again", cached_read, targets, CacheCounter()),
        ]
        say("")
        for line in table(READ_HEADERS, [r.row() for r in results]):
            say(line)
        say(
            f"  {distinct:,} distinct rows: on the first cached pass the first read of each is a "
            "miss (one query, then a fill), every later read a hit; the second pass only hits."
        )
        self.show_write(targets)
        self.show_list_and_purge()

        say(
            f"\nPart 2 - stampede: {threads} threads read the hot Dashboard row right after "
            f"invalidate(dashboard), each query slowed by {options['delay_ms']:g} ms"
        )
        dashboard = self.hot_dashboard()
        delay = options["delay_ms"] / 1000
        stampedes = [run_stampedes(out, s, dashboard, threads, rounds, delay) for s in SCENARIOS]
        say("")
        for line in table(STAMPEDE_HEADERS, [r.row() for r in stampedes]):
            say(line)
        say(
            "  misses, fills, coalesced (waited for this process's loader) and lock timeouts "
            "(loaded without waiting or filling) are per stampede."
        )
        for result in stampedes:
            most = max(result.queries)
            say(
                f"  {result.label}: at most {most} quer{'y' if most == 1 else 'ies'} "
                f"for {threads} concurrent readers."
            )
        say(
            "  Model.cached takes a refill lease on a miss and coalesces the threads of one "
            "process: one loader, the others wait (up to LOCK_WAIT) for its fill. With "
            "LOCK_WAIT=0 nobody waits, and every reader that missed loads the row itself."
        )

    def hot_dashboard(self) -> Dashboard:
        dashboard = Dashboard.objects.order_by("pk").first()
        if dashboard is None:
            raise CommandError("No dashboards: run `python manage.py seed` first.")
        return dashboard

    def show_write(self, targets: Sequence[Target]) -> None:
        """Edit the most-read article's title, show the next cached read is fresh, restore it."""
        say = self.stdout.write
        popular = Counter(pk for model, pk in targets if model is Article).most_common(1)
        if not popular:
            return
        pk = popular[0][0]
        say(f"\n  write: article #{pk}, the most read one")
        before, cost = cached_article(pk)
        original = before.title.removesuffix(EDIT_SUFFIX)
        edited = original + EDIT_SUFFIX
        say(f"    cached read         {before.title!r}  [{cost}]")
        with transaction.atomic():
            row = Article.objects.get(pk=pk)
            row.title = edited
            row.save(update_fields=["title"])
            inside = Article.cached.get(pk=pk)  # this transaction wrote Article: bypasses Redis
            say(
                f"    save() in atomic()  inside the transaction cached.get() reads {inside.title!r}"
            )
        after, cost = cached_article(pk)
        verdict = "fresh" if after.title == edited else "STALE"
        say(f"    after the commit    {after.title!r}  [{cost}] -> {verdict}")
        again, cost = cached_article(pk)
        say(f"    next read           {again.title!r}  [{cost}]")
        row.title = original
        row.save(update_fields=["title"])
        restored, cost = cached_article(pk)
        say(f"    title restored      {restored.title!r}  [{cost}]")

    def show_list_and_purge(self) -> None:
        """The biggest organisation's latest articles as a cached query, then a purge of its tag."""
        say = self.stdout.write
        org = max(Organisation.objects.all(), key=lambda o: o.articles.count(), default=None)
        if org is None:
            return

        def latest() -> list[Article]:
            query = Article.cached.filter(org=org).order_by("-published_at", "pk")
            return list(query[:ARTICLES_PER_PAGE])

        say(
            f"\n  list: {org.name}'s latest articles, Article.cached.filter(org=org)"
            f'.order_by("-published_at", "pk")[:{ARTICLES_PER_PAGE}]'
        )
        for label in ("first read", "read again"):
            rows, cost = measured(latest)
            say(f"    {label:<19} {len(rows)} articles  [{cost}]")
        deleted = invalidate_tags(org.articles_tag)
        say(
            f"    invalidate_tags({org.articles_tag!r})  dropped {deleted} cached "
            f"entr{'y' if deleted == 1 else 'ies'}, every cached article of {org.name} "
            "(Article.cached has tags=('org',)); Article's cached lists went stale with them"
        )
        rows, cost = measured(latest)
        say(f"    after the purge     {len(rows)} articles  [{cost}]")


def measured(read: Callable[[], Any]) -> tuple[Any, str]:
    """``read()`` and what it cost ("2 hits, 0 misses, 0 DB queries")."""
    with CacheCounter(this_thread_only=True) as counter, CaptureQueriesContext(connection) as q:
        result = read()
    return result, (
        f"{counter.hits} hit{'s' * (counter.hits != 1)}, "
        f"{counter.misses} miss{'es' * (counter.misses != 1)}, "
        f"{len(q)} DB quer{'y' if len(q) == 1 else 'ies'}"
    )


def cached_article(pk: Any) -> tuple[Article, str]:
    """``Article.cached.get(pk=pk)`` and what it cost ("hit, 0 DB queries")."""
    with CacheCounter(this_thread_only=True) as counter, CaptureQueriesContext(connection) as q:
        article = Article.cached.get(pk=pk)
    kind = "hit" if counter.hits and not counter.misses else "miss"
    return article, f"{kind}, {len(q)} DB quer{'y' if len(q) == 1 else 'ies'}"
