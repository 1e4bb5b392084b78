"""``manage.py load``: a short bounded run against the in-process server, both cache modes."""

from __future__ import annotations

import io
import re
import time
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from saas.models import Article

SMALL = ["--orgs", "3", "--users", "20", "--articles", "40"]
SHORT = ["--duration", "1", "--warmup", "0.5", "--clients", "3", "--rounds", "2"]
ROW = re.compile(
    r"cache (?P<mode>on|off)\s+\|\s+(?P<requests>[\d,]+) \|\s+(?P<errors>\d+) \|[^|]+\|"
    r"\s+(?P<rps>[\d,]+) \|\s+(?P<p50>[\d.]+) \|\s+(?P<p99>[\d.]+) \|"
    r"\s+(?P<queries>[\d.]+) \|\s+(?P<lookups>[\d.]+) \|"
)

pytestmark = pytest.mark.django_db(transaction=True)  # the server's threads read committed rows


def number(text: str) -> float:
    return float(text.replace(",", ""))


def test_load_measures_both_modes_without_errors() -> None:
    call_command("seed", *SMALL, stdout=io.StringIO())
    titles = dict(Article.objects.values_list("pk", "title"))
    out = io.StringIO()
    started = time.monotonic()
    call_command("load", *SHORT, "--requests", "100000", stdout=out)
    elapsed = time.monotonic() - started
    output = out.getvalue()
    rows = {m["mode"]: m for m in ROW.finditer(output)}
    assert set(rows) == {"on", "off"}, output
    for row in rows.values():
        assert number(row["requests"]) > 0 and number(row["rps"]) > 0, output
        assert row["errors"] == "0", output
        assert 0 < number(row["p50"]) <= number(row["p99"]), output
        assert number(row["queries"]) > 0, output  # the writes, at least
    # Cache off: no lookups at all, and more queries per request than with the cache on.
    assert number(rows["off"]["lookups"]) == 0, output
    assert number(rows["on"]["lookups"]) > 0, output
    assert number(rows["on"]["queries"]) < number(rows["off"]["queries"]), output
    # The ratios of the totals, with the range of the 2 rounds' ratios.
    assert re.search(r"on / off\s+\|[\s|]+\d+\.\d\dx \(\d+\.\d\d-\d+\.\d\d\) \|", output), output
    assert re.search(r"write\s+\|\s+\d+ \|", output), output
    assert elapsed < 20  # two modes of 0.5 + 1 s, bounded by --duration
    # The writes saved each article's own title back: the data is as it was.
    assert dict(Article.objects.values_list("pk", "title")) == titles


def test_load_stops_at_the_request_budget() -> None:
    call_command("seed", *SMALL, stdout=io.StringIO())
    out = io.StringIO()
    call_command(
        "load",
        *SHORT,
        "--duration",
        "30",
        "--requests",
        "50",
        "--warmup",
        "0",
        "--modes",
        "off",
        stdout=out,
    )
    rows = list(ROW.finditer(out.getvalue()))
    assert [r["mode"] for r in rows] == ["off"]
    assert number(rows[0]["requests"]) <= 50


def test_load_fails_on_error_answers(settings: Any) -> None:
    call_command("seed", *SMALL, stdout=io.StringIO())
    settings.ALLOWED_HOSTS = ["elsewhere.example"]  # every request is a 400 (DEBUG is off)
    out = io.StringIO()
    with pytest.raises(CommandError, match="failed requests"):
        call_command("load", *SHORT, "--duration", "0.5", "--warmup", "0", stdout=out, stderr=out)
    assert "HTTP 400" in out.getvalue()
    rows = {m["mode"]: m for m in ROW.finditer(out.getvalue())}
    assert all(number(r["errors"]) > 0 for r in rows.values()), out.getvalue()
