from django.db import models

from django_cacheaside import CacheAsideManager


class Note(models.Model):
    title = models.CharField(max_length=100)
    slug = models.SlugField(unique=True)

    objects = models.Manager()
    cached = CacheAsideManager(ttl=60)

    def __str__(self) -> str:
        return self.slug
