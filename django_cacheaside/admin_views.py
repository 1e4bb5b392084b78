"""What the admin's "Cache statistics" page shows: the ``cachestats`` report, as template context.

The numbers come from the command's own report (:meth:`cachestats.Command.collect`), so the page
and ``manage.py cachestats`` agree; the hit-rate chart is an SVG drawn here, server side.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from django.core.management.base import CommandError

from django_cacheaside.management.commands.cachestats import (
    NODE_COLUMNS,
    Command,
    Report,
    _ms,
    _rate,
    health_figures,
    node_rows,
)
from django_cacheaside.stats import ModelStats
from django_cacheaside.stats.health import format_bytes

# The windows the page offers (``?window=``), in seconds; the first is the default.
WINDOWS = {"1h": 3600, "15m": 900, "24h": 86400}
COLOURS = ("#2b6cb0", "#c05621", "#2f855a", "#9b2c2c", "#6b46c1", "#b7791f", "#2c7a7b", "#97266d")
WIDTH, HEIGHT, LEFT, TOP, BOTTOM = 720, 220, 44, 10, 24  # chart geometry, px
DOTS_UP_TO = 90  # points drawn as dots too when a series has at most this many


def parse_window(value: str | None) -> tuple[str, int]:
    """The ``?window=`` choice: one of :data:`WINDOWS`, else the default (``1h``)."""
    if value in WINDOWS:
        return value, WINDOWS[value]
    name = next(iter(WINDOWS))
    return name, WINDOWS[name]


def collect(window: int) -> Report:
    """The command's report for ``window`` seconds, every cached model; ``CommandError`` (naming
    the server and the cause) when Redis cannot be read."""
    return Command().collect(window, None)


@dataclass
class Series:
    model: str
    colour: str
    points: str  # SVG polyline points
    dots: list[tuple[float, float]] = field(default_factory=list)
    latest: str = "-"


def _x(index: int, count: int) -> float:
    span = WIDTH - LEFT - 8
    return round(LEFT + (span * index / (count - 1) if count > 1 else span / 2), 1)


def _y(rate: float) -> float:
    return round(TOP + (HEIGHT - TOP - BOTTOM) * (1 - rate), 1)


def chart(rows: list[ModelStats], window: int, now: float | None = None) -> dict[str, Any]:
    """An SVG line per model (its schema stamps added up): the hit rate of each minute with reads."""
    minute_now = int((time.time() if now is None else now) // 60)
    known = [m for row in rows for m in row.series]
    end = max([minute_now, *known])
    minutes = list(range(end - window // 60 + 1, end + 1))
    index = {minute: i for i, minute in enumerate(minutes)}
    per_model: dict[str, dict[int, list[int]]] = {}
    for row in rows:
        target = per_model.setdefault(row.model, {})
        for minute, (hits, misses) in row.series.items():
            tally = target.setdefault(minute, [0, 0])
            tally[0] += hits
            tally[1] += misses
    series: list[Series] = []
    for model, tallies in per_model.items():
        coords = []
        for minute in sorted(tallies):
            hits, misses = tallies[minute]
            if minute in index and hits + misses:
                coords.append((_x(index[minute], len(minutes)), _y(hits / (hits + misses))))
        if not coords:
            continue
        last_hits, last_misses = tallies[max(m for m in tallies if sum(tallies[m]))]
        series.append(
            Series(
                model=model,
                colour=COLOURS[len(series) % len(COLOURS)],
                points=" ".join(f"{x},{y}" for x, y in coords),
                dots=coords if len(coords) <= DOTS_UP_TO else [],
                latest=_rate(last_hits / (last_hits + last_misses)),
            )
        )
    ticks = [{"y": _y(rate), "label": f"{rate:.0%}"} for rate in (0.0, 0.5, 1.0)]
    start_label = time.strftime("%H:%M", time.localtime(minutes[0] * 60))
    end_label = time.strftime("%H:%M", time.localtime(minutes[-1] * 60))
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": WIDTH - 8,
        "bottom": HEIGHT - BOTTOM,
        "label_y": HEIGHT - 6,
        "ticks": ticks,
        "series": series,
        "start": start_label,
        "end": end_label,
    }


def active(report: Report, row: ModelStats) -> bool:
    """Rows with something counted, or keys in Redis (the command's text rows at ``-v 1``)."""
    estimate = report.memory_of(row)
    return any(row.counts.values()) or (estimate is not None and estimate.keys > 0)


def table(report: Report, show_all: bool = False) -> tuple[list[dict[str, Any]], bool, int]:
    """The command's columns per row, formatted as it formats them; whether a row has another
    schema stamp than this code's (marked ``*``); how many idle rows were left out."""
    result, other = [], False
    rows = [row for row in report.rows if show_all or active(report, row)]
    for row in rows:
        current = report.schemas.get(row.model)
        stale = current is not None and row.schema != current
        other = other or stale
        invalidations = row.invalidations
        total = sum(invalidations.values())
        estimate = report.memory_of(row)
        if estimate is None:
            memory = "-"
        elif estimate.keys:
            memory = f"~{format_bytes(estimate.total_bytes)}"
        else:
            memory = "0 B"
        result.append(
            {
                "model": row.model,
                "schema": f"{row.schema}*" if stale else row.schema,
                "cached": current is not None,
                "reads": row.reads,
                "hit_rate": _rate(row.hit_rate),
                "misses": row["misses"],
                "fills": row["fills"],
                "locks": f"{row['lock_waits']}/{row['lock_timeouts']}",
                "invalidations": total,
                "causes": ", ".join(f"{cause} {n}" for cause, n in invalidations.items() if n),
                "errors": row["errors"],
                "p50": _ms(row.load_percentile(0.5)),
                "p95": _ms(row.load_percentile(0.95)),
                "memory": memory,
            }
        )
    return result, other, len(report.rows) - len(rows)


def redis_figures(report: Report) -> list[tuple[str, str]]:
    """The command's Redis figures (summed over the primaries of a cluster), the version first."""
    health = report.health
    version = health.version
    if len(health.nodes) > 1:
        version += f" (the lowest of {len(health.nodes)} primaries)"
    return [("version", version), *health_figures(health)]


def redis_nodes(report: Report) -> list[dict[str, Any]]:
    """The command's per-primary rows, as ``{"node": address, "cells": [(column, text)...]}``;
    none unless Redis is a cluster of two primaries or more."""
    return [
        {"node": row["node"], "cells": [(key, row[key]) for key, _ in NODE_COLUMNS[1:]]}
        for row in node_rows(report.health)
    ]


def page_context(window_name: str, window: int, show_all: bool = False) -> dict[str, Any]:
    """Everything the page shows; ``error`` instead of the figures when Redis cannot be read.
    ``show_all``: idle rows too (nothing counted, no keys)."""
    context: dict[str, Any] = {
        "window": window_name,
        "window_text": window_name,
        "windows": list(WINDOWS),
        "show_all": show_all,
    }
    try:
        report = collect(window)
    except CommandError as exc:
        context["error"] = str(exc)
        return context
    rows, other, idle = table(report, show_all)
    context.update(
        rows=rows,
        idle=idle,
        other_schema=other,
        chart=chart(report.rows, window),
        redis=redis_figures(report),
        redis_nodes=redis_nodes(report),
        redis_columns=[heading for _, heading in NODE_COLUMNS],
        warnings=report.health.warnings,
        models=list(report.schemas),
    )
    return context
