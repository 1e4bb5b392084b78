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
    # 4 readers: the plain helper queries up to 4 times per stampede, Model.cached once.
    assert re.search(r"plain cache-aside\s+\|\s+4 \|\s+1 \|\s+[2-4] \|", output), output
    assert re.search(r"Model\.cached\s+\|\s+4 \|\s+1 \|\s+1 \|", output), output
    assert "\r" in output  # the progress bar redraws in place
