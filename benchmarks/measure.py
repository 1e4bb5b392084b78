"""Timing shared by the benchmark scripts: a row (``Bench``), one timed repeat (``measure``),
interleaved repeats (``run_benches``) and per-repeat throughput ratios.

A repeat's ops/s is its calls over its wall time; p50/p99 are over its calls. A row with a
``before`` hook runs it before each call, outside the clock, and its ops/s is then its calls over
the sum of the timed calls (the untimed work is not wall time the row may count).
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from common import progress


@dataclass
class Run:
    ops_per_s: float
    p50_us: float
    p99_us: float


@dataclass
class Bench:
    name: str
    op: Callable[[int], object]  # called with the op index
    calls: int
    setup: Callable[[], None] | None = None  # before each repeat, not timed
    baseline: str | None = None  # the row the ratio column divides by
    before: Callable[[int], object] | None = None  # before each call, not timed
    runs: list[Run] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return float(statistics.median(getattr(run, attr) for run in self.runs))


def measure(op: Callable[[int], object], calls: int, before: Callable[[int], object] | None) -> Run:
    clock = time.perf_counter_ns
    latencies = [0] * calls
    gc.collect()
    started = clock()
    if before is None:
        for i in range(calls):
            t0 = clock()
            op(i)
            latencies[i] = clock() - t0
        total = clock() - started
    else:
        for i in range(calls):
            before(i)
            t0 = clock()
            op(i)
            latencies[i] = clock() - t0
        total = sum(latencies)
    latencies.sort()
    p99 = latencies[min(calls - 1, math.ceil(calls * 0.99) - 1)]
    return Run(calls * 1e9 / max(total, 1), statistics.median(latencies) / 1000, p99 / 1000)


def warm_up(benches: Sequence[Bench], warmup: int) -> None:
    """Each row's ``setup`` and ``warmup`` untimed calls (connections, caches, code paths)."""
    for bench in benches:
        if bench.setup:
            bench.setup()
        for i in range(min(warmup, bench.calls)):
            if bench.before:
                bench.before(i)
            bench.op(i)


def run_repeat(benches: Sequence[Bench], label: str = "") -> None:
    """One repeat of every row, in order (each row's ``setup`` first, untimed)."""
    for bench in benches:
        progress(f"{label}{bench.name}")
        if bench.setup:
            bench.setup()
        bench.runs.append(measure(bench.op, bench.calls, bench.before))


def run_benches(benches: Sequence[Bench], repeats: int, warmup: int) -> None:
    warm_up(benches, warmup)
    for repeat in range(repeats):
        run_repeat(benches, f"repeat {repeat + 1}/{repeats}: ")


def per_repeat_ratios(a: Bench, b: Bench) -> list[float]:
    """Throughput of ``a`` over ``b``, repeat by repeat (rows measured seconds apart)."""
    return [x.ops_per_s / y.ops_per_s for x, y in zip(a.runs, b.runs, strict=True)]
