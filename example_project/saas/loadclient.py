"""The client side of ``manage.py load``: threads with keep-alive ``http.client`` connections.

Standard library only, no Django: ``load`` runs :func:`drive` in a child process (so the clients do
not compete with the server for the GIL) against the server it started on 127.0.0.1. Every request
is bounded: the run stops at its deadline or after ``max_requests`` requests, whichever comes first,
and a socket that answers nothing for ``timeout`` seconds fails its request.
"""

from __future__ import annotations

import html
import http.client
import itertools
import random
import re
import threading
import time
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import quote, urlencode

# What a client asks for, and how often: pages read, and now and then a title saved (a GET of the
# article page for its form, then the POST, which answers with a redirect).
MIX: dict[str, float] = {
    "profile": 0.40,
    "article": 0.35,
    "organisation": 0.20,
    "home": 0.03,
    "write": 0.02,
}
TITLE_INPUT = re.compile(r'<input[^>]*name="title"[^>]*value="([^"]*)"')
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
HEADER_COUNTS = re.compile(r"(hits|misses|db-queries)=(\d+)")


@dataclass(frozen=True)
class Plan:
    """What to request: the (Zipf-weighted) targets are chosen by the parent, from the database."""

    host: str
    port: int
    clients: int
    seconds: float
    max_requests: int
    seed: int
    usernames: list[str]
    articles: list[tuple[str, str]]  # (org slug, article slug)
    orgs: list[str]
    mix: dict[str, float] = field(default_factory=lambda: dict(MIX))
    timeout: float = 10.0


@dataclass
class Outcome:
    """What the clients saw. Latencies are per request, in seconds, from sending to the last byte."""

    seconds: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=dict)  # by kind of request
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    hits: int = 0  # summed from the X-Cache-Aside header of every response
    misses: int = 0
    db_queries: int = 0

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    def merge(self, other: Outcome) -> None:
        for kind, values in other.latencies.items():
            self.latencies.setdefault(kind, []).extend(values)
        for status, n in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + n
        self.errors += other.errors
        self.error_samples.extend(other.error_samples[: max(0, 5 - len(self.error_samples))])
        self.hits += other.hits
        self.misses += other.misses
        self.db_queries += other.db_queries


def _cum_weights(n: int) -> list[float]:
    return list(itertools.accumulate(1 / (rank + 1) for rank in range(n)))


class Client:
    """One thread's connection, cookies (CSRF, messages) and counts."""

    def __init__(self, plan: Plan, index: int, budget: _Budget) -> None:
        self.plan, self.budget = plan, budget
        self.rng = random.Random(plan.seed * 1000 + index)
        self.conn = http.client.HTTPConnection(plan.host, plan.port, timeout=plan.timeout)
        self.cookies: dict[str, str] = {}
        self.outcome = Outcome()
        self.kinds = list(plan.mix)
        self.kind_weights = list(itertools.accumulate(plan.mix.values()))
        self.user_weights = _cum_weights(len(plan.usernames))
        self.article_weights = _cum_weights(len(plan.articles))
        self.org_weights = _cum_weights(len(plan.orgs))

    def run(self) -> Outcome:
        try:
            while self.budget.take():
                self.one()
        finally:
            self.conn.close()
        return self.outcome

    def one(self) -> None:
        kind = self.rng.choices(self.kinds, cum_weights=self.kind_weights)[0]
        if kind == "profile":
            name = self.rng.choices(self.plan.usernames, cum_weights=self.user_weights)[0]
            self.request(kind, "GET", f"/u/{quote(name)}/")
        elif kind == "organisation":
            org = self.rng.choices(self.plan.orgs, cum_weights=self.org_weights)[0]
            self.request(kind, "GET", f"/o/{org}/")
        elif kind == "home":
            self.request(kind, "GET", "/")
        else:
            org, slug = self.rng.choices(self.plan.articles, cum_weights=self.article_weights)[0]
            page = self.request("article", "GET", f"/o/{org}/a/{slug}/")
            if kind == "write" and page is not None and self.budget.take():
                self.save_title(f"/o/{org}/a/{slug}/edit/", page)

    def save_title(self, url: str, page: str) -> None:
        """POST the article's form with its current title: a real save (and its invalidation)
        that leaves the data as it was, so runs can be repeated."""
        title, token = TITLE_INPUT.search(page), CSRF_INPUT.search(page)
        if title is None or token is None:
            self.fail("write", f"no title form on {url[:-5]}")
            return
        body = urlencode(
            {"title": html.unescape(title.group(1)), "csrfmiddlewaretoken": token.group(1)}
        )
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        self.request("write", "POST", url, body, headers)

    def request(
        self,
        kind: str,
        method: str,
        url: str,
        body: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> str | None:
        """Send one request; its text if it answered 2xx or 3xx, else None (an error counted)."""
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        started = time.perf_counter()
        try:
            self.conn.request(method, url, body, headers)
            response = self.conn.getresponse()
            text = response.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()  # reconnects on the next request
            self.fail(kind, f"{method} {url}: {exc.__class__.__name__}: {exc}")
            return None
        elapsed = time.perf_counter() - started
        self.outcome.latencies.setdefault(kind, []).append(elapsed)
        status = response.status
        self.outcome.statuses[status] = self.outcome.statuses.get(status, 0) + 1
        for header in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        counts = dict(HEADER_COUNTS.findall(response.headers.get("X-Cache-Aside", "")))
        self.outcome.hits += int(counts.get("hits", 0))
        self.outcome.misses += int(counts.get("misses", 0))
        self.outcome.db_queries += int(counts.get("db-queries", 0))
        if not 200 <= status < 400:
            self.fail(kind, f"{method} {url}: HTTP {status}")
            return None
        return text

    def fail(self, kind: str, message: str) -> None:
        self.outcome.errors += 1
        if len(self.outcome.error_samples) < 5:
            self.outcome.error_samples.append(message)


class _Budget:
    """Hands out at most ``limit`` requests until ``deadline`` (``time.monotonic()``)."""

    def __init__(self, limit: int, deadline: float) -> None:
        self.left, self.deadline = limit, deadline
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if self.left <= 0 or time.monotonic() >= self.deadline:
                return False
            self.left -= 1
            return True


def drive(plan: Plan) -> Outcome:
    """Run ``plan.clients`` threads until the deadline or the request budget; what they saw."""
    budget = _Budget(plan.max_requests, time.monotonic() + plan.seconds)
    clients = [Client(plan, i, budget) for i in range(plan.clients)]
    results: list[Outcome] = []
    failures: list[BaseException] = []

    def work(client: Client) -> None:
        try:
            results.append(client.run())
        except BaseException as exc:  # reported by the parent, never lost
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in clients]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(plan.seconds + plan.timeout + 5)
    total = Outcome(seconds=time.perf_counter() - started)
    if failures:
        raise failures[0]
    for result in results:
        total.merge(result)
    if len(results) < len(clients):
        total.errors += len(clients) - len(results)
        total.error_samples.append(f"{len(clients) - len(results)} client threads did not finish")
    return total
