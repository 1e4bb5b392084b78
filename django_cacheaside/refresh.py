"""Refreshing an entry before it expires (XFetch) or while it is stale (stale-while-revalidate).

Both are per manager and off by default. An entry records when it stops being fresh and how long
its load took (``delta``). On a hit:

* **early refresh** (``early_refresh=True``): refresh when ``now - delta * beta * ln(rand()) >=
  fresh_until`` (Vattani, Chierichetti and Lowenstein's "optimal probabilistic cache stampede
  prevention"; ``beta`` defaults to 1), so the refresh comes shortly before expiry, earlier for
  slow loads, and one request of a steady stream does it;
* **stale-while-revalidate** (``stale_ttl=seconds``): the key outlives freshness by ``stale_ttl``;
  a stale hit refreshes, and while another process holds the refresh the stale entry is served.

Either way the refresh takes the object's lease *without waiting*: exactly one caller refreshes and
the others serve the entry they have. An invalidation deletes the entry outright, so an invalidated
entry is never served, stale or not.
"""

from __future__ import annotations

import math
import random
import time

from django_cacheaside import entries


class RefreshPolicy:
    def __init__(self, early_refresh: bool, beta: float, stale_ttl: float) -> None:
        if not isinstance(early_refresh, bool):
            raise TypeError("early_refresh must be True or False.")
        if isinstance(beta, bool) or not isinstance(beta, int | float) or beta <= 0:
            raise ValueError(
                f"beta must be a number greater than 0 (1 is the default), not {beta!r}."
            )
        if isinstance(stale_ttl, bool) or not isinstance(stale_ttl, int | float) or stale_ttl < 0:
            raise ValueError(
                f"stale_ttl must be a number of seconds, 0 or more, not {stale_ttl!r}."
            )
        self.early_refresh = early_refresh
        self.beta = float(beta)
        self.stale_ms = int(stale_ttl * 1000)
        self.enabled = early_refresh or self.stale_ms > 0  # read on every hit: an attribute

    def due(self, entry: bytes) -> str | None:
        """``"stale"``, ``"early"`` or ``None`` (serve as it is) for a hit on ``entry``."""
        fresh_until, load_ms = entries.timing(entry)
        now = time.time() * 1000
        if now >= fresh_until:
            return "stale"
        # 1 - random() is in (0, 1]: its logarithm is finite and at most 0.
        if self.early_refresh and (
            now - load_ms * self.beta * math.log(1.0 - random.random()) >= fresh_until
        ):
            return "early"
        return None
