"""``manage.py seed``: organisations, members, articles and dashboards, once.

Idempotent: does nothing when organisations exist, unless ``--force`` (which deletes the example's
rows first). Rows are built by the factories without touching the database and saved with
``bulk_create``, a few statements per table.
"""

from __future__ import annotations

import random
import time
from typing import Any

import factory.random
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from saas import cachekeys
from saas.factories import (
    ArticleFactory,
    OrganisationFactory,
    ProfileFactory,
    UserFactory,
)
from saas.models import Article, Dashboard, Organisation, Profile

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "admin"
BATCH = 500


class Command(BaseCommand):
    help = "Create example organisations, users with profiles, articles and dashboards (once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--orgs", type=int, default=20)
        parser.add_argument("--users", type=int, default=500)
        parser.add_argument("--articles", type=int, default=2000)
        parser.add_argument("--seed", type=int, default=2024, help="random seed (default 2024)")
        parser.add_argument(
            "--force", action="store_true", help="delete the example's rows and seed again"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if Organisation.objects.exists() and not options["force"]:
            self.stdout.write(
                f"Already seeded ({Organisation.objects.count()} organisations); nothing to do. "
                "Use --force to start again."
            )
            return
        started = time.perf_counter()
        rng = random.Random(options["seed"])
        factory.random.reseed_random(options["seed"])
        with transaction.atomic():
            if options["force"]:
                self._delete_all()
            counts = self._create(rng, options["orgs"], options["users"], options["articles"])
            admin = self._admin()
        # bulk_create sends no post_save, so nothing was invalidated: a Redis that outlived an older
        # database could still hold entries (or "does not exist" answers) for these pks.
        cleared = cachekeys.clear()
        elapsed = time.perf_counter() - started
        summary = ", ".join(f"{n} {name}" for name, n in counts.items())
        self.stdout.write(self.style.SUCCESS(f"Seeded {summary} in {elapsed:.1f}s."))
        if cleared:
            noun = "key" if cleared == 1 else "keys"
            self.stdout.write(
                f"Dropped {cleared} stale cache {noun} under {cachekeys.pattern()!r}."
            )
        self.stdout.write(f"Superuser: {admin.username} / {ADMIN_PASSWORD} (at /admin/)")

    def _delete_all(self) -> None:
        # Deleting through the ORM sends post_delete, so these invalidate their cache entries too.
        for model in (Dashboard, Article, Profile, Organisation):
            model.objects.all().delete()
        User.objects.filter(is_superuser=False).delete()

    def _create(
        self, rng: random.Random, n_orgs: int, n_users: int, n_articles: int
    ) -> dict[str, int]:
        orgs = Organisation.objects.bulk_create(OrganisationFactory.build_batch(n_orgs))
        # Skewed sizes: a few big tenants, a long tail of small ones.
        weights = [1 / (rank + 1) for rank in range(len(orgs))]

        users = User.objects.bulk_create(UserFactory.build_batch(n_users), batch_size=BATCH)
        member_orgs = rng.choices(orgs, weights=weights, k=len(users))
        profiles = [
            ProfileFactory.build(user=user, org=org)
            for user, org in zip(users, member_orgs, strict=True)
        ]
        Profile.objects.bulk_create(profiles, batch_size=BATCH)

        article_orgs = rng.choices(orgs, weights=weights, k=n_articles)
        articles = [ArticleFactory.build(org=org) for org in article_orgs]
        Article.objects.bulk_create(articles, batch_size=BATCH)

        now = timezone.now()
        members = dict(Profile.objects.values_list("org").annotate(n=Count("pk")))
        written = dict(Article.objects.values_list("org").annotate(n=Count("pk")))
        Dashboard.objects.bulk_create(
            Dashboard(
                org=org,
                member_count=members.get(org.pk, 0),
                article_count=written.get(org.pk, 0),
                updated_at=now,
            )
            for org in orgs
        )
        return {
            "organisations": len(orgs),
            "users with profiles": len(users),
            "articles": len(articles),
            "dashboards": len(orgs),
        }

    def _admin(self) -> User:
        admin, created = User.objects.get_or_create(
            username=ADMIN_USERNAME,
            defaults={"email": "admin@example.com", "is_staff": True, "is_superuser": True},
        )
        if created:
            admin.set_password(ADMIN_PASSWORD)
            admin.save(update_fields=["password"])
        return admin
