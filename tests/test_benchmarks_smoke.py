"""``benchmarks/run.py --quick`` runs end to end, so the benchmark script cannot rot.

It runs as a subprocess (the script configures Django itself) on SQLite in memory and the test
run's Redis (``$REDIS_URL``, or the script's own embedded one), with every installed comparison
library. Benchmarks never fail on a timing: this checks that every row was measured in every
repeat, that every target got a status, that the comparison libraries that are installed were
measured (and the others are reported as not installed), and that the Markdown file was written.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 3  # --quick

MAIN_ROWS = {
    "orm get(pk)",
    "redis GET 1KB",
    "raw floor: PING",
    "raw floor: HGET entry",
    "cached.get hit",
    "cached.get hit, stats off",
    "cached.get hit, signed",
    "orm get(pk) DoesNotExist",
    "cached.get negative hit",
    "cached.get miss+fill",
    "cached.get_many(100) hit",
    "orm in_bulk(100)",
    "orm filter(owner_id) 100 rows",
    "cached.filter(owner_id) 100 rows hit",
    "save() plain",
    "save() cached",
}
PEER_ROWS = {
    "django-redis": ("django_redis", ["get(pk) hit", "get_many(100) hit", "save()"]),
    "cacheops": ("cacheops", ["get(pk) hit", "get(pk) negative hit", "in_bulk(100) hit", "save()"]),
    "cachalot": ("cachalot", ["get(pk) hit", "get(pk) negative hit", "in_bulk(100) hit", "save()"]),
}
TARGETS = {
    "cached.get hit / orm get",
    "cached.get hit / redis GET",
    "get_many(100) / in_bulk(100)",
    "save cached / save plain",
}


def run_quick(markdown: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BENCH_DATABASE")}
    done = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--quick", "--json", "--markdown", str(markdown)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_quick_run_measures_every_row(tmp_path: Path) -> None:
    markdown = tmp_path / "benchmarks.md"
    report = run_quick(markdown)

    results = {r["benchmark"]: r for r in report["results"]}
    missing = MAIN_ROWS - set(results)
    assert not missing, f"rows not measured: {sorted(missing)}"
    for name, result in results.items():
        assert len(result["repeats"]) == REPEATS, name
        assert result["ops_per_s"] > 0, name

    not_measured = {n["process"]: n["why"] for n in report["not_measured"]}
    for peer, (module, rows) in PEER_ROWS.items():
        if importlib.util.find_spec(module) is None:
            assert "not installed" in not_measured[peer]
            continue
        assert peer not in not_measured, not_measured.get(peer)
        for row in rows:
            assert f"{peer}: {row}" in results, f"{peer}: {row}"
            assert results[f"{peer}: {row}"]["process"].startswith(peer)

    stampede = report["stampede"]
    assert "error" not in stampede, stampede.get("error")
    contenders = {s["contender"] for s in stampede["results"]}
    assert contenders == {"plain cache-aside", "Model.cached"}
    assert all(s["all_served"] for s in stampede["results"])

    statuses = {r["ratio"]: r["status"] for r in report["ratios"]}
    assert set(statuses) >= TARGETS
    assert any(label.startswith("stampede, Model.cached") for label in statuses)
    for label in TARGETS:
        assert statuses[label].startswith(("PASS", "MISS", "n/a")), (label, statuses[label])

    text = markdown.read_text()
    assert text.startswith("| environment | |")
    assert "| cached.get hit | main |" in text
    assert "| ratio | median | min-max | target | status |" in text
