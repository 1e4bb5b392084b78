"""``manage.py smoke``: what an installed django-cacheaside must do in a project of its own.

Run by tools/package_smoke.py in a fresh virtualenv; every check raises ``CommandError`` saying what
went wrong. The keys under its ``KEY_PREFIX`` are dropped at the end, whatever happened.
"""

import io
import json
import sys
from pathlib import Path
from typing import Any

from django import get_version
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.template.loader import get_template
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_redis import get_redis_connection

import django_cacheaside
from django_cacheaside import stats
from smoke.models import Note


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CommandError(message)


class Command(BaseCommand):
    help = "Smoke-test the installed django-cacheaside."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            self.installed_not_the_checkout()
            self.miss_then_hit()
            self.admin_page()
            self.cachestats()
        finally:
            self.drop_keys()
        self.stdout.write("smoke: all checks passed")

    def drop_keys(self) -> None:
        """Every key under this run's prefix: entries, stats buckets, the eviction counter."""
        client = get_redis_connection("default")
        prefix = settings.CACHEASIDE["KEY_PREFIX"]
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)

    def installed_not_the_checkout(self) -> None:
        package = Path(django_cacheaside.__file__).resolve()
        expect(
            package.is_relative_to(Path(sys.prefix).resolve()),
            f"django_cacheaside was imported from {package}, not from this venv ({sys.prefix})",
        )
        self.stdout.write(f"smoke: django_cacheaside from {package.parent}, Django {get_version()}")

    def miss_then_hit(self) -> None:
        note = Note.objects.create(title="hello", slug="hello")
        with CaptureQueriesContext(connection) as miss:
            first = Note.cached.get(pk=note.pk)
        expect(len(miss) == 1, f"a miss ran {len(miss)} queries, not 1: {miss.captured_queries}")
        with CaptureQueriesContext(connection) as hit:
            second = Note.cached.get(pk=note.pk)
        expect(len(hit) == 0, f"a hit ran {len(hit)} queries, not 0: {hit.captured_queries}")
        expect(
            (first.pk, first.title, second.pk, second.title)
            == (note.pk, "hello", note.pk, "hello"),
            f"cached.get answered {first!r} and {second!r} for {note!r}",
        )
        note.title = "changed"
        note.save()
        expect(Note.cached.get(pk=note.pk).title == "changed", "a save did not invalidate")
        self.stdout.write("smoke: cached.get miss (1 query), hit (0 queries), save invalidates")

    def admin_page(self) -> None:
        template = get_template("admin/django_cacheaside/stats.html")
        origin = Path(template.origin.name).resolve()
        expect(
            origin.is_relative_to(Path(sys.prefix).resolve()),
            f"the stats template came from {origin}, not from this venv",
        )
        user = get_user_model().objects.create_superuser("smoke", "smoke@example.com", "smoke")
        client = Client()
        client.force_login(user)
        url = reverse("admin:django_cacheaside_stats")
        response = client.get(url)
        content = response.content.decode()
        expect(response.status_code == 200, f"GET {url} answered {response.status_code}")
        expect("Cache statistics" in content, f"GET {url} is not the stats page")
        self.stdout.write(f"smoke: admin stats page {url} (template {origin.name}) rendered")

    def cachestats(self) -> None:
        stats.flush()
        out = io.StringIO()
        call_command("cachestats", "--json", "--model", "smoke.Note", stdout=out)
        document = json.loads(out.getvalue())
        rows = [row for row in document["models"] if row["model"] == "smoke.Note"]
        expect(bool(rows), f"cachestats --json has no smoke.Note row: {document}")
        counted = (sum(row["hits"] for row in rows), sum(row["misses"] for row in rows))
        # miss_then_hit(): a miss, a hit, and a miss after the save.
        expect(
            counted == (1, 2), f"cachestats counted (hits, misses) {counted}, not (1, 2): {rows}"
        )
        self.stdout.write("smoke: cachestats --json counted 1 hit and 2 misses of smoke.Note")
