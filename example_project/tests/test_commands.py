"""``manage.py seed`` and ``manage.py demo``."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from saas.models import Article, Dashboard, Organisation, Profile

SMALL = ["--orgs", "3", "--users", "12", "--articles", "30"]


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed", *SMALL, *args, stdout=out)
    return out.getvalue()


def counts() -> tuple[int, int, int, int, int]:
    return (
        Organisation.objects.count(),
        User.objects.count(),
        Profile.objects.count(),
        Article.objects.count(),
        Dashboard.objects.count(),
    )


@pytest.mark.django_db(transaction=True)
def test_seed_creates_rows_once() -> None:
    output = seed()
    assert counts() == (3, 13, 12, 30, 3)  # 12 members and the superuser
    assert "admin / admin" in output
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.check_password("admin")
    dashboard = Dashboard.objects.select_related("org").first()
    assert dashboard is not None
    assert dashboard.article_count == Article.objects.filter(org=dashboard.org).count()
    assert dashboard.member_count == Profile.objects.filter(org=dashboard.org).count()

    assert "nothing to do" in seed()
    assert counts() == (3, 13, 12, 30, 3)

    seed("--force")
    assert counts() == (3, 13, 12, 30, 3)


@pytest.mark.django_db(transaction=True)  # the stampede reads from threads
def test_demo_quick_prints_the_tables() -> None:
    seed()
    out = io.StringIO()
    call_command("demo", "--quick", "--reads", "200", "--threads", "4", stdout=out)
    output = out.getvalue()
    header = (
        r"path\s+\| reads \| DB queries \| cache hits \| misses \| hit rate \| wall time \| reads/s"
    )
    assert re.search(header, output), output
    assert re.search(r"ORM objects\.get\s+\|\s+200 \|\s+200 \|", output), output
    assert re.search(r"cached\.get, same again\s+\|\s+200 \|\s+0 \|\s+200 \|\s+0 \|", output)
    assert "-> fresh" in output
    # The list of the biggest organisation: a miss, a hit without queries, then the tag purge
    # drops every cached article of it (at least the listed ones) and the list is read again.
    listed = min(20, max(Article.objects.filter(org=o).count() for o in Organisation.objects.all()))
    assert re.search(rf"first read\s+{listed} articles  \[\d+ hits?, \d+ miss", output), output
    assert re.search(
        rf"read again\s+{listed} articles  \[{listed + 1} hits, 0 misses, 0 DB", output
    )
    purged = re.search(r"invalidate_tags\('org:(\d+)'\)  dropped (\d+) cached entr", output)
    assert purged is not None, output
    assert int(purged[2]) >= listed
    assert Organisation.objects.filter(pk=purged[1]).exists()
    assert re.search(rf"after the purge\s+{listed} articles  \[0 hits, {listed + 1} misses", output)
    # 4 readers: without a lock the plain helper and LOCK_WAIT=0 query up to 4 times per stampede
    # (at least twice: the readers start together and each query takes 50 ms); with it, once.
    no_lock = r"\|\s+4 \|\s+1 \|\s+[2-4] \|"
    assert re.search(r"plain cache-aside\s+\|\s+none " + no_lock, output), output
    assert re.search(r"LOCK_WAIT=0\s+\| not waited for " + no_lock, output), output
    assert re.search(r"Model\.cached\s+\|\s+refill lease \|\s+4 \|\s+1 \|\s+1 \|", output), output
    assert "\r" in output  # the progress bar redraws in place
