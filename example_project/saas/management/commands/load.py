"""``manage.py load``: the example's pages under concurrent HTTP load, with the cache on and off.

Starts the site in this process on a free 127.0.0.1 port (Django's threaded development server, one
thread per keep-alive connection), then runs ``--clients`` threads in a child process
(``saas.loadclient``: ``http.client``, keep-alive) over a mix of profile, article and organisation
pages and a few title saves: a warm-up per mode, then ``--rounds`` slices of each mode in ABBA
order, so that a change in the machine's load during the run weighs on both modes. Each mode is
bounded by ``--duration`` seconds and ``--requests`` requests in all. "Cache off" is
``READ_THROUGH_CACHE = False`` (``saas.reads``): the same views read the same rows with
``Model.objects``.

Prints requests/s, p50 and p99 per mode, the database queries and cache lookups per request (summed
from each response's ``X-Cache-Aside`` header), the ratios, and p50/p99 per page. Any answer other
than 2xx/3xx, or a request that fails, is counted and makes the command fail.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from django.core.handlers.wsgi import WSGIHandler
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.test.utils import override_settings

from saas import cachekeys, loadclient
from saas.environment import describe_database, describe_redis
from saas.loadclient import Outcome, Plan
from saas.management.commands.demo import Progress, table
from saas.models import Article, Organisation, Profile

MODES = ("on", "off")
DEFAULTS: dict[str, Any] = {"duration": 10.0, "requests": 50_000, "warmup": 2.0, "rounds": 4}
QUICK: dict[str, Any] = {"duration": 2.0, "requests": 5_000, "warmup": 0.5, "rounds": 2}
PAGES = ("profile", "article", "organisation", "home", "write")


class LoadServer(ThreadedWSGIServer):
    """Django's threaded server, joining its request threads on close (each closes its database
    connection when its client hangs up), with a backlog for every client connecting at once."""

    request_queue_size = 128
    daemon_threads = False
    block_on_close = True


class QuietRequestHandler(WSGIRequestHandler):
    # The status line, headers and body go out in separate writes: with Nagle's algorithm on, the
    # client's delayed ACK holds every response ~40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a line per request would be the bottleneck; the client counts every status


@contextmanager
def serving() -> Iterator[tuple[str, int]]:
    """The site on 127.0.0.1 and a free port, for the duration of the block."""
    server = LoadServer(("127.0.0.1", 0), QuietRequestHandler, allow_reuse_address=False)
    server.set_app(WSGIHandler())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield str(host), int(port)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()  # joins the request threads


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (``q`` in 0..1)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def ms(value: float) -> str:
    return f"{value * 1000:.1f}"


def ratio(a: float, b: float, slices: Sequence[tuple[float, float]] = ()) -> str:
    """``a / b``, and the range of the per-round ratios when there are several rounds."""
    if not b:
        return "-"
    text = f"{a / b:.2f}x"
    each = [x / y for x, y in slices if y]
    if len(each) > 1:
        text += f" ({min(each):.2f}-{max(each):.2f})"
    return text


class Summary:
    """One mode's measured run, as table cells."""

    def __init__(self, mode: str, outcome: Outcome) -> None:
        self.mode, self.outcome = mode, outcome
        self.all = sorted(v for values in outcome.latencies.values() for v in values)
        self.requests = len(self.all)
        self.rps = self.requests / outcome.seconds if outcome.seconds else 0.0
        self.p50, self.p99 = percentile(self.all, 0.50), percentile(self.all, 0.99)

    def per_request(self, n: int) -> str:
        return f"{n / self.requests:.2f}" if self.requests else "-"

    def row(self) -> list[str]:
        o = self.outcome
        lookups = o.hits + o.misses
        return [
            f"cache {self.mode}",
            f"{self.requests:,}",
            f"{o.errors:,}",
            f"{o.seconds:.1f} s",
            f"{self.rps:,.0f}",
            ms(self.p50),
            ms(self.p99),
            self.per_request(o.db_queries),
            self.per_request(lookups),
            f"{o.hits / lookups:.1%}" if lookups else "-",
        ]

    def page(self, kind: str) -> tuple[int, float, float]:
        values = sorted(self.outcome.latencies.get(kind, []))
        return len(values), percentile(values, 0.50), percentile(values, 0.99)


