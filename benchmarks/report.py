"""The one table of ``run.py``: rows, ratios and targets, as text, Markdown or JSON.

Rows come from three places: this process's :class:`measure.Bench` rows, the comparison processes'
rows (``peer.py``, merged repeat by repeat, so they are ``Bench`` rows too, with a ``process``) and
the stampede subprocess (queries per stampede and time until all readers were served). Ratios are
throughput ratios computed per repeat, then their median, with the min-max over repeats.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from measure import Bench, per_repeat_ratios

HIT_TARGET = 8.0  # cached.get hit / orm get(pk), PostgreSQL


@dataclass
class RatioSpec:
    label: str
    numerator: str
    denominator: str
    target: float | None
    vendor: str | None = None  # the database the target is stated for


def ratio_specs(batch: int, peers: Sequence[str]) -> list[RatioSpec]:
    many, bulk = f"cached.get_many({batch}) hit", f"orm in_bulk({batch})"
    specs = [
        RatioSpec(
            "cached.get hit / orm get", "cached.get hit", "orm get(pk)", HIT_TARGET, "postgresql"
        ),
        RatioSpec("cached.get hit / redis GET", "cached.get hit", "redis GET 1KB", 0.75),
        RatioSpec(f"get_many({batch}) / in_bulk({batch})", many, bulk, 4.0),
        RatioSpec("save cached / save plain", "save() cached", "save() plain", 0.8),
        RatioSpec("hit, stats on / stats off", "cached.get hit", "cached.get hit, stats off", 0.95),
        RatioSpec("hit, signed / unsigned", "cached.get hit, signed", "cached.get hit", None),
        RatioSpec(
            "negative hit / orm DoesNotExist",
            "cached.get negative hit",
            "orm get(pk) DoesNotExist",
            None,
        ),
        RatioSpec("miss+fill / orm get", "cached.get miss+fill", "orm get(pk)", None),
        RatioSpec(
            "cached.filter / orm filter, 100 rows",
            "cached.filter(owner_id) 100 rows hit",
            "orm filter(owner_id) 100 rows",
            None,
        ),
        RatioSpec("ceiling: raw HGET / orm get", "raw floor: HGET entry", "orm get(pk)", None),
        RatioSpec("ceiling: raw PING / orm get", "raw floor: PING", "orm get(pk)", None),
        RatioSpec("cached.get hit / raw HGET", "cached.get hit", "raw floor: HGET entry", None),
        RatioSpec("redis-py GET / raw HGET", "redis GET 1KB", "raw floor: HGET entry", None),
    ]
    for peer in peers:
        specs += [
            RatioSpec(
                f"{peer} get hit / orm get (its process)",
                f"{peer}: get(pk) hit",
                f"{peer}: orm get(pk)",
                None,
            ),
            RatioSpec(
                f"{peer} get hit / cached.get hit", f"{peer}: get(pk) hit", "cached.get hit", None
            ),
            RatioSpec(
                f"{peer} in_bulk({batch}) hit / cached.get_many",
                f"{peer}: in_bulk({batch}) hit",
                many,
                None,
            ),
            RatioSpec(
                f"{peer} get_many({batch}) hit / cached.get_many",
                f"{peer}: get_many({batch}) hit",
                many,
                None,
            ),
            RatioSpec(
                f"{peer} save / save plain (its process)",
                f"{peer}: save()",
                f"{peer}: save() plain",
                None,
            ),
        ]
    return specs


def status(value: float, target: float | None, vendor: str | None, this_vendor: str) -> str:
    if target is None:
        return "info"
    if vendor and vendor != this_vendor:
        return f"n/a (the target is for {vendor}, this run is {this_vendor})"
    if value >= target:
        return "PASS"
    return f"MISS by {(1 - value / target) * 100:.0f}%"


def compute_ratios(
    benches: Sequence[Bench], batch: int, vendor: str, peers: Sequence[str]
) -> list[dict[str, Any]]:
    by_name = {b.name: b for b in benches if b.runs}
    result = []
    for spec in ratio_specs(batch, peers):
        a, b = by_name.get(spec.numerator), by_name.get(spec.denominator)
        if a is None or b is None:
            continue
        each = per_repeat_ratios(a, b)
        value = statistics.median(each)
        a_p50, b_p50 = a.median("p50_us"), b.median("p50_us")
        result.append(
            {
                "ratio": spec.label,
                "p50_text": f"p50 {b_p50:,.1f} µs against {a_p50:,.1f} µs: {b_p50 / a_p50:.2f}x",
                "numerator_p50_per_repeat": [run.p50_us for run in a.runs],
                "value": value,
                "per_repeat": each,
                "of_medians": a.median("ops_per_s") / b.median("ops_per_s"),
                "target": spec.target,
                "target_text": f">= {spec.target:g}x" if spec.target is not None else "",
                "status": status(value, spec.target, spec.vendor, vendor),
            }
        )
    return result


def stampede_targets(stampede: dict[str, Any] | None) -> list[dict[str, Any]]:
    """``Model.cached``: one query per stampede, in every trial (threads, then processes)."""
    if not stampede or "results" not in stampede:
        return []
    result = []
    for summary in stampede["results"]:
        if summary["contender"] != "Model.cached":
            continue
        queries = [t["queries"] for t in summary["per_trial"]]
        ok = max(queries) == 1 and summary["all_served"]
        result.append(
            {
                "ratio": f"stampede, Model.cached, {stampede_label(summary)}",
                "value": statistics.median(queries),
                "per_repeat": queries,
                "unit": "queries",
                "target": 1,
                "target_text": "= 1 query",
                "status": "PASS" if ok else f"MISS (max {max(queries)} queries)",
            }
        )
    return result


def stampede_label(summary: dict[str, Any]) -> str:
    if summary["mode"] == "threads":
        return f"{summary['threads']} threads"
    return f"{summary['processes']} processes x {summary['threads'] // summary['processes']}"


# -- the rows of the table -------------------------------------------------------------------


@dataclass
class Row:
    name: str
    process: str
    ops_per_s: str
    p50_us: str
    p99_us: str
    ratio: str
    cells: list[str] = field(default_factory=list)


def table_rows(
    benches: Sequence[Bench],
    processes: dict[str, str],
    stampede: dict[str, Any] | None,
    notes: Sequence[tuple[str, str, str]],
) -> list[Row]:
    """Every row in order: this process's, each comparison process's, the stampede's; ``notes``
    are rows that could not be measured ``(name, process, why)``."""
    by_name = {b.name: b for b in benches}
    rows = []
    for bench in benches:
        if not bench.runs:
            continue
        ratio = ""
        base = by_name.get(bench.baseline or "")
        if base is not None and base.runs:
            each = per_repeat_ratios(bench, base)
            ratio = f"{statistics.median(each):.2f}x {base.name}"
        rows.append(
            Row(
                bench.name,
                processes.get(bench.name, "main"),
                f"{bench.median('ops_per_s'):,.0f}",
                f"{bench.median('p50_us'):,.1f}",
                f"{bench.median('p99_us'):,.1f}",
                ratio,
            )
        )
    for name, process, why in notes:
        rows.append(Row(name, process, "", "", "", why))
    for summary in (stampede or {}).get("results", []):
        low, high = summary["queries_min"], summary["queries_max"]
        rows.append(
            Row(
                f"stampede: {summary['contender']}, {stampede_label(summary)}",
                "stampede.py",
                "",
                f"{summary['ms_p50'] * 1000:,.0f}",
                f"{summary['ms_max'] * 1000:,.0f}",
                f"{summary['queries_median']:g} {'query' if summary['queries_median'] == 1 else 'queries'}"
                f" per stampede [{low}-{high}]",
            )
        )
    if stampede and "error" in stampede:
        rows.append(Row("stampede", "stampede.py", "", "", "", f"failed: {stampede['error']}"))
    return rows


HEADERS = ["benchmark", "process", "ops/s", "p50 µs", "p99 µs", "ratio"]


def cells(row: Row) -> list[str]:
    return [row.name, row.process, row.ops_per_s, row.p50_us, row.p99_us, row.ratio]


LEGEND = (
    "figures per call, medians over repeats; ratio = throughput over the named row, median of "
    "per-repeat ratios; stampede rows: p50/p99 columns are the p50/max over trials of the time "
    "until every reader was served"
)


def method_line(env: dict[str, Any]) -> str:
    return (
        f"{env['rows']} rows; {env['ops']} ops per repeat ({env['batch_ops']} for the batch and "
        f"filter rows), median of {env['repeats']} interleaved repeats"
        + ("; --quick" if env.get("quick") else "")
    )


def environment_lines(env: dict[str, Any]) -> list[tuple[str, str]]:
    hiredis = "yes" if env["hiredis"] else "no"
    lines = [
        ("date", f"{env['date']}   run {env['run_id']}"),
        ("python", f"{env['python']}   django {env['django']}   msgpack {env['msgpack']}"),
        ("redis-py", f"{env['redis_py']}   hiredis {hiredis} ({env['redis_parser']})"),
        (
            "database",
            f"{env['db_vendor']}: {env['db_version']} via {env['db_driver']} @ {env['db_host']}",
        ),
        ("redis", f"{env['redis_version']} @ {env['redis_url']}"),
        ("library", f"{env['library']}; serializer {env['serializer']}"),
        ("machine", f"{env['platform']}, {env['cpus']} cpus, loadavg {env['loadavg']}"),
        ("method", method_line(env)),
    ]
    if env.get("command"):
        lines.append(("command", env["command"]))
    for peer in env.get("peers", []):
        lines.append(("compared", f"{peer['name']}: {peer['detail']}"))
    return lines


def ceiling_note(ratios: Sequence[dict[str, Any]], vendor: str) -> str | None:
    ceiling = next((r for r in ratios if r["ratio"] == "ceiling: raw HGET / orm get"), None)
    if ceiling is None:
        return None
    reach = "within reach" if ceiling["value"] >= HIT_TARGET else "out of reach"
    where = "" if vendor == "postgresql" else f" (the target is for postgresql, this is {vendor})"
    floors = ", ".join(f"{us:.1f}" for us in ceiling["numerator_p50_per_repeat"])
    each = ", ".join(f"{x:.1f}x" for x in ceiling["per_repeat"])
    return (
        f"ceiling: a hit that cost nothing but one raw HGET round trip would be "
        f"{ceiling['value']:.2f}x orm get(pk) on this machine ({ceiling['p50_text']}), so the "
        f"{HIT_TARGET:g}x target is {reach} for any cache that makes one Redis round trip per "
        f"hit{where}. Per repeat, the raw HGET's p50 was {floors} µs and the ceiling {each}"
    )


def print_table(rows: Sequence[Row], ratios: Sequence[dict[str, Any]], env: dict[str, Any]) -> None:
    print("django-cacheaside benchmarks")
    for key, value in environment_lines(env):
        print(f"  {key:<9} {value}")
    print(f"  {LEGEND}")
    print()
    table = [HEADERS, *(cells(r) for r in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADERS))]

    def line(values: list[str]) -> str:
        left = [values[0].ljust(widths[0]), values[1].ljust(widths[1])]
        middle = [c.rjust(w) for c, w in zip(values[2:5], widths[2:5], strict=True)]
        return " | ".join([*left, *middle, values[5]]).rstrip()

    print(line(HEADERS))
    print("-+-".join("-" * w for w in widths))
    for values in table[1:]:
        print(line(values))
    if not ratios:
        return
    print()
    print("ratios and targets (throughput; median of per-repeat ratios, min-max over repeats)")
    label_width = max(len(r["ratio"]) for r in ratios)
    for r in ratios:
        each = r["per_repeat"]
        unit = " q" if r.get("unit") == "queries" else "x"
        target = f"target {r['target_text']}" if r["target_text"] else "no target"
        print(
            f"  {r['ratio'].ljust(label_width)}  {r['value']:6.2f}{unit}  "
            f"({min(each):.2f}-{max(each):.2f})  {target:<20} {r['status']}"
        )
    note = ceiling_note(ratios, env["db_vendor"])
    if note:
        print()
        print(f"  {note}")


def markdown(rows: Sequence[Row], ratios: Sequence[dict[str, Any]], env: dict[str, Any]) -> str:
    def escape(text: str) -> str:
        return text.replace("|", "\\|")

    out = ["| environment | |", "|---|---|"]
    out += [f"| {key} | {escape(value)} |" for key, value in environment_lines(env)]
    out += ["", f"{LEGEND[0].upper()}{LEGEND[1:]}.", ""]
    out += ["| " + " | ".join(HEADERS) + " |", "|---|---|---:|---:|---:|---|"]
    out += ["| " + " | ".join(escape(c) for c in cells(r)) + " |" for r in rows]
    if ratios:
        out += ["", "| ratio | median | min-max | target | status |", "|---|---:|---:|---|---|"]
        for r in ratios:
            each = r["per_repeat"]
            unit = " queries" if r.get("unit") == "queries" else "x"
            out.append(
                f"| {escape(r['ratio'])} | {r['value']:.2f}{unit} | {min(each):.2f}-{max(each):.2f} "
                f"| {escape(r['target_text'])} | {escape(r['status'])} |"
            )
    note = ceiling_note(ratios, env["db_vendor"])
    if note:
        out += ["", note[0].upper() + note[1:] + "."]
    return "\n".join(out) + "\n"


def json_report(
    benches: Sequence[Bench],
    processes: dict[str, str],
    ratios: Sequence[dict[str, Any]],
    env: dict[str, Any],
    stampede: dict[str, Any] | None,
    notes: Sequence[tuple[str, str, str]],
) -> dict[str, Any]:
    return {
        "environment": env,
        "results": [
            {
                "benchmark": b.name,
                "process": processes.get(b.name, "main"),
                "calls_per_repeat": b.calls,
                "ops_per_s": b.median("ops_per_s"),
                "p50_us": b.median("p50_us"),
                "p99_us": b.median("p99_us"),
                "baseline": b.baseline,
                "repeats": [vars(r) for r in b.runs],
            }
            for b in benches
            if b.runs
        ],
        "not_measured": [{"benchmark": n, "process": p, "why": w} for n, p, w in notes],
        "stampede": stampede,
        "ratios": list(ratios),
    }
