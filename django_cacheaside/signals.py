"""The app's own signals. Stats and your code subscribe to them; the read path only sends.

Every signal is sent with ``sender`` set to the model class (``cache_error``: the backend class).

``cache_hit(sender, key, negative)``
    An entry was served from Redis (``negative``: a remembered "does not exist"). ``key`` is the Redis key: an object's, or a cached query
    result's (``...{app.model:=q}:<digest>``); ``cache_miss`` and ``cache_fill`` likewise.
``cache_miss(sender, key)``
    No usable entry; the row is loaded from the database next.
``cache_fill(sender, key, written, duration)``
    After a database load on a miss. ``written`` is ``False`` when the fill lost its compare-and-set
    (the object was invalidated while it loaded) or Redis failed; ``duration`` is the load in seconds.
``cache_lease(sender, key, outcome, waited)``
    The refill lease of a miss. ``outcome``: ``"acquired"`` (this process loads; ``waited`` > 0 if
    it first waited for a holder that died), ``"waited"`` (another process filled while we waited),
    ``"timeout"`` (``LOCK_WAIT`` ran out: read from the database, not filled) or ``"coalesced"``
    (another thread of this process loaded it). ``waited`` is in seconds.
``cache_refresh(sender, key, reason)``
    A hit refreshes its entry before serving: ``reason`` is ``"early"`` (XFetch) or ``"stale"``.
``cache_stale(sender, key)``
    A stale entry was served (``stale_ttl``) while another caller refreshes it.
``cache_bypass(sender, reason)``
    A read went straight to the database: ``reason`` is ``"dirty"`` (this transaction wrote the
    model) or ``"not_cacheable"`` (a value the serializer cannot encode).
``cache_invalidate(sender, keys, cause)``
    Entries were dropped. ``cause`` is ``"save"``, ``"delete"``, ``"bulk"`` (``update()``,
    ``bulk_update()``, ``bulk_create()``), ``"manual"`` (``invalidate()``), ``"tag"``
    (``invalidate_tags()``: sent once per model that has tags) or ``"model"`` (``invalidate_model()``).
    ``keys`` are the keys deleted by name (not a tag purge's members, not a model scan's keys).
``cache_error(sender, operation, error)``
    Redis failed during ``operation`` (a backend method name); the caller was answered anyway.
"""

from __future__ import annotations

from django.dispatch import Signal

cache_hit = Signal(use_caching=True)
cache_miss = Signal(use_caching=True)
cache_fill = Signal(use_caching=True)
cache_bypass = Signal(use_caching=True)
cache_lease = Signal(use_caching=True)
cache_refresh = Signal(use_caching=True)
cache_stale = Signal(use_caching=True)
cache_invalidate = Signal(use_caching=True)
cache_error = Signal(use_caching=True)
