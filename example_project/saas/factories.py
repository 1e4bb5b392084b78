"""factory-boy factories for the example's models, used by ``manage.py seed`` and the smoke tests.

``seed`` builds instances with ``.build()`` (no query) and saves them with ``bulk_create``; the tests
simply call the factories, which save one row at a time.
"""

from __future__ import annotations

import datetime
import functools

import factory
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.utils.text import slugify
from factory.django import DjangoModelFactory

from saas.models import Article, Dashboard, Organisation, Profile

# Fictional companies: readable and unique, unlike Faker's company names (which repeat).
ORG_NAMES = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Stark Industries",
    "Wayne Enterprises",
    "Wonka",
    "Cyberdyne",
    "Soylent",
    "Tyrell",
    "Vandelay Industries",
    "Aperture Science",
    "Black Mesa",
    "Oscorp",
    "Massive Dynamic",
    "Pied Piper",
    "Dunder Mifflin",
    "Prestige Worldwide",
    "Planet Express",
    "Oceanic",
    "Sirius Cybernetics",
    "Gringotts",
    "Monsters Inc",
]

# Every factory-made user's password. Hashed once per process and shared (salt included): hashing
# 500 passwords with PBKDF2 would take minutes. Fine for a demo, never for real accounts.
SEED_PASSWORD = "password"


@functools.cache
def seed_password_hash() -> str:
    return make_password(SEED_PASSWORD)


def org_name(n: int) -> str:
    base = ORG_NAMES[n % len(ORG_NAMES)]
    rounds = n // len(ORG_NAMES)
    return f"{base} {rounds + 1}" if rounds else base


class OrganisationFactory(DjangoModelFactory):
    class Meta:
        model = Organisation

    name = factory.Sequence(org_name)
    slug = factory.LazyAttribute(lambda o: slugify(o.name))


class UserFactory(DjangoModelFactory):
    class Meta:
        model = User

    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    username = factory.LazyAttributeSequence(
        lambda o, n: f"{slugify(o.first_name)}.{slugify(o.last_name)}{n}"
    )
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.LazyFunction(seed_password_hash)


class ProfileFactory(DjangoModelFactory):
    class Meta:
        model = Profile

    user = factory.SubFactory(UserFactory)
    org = factory.SubFactory(OrganisationFactory)
    display_name = factory.LazyAttribute(lambda o: f"{o.user.first_name} {o.user.last_name}")
    bio = factory.Faker("sentence", nb_words=14)


class ArticleFactory(DjangoModelFactory):
    class Meta:
        model = Article

    org = factory.SubFactory(OrganisationFactory)
    title = factory.Faker("sentence", nb_words=6)
    slug = factory.LazyAttributeSequence(lambda o, n: f"{slugify(o.title)[:60]}-{n}")
    body = factory.Faker("paragraph", nb_sentences=8)
    published_at = factory.Faker(
        "date_time_between", start_date="-2y", end_date="now", tzinfo=datetime.UTC
    )


class DashboardFactory(DjangoModelFactory):
    class Meta:
        model = Dashboard

    org = factory.SubFactory(OrganisationFactory)
