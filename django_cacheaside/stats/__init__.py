"""Hit-rate stats: counted in-process from the app's signals, flushed to per-minute buckets in
Redis, read back by :func:`snapshot` (used by ``manage.py cachestats``).

``CACHEASIDE["STATS"] = False`` connects no receiver: the read path then pays nothing for stats.
"""

from __future__ import annotations

from django_cacheaside.stats.flusher import flush
from django_cacheaside.stats.reader import ModelStats, Snapshot, reset, snapshot

__all__ = ["ModelStats", "Snapshot", "flush", "reset", "snapshot"]
