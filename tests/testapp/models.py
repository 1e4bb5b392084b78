import uuid

from django.db import models

from django_cacheaside import CacheAsideManager


class Org(models.Model):
    name = models.CharField(max_length=100, unique=True)

    objects = models.Manager()
    cached = CacheAsideManager(ttl=120)


class Article(models.Model):
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="articles")
    slug = models.SlugField()
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)

    objects = models.Manager()
    cached = CacheAsideManager()

    class Meta:
        unique_together = [("org", "slug")]


class ProxyArticle(Article):
    class Meta:
        proxy = True


class Membership(models.Model):
    org = models.ForeignKey(Org, on_delete=models.CASCADE)
    email = models.EmailField()
    role = models.CharField(max_length=20, default="member")

    cached = CacheAsideManager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "email"], name="one_membership")]


class Token(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    label = models.CharField(max_length=50)

    cached = CacheAsideManager()


class Timestamped(models.Model):
    created = models.DateTimeField(auto_now_add=True)

    cached = CacheAsideManager(ttl=60)

    class Meta:
        abstract = True


class Note(Timestamped):
    text = models.CharField(max_length=100)


class Place(models.Model):
    name = models.CharField(max_length=100)

    cached = CacheAsideManager()


class Restaurant(Place):
    serves_pizza = models.BooleanField(default=False)


class Uncached(models.Model):
    name = models.CharField(max_length=10)


class AllTypes(models.Model):
    """One column of every concrete built-in field type."""

    char = models.CharField(max_length=50)
    text = models.TextField()
    slug = models.SlugField()
    email = models.EmailField()
    url = models.URLField()
    small = models.SmallIntegerField()
    integer = models.IntegerField()
    big = models.BigIntegerField()
    positive_small = models.PositiveSmallIntegerField()
    positive = models.PositiveIntegerField()
    positive_big = models.PositiveBigIntegerField()
    floating = models.FloatField()
    decimal = models.DecimalField(max_digits=12, decimal_places=4)
    boolean = models.BooleanField()
    nullable_boolean = models.BooleanField(null=True)
    date = models.DateField()
    time = models.TimeField()
    moment = models.DateTimeField()
    duration = models.DurationField()
    uuid = models.UUIDField()
    binary = models.BinaryField()
    json = models.JSONField()
    ip = models.GenericIPAddressField()
    file = models.FileField(upload_to="files/", blank=True)
    image = models.ImageField(upload_to="images/", blank=True)
    org = models.ForeignKey(Org, null=True, on_delete=models.SET_NULL)
    nothing = models.CharField(max_length=10, null=True)

    cached = CacheAsideManager()


class HotEarly(models.Model):
    """Read constantly: refreshed shortly before it expires (XFetch)."""

    value = models.IntegerField(default=0)

    cached = CacheAsideManager(ttl=3, jitter=0, early_refresh=True)


class HotStale(models.Model):
    """Served stale for a while after its TTL, while one caller refreshes it."""

    value = models.IntegerField(default=0)

    cached = CacheAsideManager(ttl=0.3, jitter=0, stale_ttl=5)


# -- tags, write paths and primary keys (issue 4) ----------------------------------------------


class Label(models.Model):
    name = models.CharField(max_length=50, unique=True)

    objects = models.Manager()
    cached = CacheAsideManager(tags=lambda label: ["labels", f"label:{label.name}"])


class Post(models.Model):
    """Tagged by its org; an auto-created m2m to labels."""

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="posts")
    slug = models.SlugField(unique=True)
    title = models.CharField(max_length=200)
    labels = models.ManyToManyField(Label, blank=True, related_name="posts")

    objects = models.Manager()
    cached = CacheAsideManager(tags=("org",))


class BriefPost(models.Model):
    """Tagged, with entries that expire fast (the tag-set bound test)."""

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="+")
    title = models.CharField(max_length=200)

    objects = models.Manager()
    cached = CacheAsideManager(tags=("org",), ttl=0.4, jitter=0)


class Person(models.Model):
    name = models.CharField(max_length=50)

    objects = models.Manager()
    cached = CacheAsideManager()


class Team(models.Model):
    """A many-to-many through a cached model of its own."""

    name = models.CharField(max_length=50)
    people = models.ManyToManyField(Person, through="Seat", related_name="teams")

    objects = models.Manager()
    cached = CacheAsideManager()


class Seat(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE)
    person = models.ForeignKey(Person, on_delete=models.CASCADE)
    role = models.CharField(max_length=20, default="member")

    objects = models.Manager()
    cached = CacheAsideManager()

    class Meta:
        unique_together = [("team", "person")]


class Country(models.Model):
    """A string primary key."""

    code = models.CharField(max_length=2, primary_key=True)
    name = models.CharField(max_length=50)

    objects = models.Manager()
    cached = CacheAsideManager()


class Sku(models.Model):
    """A primary key not named id."""

    sku_id = models.AutoField(primary_key=True)
    name = models.CharField(max_length=50, unique=True)

    objects = models.Manager()
    cached = CacheAsideManager()


# -- consistency under concurrency, restarts and eviction (issue 6) -----------------------------


class Ledger(models.Model):
    """Rows whose version only goes up: the history checker's model (tests/history.py)."""

    code = models.CharField(max_length=20, unique=True)  # a unique lookup: pointer, then object
    version = models.PositiveIntegerField(default=0)
    payload = models.CharField(max_length=200, blank=True)

    objects = models.Manager()
    cached = CacheAsideManager()


class Gauge(models.Model):
    """A hot row with a near cache (tests/test_nearby.py); ``data`` is JSON: copied on each hit."""

    name = models.CharField(max_length=50, unique=True)
    value = models.IntegerField(default=0)
    data = models.JSONField(default=dict)

    objects = models.Manager()
    cached = CacheAsideManager(near_cache={"ttl": 5})
