"""Cache-aside managers for Django models on Redis.

``Model.cached.get(pk=1)`` reads through Redis, fills from the database on a miss, and signal-driven,
after-commit invalidation keeps it from ever serving a row older than the last commit.
"""

from __future__ import annotations

from django_cacheaside.aio import ainvalidate, ainvalidate_model, ainvalidate_tags
from django_cacheaside.invalidation import invalidate, invalidate_model, invalidate_tags
from django_cacheaside.managers import CacheAsideManager
from django_cacheaside.registry import register

__all__ = [
    "CacheAsideManager",
    "ainvalidate",
    "ainvalidate_model",
    "ainvalidate_tags",
    "invalidate",
    "invalidate_model",
    "invalidate_tags",
    "register",
]
