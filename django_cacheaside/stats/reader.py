"""Reading stats back: the buckets of a window, added up per model and schema stamp."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from django_cacheaside import keys
from django_cacheaside.backend import get_backend
from django_cacheaside.conf import app_settings
from django_cacheaside.exceptions import BackendError
from django_cacheaside.stats.counters import ANY_MODEL, LOAD_BUCKETS_MS
from django_cacheaside.stats.flusher import bucket_key, flush

COUNTERS = (
    "hits", "negative_hits", "misses", "query_hits", "query_misses", "fills", "fills_refused",
    "lock_waits", "lock_timeouts", "coalesced", "early_refreshes", "stale_refreshes",
    "stale_served", "errors", "load_count", "load_us",
)  # fmt: skip
CAUSES = ("save", "delete", "bulk", "tag", "manual", "model")


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else value


@dataclass
class ModelStats:
    """What one model did in a window, under one schema stamp (its key format)."""

    model: str  # "app_label.ModelName", or "-" for counts of no single model
    schema: str
    counts: dict[str, int] = field(default_factory=dict)
    series: dict[int, tuple[int, int]] = field(default_factory=dict)  # minute -> (hits, misses)

    def __getitem__(self, name: str) -> int:
        return self.counts.get(name, 0)

    @property
    def reads(self) -> int:
        return self["hits"] + self["negative_hits"] + self["misses"]

    @property
    def hit_rate(self) -> float | None:
        """Hits (negative hits included) per read, ``None`` without reads."""
        reads = self.reads
        return (self["hits"] + self["negative_hits"]) / reads if reads else None

    @property
    def invalidations(self) -> dict[str, int]:
        return {cause: self[f"invalidations_{cause}"] for cause in CAUSES}

    def load_percentile(self, fraction: float) -> float | None:
        """The upper bound (ms) of the histogram bucket holding the ``fraction`` quantile of the
        database loads; ``None`` without loads, ``inf`` past the last bucket."""
        total = self["load_count"]
        if not total:
            return None
        seen = 0
        for bound in LOAD_BUCKETS_MS:
            seen += self[f"load_le_{bound}"]
            if seen >= fraction * total:
                return float(bound)
        return float("inf")

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON row of ``cachestats --json``."""
        return {
            "model": self.model,
            "schema": self.schema,
            "reads": self.reads,
            "hits": self["hits"],
            "negative_hits": self["negative_hits"],
            "misses": self["misses"],
            "hit_rate": self.hit_rate,
            **{
                name: self[name]
                for name in COUNTERS
                if name not in ("hits", "negative_hits", "misses")
            },
            "invalidations": self.invalidations,
            # JSON has no infinity: a quantile past the last bucket (> 5 s) is None, as is "no
            # loads" (tell them apart with load_count).
            "load_ms_p50": _finite(self.load_percentile(0.5)),
            "load_ms_p95": _finite(self.load_percentile(0.95)),
        }


@dataclass
class Snapshot:
    window: int  # seconds
    minutes: list[int]
    models: list[ModelStats]

    def model(self, label: str) -> list[ModelStats]:
        return [row for row in self.models if row.model == label]


def snapshot(window: int = 3600, models: list[str] | None = None) -> Snapshot:
    """The counts of the last ``window`` seconds (whole minutes), per model and schema stamp.

    This process's own counts are flushed first. ``models`` keeps only those labels
    (``"app_label.ModelName"``). Raises ``BackendError`` if Redis cannot be read.
    """
    if window < 60:
        raise ValueError(f"A stats window is at least 60 seconds, not {window}.")
    if app_settings.STATS:
        flush()
    namespace = keys.namespace(app_settings.KEY_PREFIX)
    now = int(time.time() // 60)
    minutes = list(range(now - window // 60 + 1, now + 1))
    buckets = get_backend().read_counts([bucket_key(namespace, m) for m in minutes])
    if buckets is None:
        raise BackendError("Redis could not be read for stats")
    rows: dict[tuple[str, str], ModelStats] = {}
    for minute, bucket in zip(minutes, buckets, strict=True):
        for name, amount in bucket.items():
            label, schema, counter = name.split("|", 2)
            if models is not None and label not in models:
                continue
            row = rows.setdefault((label, schema), ModelStats(label, schema))
            row.counts[counter] = row.counts.get(counter, 0) + amount
            if counter in ("hits", "negative_hits", "misses"):
                hits, misses = row.series.get(minute, (0, 0))
                if counter == "misses":
                    misses += amount
                else:
                    hits += amount
                row.series[minute] = (hits, misses)
    ordered = sorted(rows.values(), key=lambda r: (r.model == ANY_MODEL, r.model, r.schema))
    return Snapshot(window, minutes, ordered)


def reset() -> int:
    """Drop every stats bucket of this ``KEY_PREFIX`` (and this process's unflushed counts);
    answers how many. Raises ``BackendError`` if Redis cannot be reached."""
    from django_cacheaside.stats.counters import buffer

    buffer.take()
    namespace = keys.namespace(app_settings.KEY_PREFIX)
    dropped = get_backend().delete_matching(keys.glob_escape(f"{namespace}stats:{{") + "*")
    if dropped is None:
        raise BackendError("Redis could not be reached to reset the stats")
    return dropped
