"""The reference pages cover the code: every setting in docs/configuration.md with its default,
every system check id in docs/checks.md. The docs' code samples run in
example_project/tests/test_docs.py, except the one that needs this suite's own tools: it runs here."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import redis

import django_cacheaside
from django_cacheaside.conf import DEFAULTS
from tests.servers import RedisServer, ServerFactory, private_redis  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PACKAGE = Path(django_cacheaside.__file__).resolve().parent
CHECK_ID = re.compile(r"cacheaside\.[EW]\d{3}")


def sections(page: Path) -> dict[str, str]:
    """``{heading: text under it}`` of the ``##`` and ``###`` headings of a Markdown page."""
    found: dict[str, str] = {}
    heading = None
    for line in page.read_text().splitlines():
        match = re.match(r"#{2,3} (.+)$", line)
        if match:
            heading = match.group(1).strip()
            found[heading] = ""
        elif heading is not None:
            found[heading] += line + "\n"
    return found


def documented_settings() -> dict[str, str]:
    """``{KEY: its section's text}`` for each key named in backticks in a heading."""
    settings: dict[str, str] = {}
    for heading, text in sections(DOCS / "configuration.md").items():
        for key in re.findall(r"`([A-Z][A-Z0-9_]*)`", heading):
            settings[key] = text
    return settings


def test_every_setting_is_documented_with_its_default() -> None:
    documented = documented_settings()
    assert sorted(set(DEFAULTS) - set(documented)) == [], "settings without a section"
    assert sorted(set(documented) - set(DEFAULTS)) == [], "sections of settings that do not exist"
    for key, default in DEFAULTS.items():
        match = re.search(r"^Default: `([^`]+)`(.*)$", documented[key], re.MULTILINE)
        assert match, f"{key}: no 'Default: `...`' line"
        literal, rest = match.groups()
        assert ast.literal_eval(literal) == default, f"{key}: documented {literal}, is {default!r}"
        if isinstance(default, int | float) and not isinstance(default, bool):
            assert re.match(r"( each)? \(.+\)\.$", rest), f"{key}: say the unit, as `5` (seconds)."


def emitted_check_ids() -> set[str]:
    """Every check id written as a string in the package's code (docstrings and comments that
    mention one are longer strings, or not strings at all)."""
    ids: set[str] = set()
    for module in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            value = node.value if isinstance(node, ast.Constant) else None
            if isinstance(value, str) and CHECK_ID.fullmatch(value):
                ids.add(value)
    return ids


def test_every_check_id_has_a_section_in_checks_md() -> None:
    emitted = emitted_check_ids()
    assert {"cacheaside.E001", "cacheaside.W001"} <= emitted  # the scan finds them at all
    documented = {h: t for h, t in sections(DOCS / "checks.md").items() if CHECK_ID.fullmatch(h)}
    assert sorted(emitted - set(documented)) == [], "check ids without a section in checks.md"
    assert sorted(set(documented) - emitted) == [], "sections of check ids the code never emits"
    for check_id, text in documented.items():
        assert text.strip(), f"{check_id}: the section is empty"


def test_the_norun_sample_of_faults_md_runs_in_this_suite(private_redis: ServerFactory) -> None:  # noqa: F811
    """docs/faults.md's sample is ``norun`` for the docs test (``tests.servers`` is this suite's):
    its test function is run here, with the fixture it names."""
    fences = re.findall(
        r'^```\{ \.python norun="[^"]+" \}\n(.*?)^```$',
        (DOCS / "faults.md").read_text(),
        re.M | re.S,
    )
    assert len(fences) == 1, "faults.md has one norun sample"
    namespace: dict[str, Any] = {}
    exec(compile(fences[0], str(DOCS / "faults.md"), "exec"), namespace)
    started: list[RedisServer] = []

    def factory(**options: Any) -> RedisServer:
        server = private_redis(**options)
        started.append(server)
        return server

    namespace["test_something"](factory)
    (server,) = started
    assert server.running and server.persistence
    client = redis.Redis.from_url(server.url)
    try:
        assert client.ping()
    finally:
        client.close()
