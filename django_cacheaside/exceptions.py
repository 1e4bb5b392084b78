"""Every exception the app raises on purpose."""

from __future__ import annotations


class CacheAsideError(Exception):
    """Base class of the app's exceptions."""


class BackendError(CacheAsideError):
    """Redis could not answer: refused, timed out, reset, or replied with something unexpected.

    Raised only by :mod:`django_cacheaside.backend`, which translates every redis-py error into this
    one. The read path catches it in one place and answers from the database instead.
    """


class CorruptEntry(CacheAsideError):
    """An entry read from Redis could not be decoded; it is treated as a miss."""


class NotCacheable(CacheAsideError):
    """A value of a type the serializer does not handle; the row is served but not cached."""


class UnsupportedQuery(NotImplementedError, AttributeError):
    """A queryset method ``Model.cached`` does not offer (``.values()``, ``.extra()``...).

    Its message names the default manager's method to use instead. Being an ``AttributeError``
    too, ``hasattr(Model.cached, "values")`` is ``False``.
    """