HEADERS = [
    "mode", "requests", "errors", "time", "requests/s", "p50 ms", "p99 ms", "DB queries/req",
    "cache lookups/req", "hit rate",
]  # fmt: skip


def zipf_order(rng: random.Random, items: list[Any]) -> list[Any]:
    """The items, most popular first: the client weights the k-th by 1/k."""
    items = list(items)
    rng.shuffle(items)
    return items


class Command(BaseCommand):
    help = (
        "Drive the example's pages over loopback HTTP with the cache on and off; print the rates."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--quick", action="store_true", help="a short run (CI smoke)")
        parser.add_argument(
            "--duration", type=float, help="measured seconds per mode (default 10), split in rounds"
        )
        parser.add_argument(
            "--requests",
            type=int,
            help="requests per mode at most (default 50000), split in rounds",
        )
        parser.add_argument(
            "--rounds", type=int, help="slices per mode, alternating on/off (default 4; quick 2)"
        )
        parser.add_argument("--clients", type=int, default=8, help="client threads (default 8)")
        parser.add_argument("--warmup", type=float, help="seconds of warm-up per mode (default 2)")
        parser.add_argument(
            "--modes", default="on,off", help="cache modes to measure, in order (default on,off)"
        )
        parser.add_argument("--seed", type=int, default=7, help="random seed of the workload")

    def handle(self, *args: Any, **options: Any) -> None:
        quick = options["quick"]
        defaults = QUICK if quick else DEFAULTS
        duration, max_requests, warmup, rounds = (
            defaults[name] if options[name] is None else options[name]
            for name in ("duration", "requests", "warmup", "rounds")
        )
        clients = options["clients"]
        modes = list(dict.fromkeys(m.strip() for m in options["modes"].split(",") if m.strip()))
        if not modes or any(m not in MODES for m in modes):
            raise CommandError("--modes takes 'on', 'off' or both, comma-separated.")
        if duration <= 0 or min(max_requests, clients, rounds) < 1 or warmup < 0:
            raise CommandError("--duration, --requests, --clients and --rounds must be positive.")

        rng = random.Random(options["seed"])
        usernames = zipf_order(
            rng, list(Profile.objects.order_by("pk").values_list("user__username", flat=True))
        )
        articles = zipf_order(
            rng, list(Article.objects.order_by("pk").values_list("org__slug", "slug"))
        )
        orgs = zipf_order(
            rng, list(Organisation.objects.order_by("pk").values_list("slug", flat=True))
        )
        if not (usernames and articles and orgs):
            raise CommandError("No organisations, profiles or articles: run `manage.py seed`.")

        say = self.stdout.write
        say("django-cacheaside load")
        say(f"  database: {describe_database()}")
        say(f"  redis:    {describe_redis()}")
        say(
            f"  workload: {clients} keep-alive clients; per mode a {warmup:g} s warm-up, then "
            f"{duration:g} s or {max_requests:,} requests, whichever comes first, in {rounds} "
            "slices alternating the modes"
        )
        mix = ", ".join(f"{kind} {share:.0%}" for kind, share in loadclient.MIX.items())
        say(
            f"  mix:      {mix} (Zipf-skewed over {len(usernames)} members, {len(articles)} articles)"
        )

        errors = 0
        samples: list[str] = []
        context = multiprocessing.get_context("spawn")  # no fork of a process running threads
        with serving() as (host, port), ProcessPoolExecutor(1, mp_context=context) as pool:
            say(f"  server:   http://{host}:{port}/ (this process, threaded), DEBUG off")
            base = Plan(host, port, clients, duration, max_requests, options["seed"],
                        usernames, articles, orgs)  # fmt: skip
            cachekeys.clear()  # from a cold cache: the warm-up fills it
            totals = {mode: Outcome() for mode in modes}
            slices: dict[str, list[Summary]] = {mode: [] for mode in modes}
            # Slices of the modes in ABBA order (on off off on ...): a machine whose load drifts
            # during the run slows both modes alike. Both modes of a round replay one sequence.
            runs = [("warm-up", mode, warmup, 0) for mode in modes if warmup]
            for r in range(rounds):
                order = modes if r % 2 == 0 else modes[::-1]
                runs += [("measure", mode, duration / rounds, r) for mode in order]
            for kind, mode, seconds, r in runs:
                label = f"cache {mode}, " + (
                    "warm-up" if kind == "warm-up" else f"{r + 1}/{rounds}"
                )
                plan = replace(
                    base,
                    seconds=seconds,
                    max_requests=max_requests // rounds + (r < max_requests % rounds),
                    seed=base.seed + (1000 if kind == "warm-up" else r),
                )
                with override_settings(READ_THROUGH_CACHE=mode == "on", DEBUG=False):
                    outcome = self.phase(pool, plan, label)
                errors += outcome.errors
                samples += outcome.error_samples
                if kind == "measure":
                    totals[mode].merge(outcome)
                    totals[mode].seconds += outcome.seconds
                    slices[mode].append(Summary(mode, outcome))
            summaries = [Summary(mode, totals[mode]) for mode in modes]

        say("")
        rows = [s.row() for s in summaries]
        by_mode = {s.mode: s for s in summaries}
        if len(by_mode) == 2:
            on, off = by_mode["on"], by_mode["off"]
            pairs = list(zip(slices["on"], slices["off"], strict=True))  # the same round's slices
            rows.append([
                "on / off", "", "", "",
                ratio(on.rps, off.rps, [(a.rps, b.rps) for a, b in pairs]),
                ratio(on.p50, off.p50, [(a.p50, b.p50) for a, b in pairs]),
                ratio(on.p99, off.p99, [(a.p99, b.p99) for a, b in pairs]),
                "", "", "",
            ])  # fmt: skip
        for line in table(HEADERS, rows):
            say(line)
        say(
            "  DB queries and cache lookups are the server's, from each response's X-Cache-Aside;"
            " on / off: (min-max) of the rounds' ratios."
        )
        self.show_pages(summaries)
        for sample in samples[:5]:
            self.stderr.write(f"  {sample}")
        if errors:
            raise CommandError(f"{errors} failed requests (non-2xx/3xx answers or no answer).")
        idle = [s.mode for s in summaries if s.requests == 0]
        if idle:
            raise CommandError(f"No request was answered with the cache {' or '.join(idle)}.")

    def phase(self, pool: ProcessPoolExecutor, plan: Plan, label: str) -> Outcome:
        """Run ``plan`` in the child process, with a progress bar of its time budget."""
        future: Future[Outcome] = pool.submit(loadclient.drive, plan)
        ticks = max(1, round(plan.seconds * 10))
        progress = Progress(self.stdout, label, ticks)
        started = time.monotonic()
        limit = plan.seconds + plan.timeout + 30  # the child bounds itself; this bounds waiting
        while not future.done() and time.monotonic() - started < limit:
            time.sleep(0.1)
            progress.update(min(ticks, round((time.monotonic() - started) * 10)))
        outcome = future.result(timeout=max(0.0, limit - (time.monotonic() - started)))
        rate = outcome.requests / outcome.seconds if outcome.seconds else 0
        progress.finish(f"{outcome.requests:,} requests, {rate:,.0f}/s, {outcome.errors} errors")
        self.stdout.write("")
        return outcome

    def show_pages(self, summaries: Sequence[Summary]) -> None:
        headers = ["page"]
        for s in summaries:
            headers += [f"requests ({s.mode})", f"p50 ms ({s.mode})", f"p99 ms ({s.mode})"]
        rows = []
        for kind in PAGES:
            cells = [kind]
            for s in summaries:
                n, p50, p99 = s.page(kind)
                cells += [f"{n:,}", ms(p50), ms(p99)]
            rows.append(cells)
        self.stdout.write("")
        for line in table(headers, rows):
            self.stdout.write(line)
        self.stdout.write(
            "  write: the POST of an article's title form (the save, then a redirect); "
            "its form is read with an article GET first."
        )
