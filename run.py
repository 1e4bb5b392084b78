#!/usr/bin/env python3
"""One entry point for development: ``python3 run.py <command> [args]``.

Each command first makes sure ``.venv/`` exists and has the project installed with its dev extras
(re-installing when ``pyproject.toml`` changed), so on a fresh clone it is the only thing to run.

    demo    migrate, seed and run the example project's demo (SQLite + embedded Redis by default)
    serve   migrate, seed and serve the example project on http://127.0.0.1:8000/
    load    migrate, seed, then the example's pages under HTTP load, cache on and off (args may follow)
    test    the test suite (pytest arguments may follow)
    smoke   the example project's own smoke tests (example_project/tests)
    lint    ruff check, ruff format --check, mypy --strict
    docs    build the documentation site into build/site/ (mkdocs build --strict)
    bench   the benchmark table (benchmarks/run.py; arguments may follow)
    package build the sdist and wheel, install each in a fresh venv and smoke-test it there
    matrix  the suite on every supported Python x Django pair (noxfile.py; nox arguments may follow)

``DATABASE_URL`` (postgres://...) and ``REDIS_URL`` (redis://...) are used when set and reachable.
``CACHEASIDE_VENV`` names another virtualenv directory and ``CACHEASIDE_PIN`` extra requirements
installed over the dev extras (CI uses them to test e.g. ``CACHEASIDE_PIN='django<5'``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("CACHEASIDE_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
EXAMPLE = ROOT / "example_project"


def log(message: str) -> None:
    print(f"==> {message}", flush=True)


def run(*args: str | Path, cwd: Path = ROOT) -> None:
    completed = subprocess.run([str(a) for a in args], cwd=cwd)
    if completed.returncode:
        sys.exit(completed.returncode)


def ensure_venv() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - says so instead of failing obscurely
        sys.exit("django-cacheaside needs Python 3.11 or newer.")
    stamp = VENV / ".installed"
    pins = os.environ.get("CACHEASIDE_PIN", "").split()
    wanted = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + repr(pins).encode()
    ).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted and PYTHON.exists():
        return
    if not PYTHON.exists():
        log(f"creating a virtualenv in {VENV}")
        venv.create(VENV, with_pip=True)
    log("installing django-cacheaside with its dev extras (pip install -e '.[dev]')")
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "--quiet", "-e", ".[dev]", *pins)
    stamp.write_text(wanted)


def manage(*args: str) -> None:
    run(PYTHON, "manage.py", *args, cwd=EXAMPLE)


def prepare_example() -> None:
    manage("migrate", "--noinput", "--verbosity", "0")
    manage("seed")


def main(argv: list[str]) -> None:
    command, rest = (argv[0], argv[1:]) if argv else ("help", [])
    if command in ("help", "-h", "--help"):
        print(__doc__)
        return
    ensure_venv()
    if command == "demo":
        prepare_example()
        manage("demo", *rest)
    elif command == "serve":
        prepare_example()
        manage("runserver", "127.0.0.1:8000", *rest)
    elif command == "load":
        prepare_example()
        manage("load", *rest)
    elif command == "test":
        run(PYTHON, "-m", "pytest", *rest)
    elif command == "smoke":
        run(PYTHON, "-m", "pytest", "-c", "pytest.ini", *rest, cwd=EXAMPLE)
    elif command == "lint":
        run(BIN / "ruff", "check", ".")
        run(BIN / "ruff", "format", "--check", ".")
        run(BIN / "mypy", "django_cacheaside", "tests")
    elif command == "docs":
        run(BIN / "mkdocs", "build", "--strict", "--site-dir", ROOT / "build" / "site", *rest)
    elif command == "bench":
        run(PYTHON, "benchmarks/run.py", *rest)
    elif command == "package":
        run(PYTHON, "tools/package_smoke.py", *rest)
    elif command == "matrix":
        run(BIN / "nox", *rest)
    else:
        sys.exit(f"unknown command {command!r}; try: python3 run.py help")


if __name__ == "__main__":
    main(sys.argv[1:])
