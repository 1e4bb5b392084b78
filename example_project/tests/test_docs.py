"""Every code sample of the documentation runs here, so that the docs cannot drift from the code.

The convention (docs/contributing.md says the same for people writing pages):

- Every fenced block of ``README.md`` and ``docs/*.md`` is collected: one test per page.
- `` ```python `` (or ``py``, ``pycon``) blocks run in the order of the page, in one namespace per
  page, inside a test with database access (``django_db(transaction=True)``, so after-commit
  invalidation really runs), under the test's own ``KEY_PREFIX`` (``conftest.py``), on a database
  seeded like the demo's (``manage.py seed``, smaller: 3 organisations, the first one "acme", and the
  superuser "admin"). The namespace starts empty: a sample imports what it uses, so that it can be
  pasted into ``python example_project/manage.py shell``. Samples check what they claim with
  ``assert``.
- A block with ``>>>`` lines is a doctest: its output must match (``...`` matches anything).
- A block whose first line is ``# settings.py`` is a settings fragment. It runs in a namespace
  holding ``os``, ``BASE_DIR`` and the example's ``INSTALLED_APPS``, with ``$REDIS_URL`` set to the
  test's Redis; ``INSTALLED_APPS`` must hold ``django_cacheaside``; ``CACHES`` and ``CACHEASIDE``, if
  it sets them, must pass the app's system checks with no error or warning and every ``CACHEASIDE``
  key must read without ``ImproperlyConfigured``. They are then in force for the rest of the page
  (``KEY_PREFIX`` excepted: the test's own is kept), and a read through ``Organisation.cached`` must
  fill and then hit Redis under them.
- A block whose first line is ``# models.py`` is a models module of its own: it runs inside
  ``isolate_apps()`` (its app label is "saas", from ``__name__``) with ``models`` (``django.db.models``) defined, so that its classes do not
  clash with the real ones; it must define a model, and the app's system checks must find nothing
  wrong with its managers. Its names do not reach the page's namespace, and its models have no
  table: later blocks use the example's models.
- A block whose first line is ``# apps.py`` must define an ``AppConfig``, whose ``ready()`` is called
  with the example's own ``register()`` calls undone (``User.cached``), and everything put back after.
- A block that truly cannot run here carries ``norun="why"`` in its fence, written
  `` ```{ .python norun="needs Redis Cluster" } ``: it is compiled, not run. There should be (nearly)
  none. Any other attribute on a python block is an error, so a misspelt marker fails too.
- Every other block is text (``sh``, ``toml``, output...) and is not run, but wherever a block that
  is not python, or an inline code span of the prose, names ``python3 run.py CMD`` or
  ``manage.py CMD``, CMD must be a command of ``run.py`` or a management command of the example
  project (an upper-case CMD is a placeholder). In ``sh``/``console`` blocks, the Python files of
  the repository they name (``tests/...py``, ``benchmarks/...py``, ``file.py::test_name``) must
  exist.
- Docstring examples (``>>>``) of the modules the API reference (``docs/reference.md``) renders run
  too, with the example's models in scope.

A failing sample fails its page's test, with the page and line of the sample in the traceback
(tracebacks point into the Markdown file). The tests at the end check that the runner does fail.
"""

from __future__ import annotations

import ast
import contextlib
import doctest
import importlib
import io
import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import pytest
from django.apps import AppConfig
from django.apps import apps as global_apps
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core import checks
from django.core.management import call_command, get_commands
from django.db import models
from django.test.utils import isolate_apps, override_settings

from django_cacheaside import invalidate, registry, signals
from django_cacheaside.checks import check_managers
from django_cacheaside.conf import DEFAULTS, app_settings
from django_cacheaside.stats import counters
from saas.factories import ArticleFactory, OrganisationFactory, ProfileFactory, UserFactory
from saas.models import Article, Dashboard, Organisation, Profile

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON = {"python", "py", "pycon"}
SHELL = {"sh", "bash", "shell", "console", "shell-session"}
# Options pymdownx.highlight understands on a fence; `norun` is this runner's own.
FENCE_OPTIONS = {"title", "linenums", "hl_lines", "norun"}
OPENING = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
RUN_PY = re.compile(r"(?:python3?|\.venv/bin/python|\$PYTHON)\s+run\.py\s+(?P<cmd>[\w-]+)")
MANAGE_PY = re.compile(r"manage\.py\s+(?P<cmd>[\w-]+)")
REPO_PATH = re.compile(
    r"(?<![\w/.-])(?:\./)?(?P<path>(?:tests|benchmarks|example_project|docs|django_cacheaside)"
    r"/[\w./-]*\.py)\b(?:::(?P<test>\w+))?"
)
SEED = ("--orgs", "3", "--users", "12", "--articles", "30")
EXAMPLE_MODELS = {
    "Article": Article,
    "Dashboard": Dashboard,
    "Organisation": Organisation,
    "Profile": Profile,
    "User": User,
}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, counted from 1
    lang: str
    options: dict[str, str]
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page}:{self.line}"

    @property
    def first_line(self) -> str:
        return self.code.lstrip("\n").split("\n", 1)[0].strip()

    @property
    def is_doctest(self) -> bool:
        return any(line.lstrip().startswith(">>>") for line in self.code.splitlines())


def parse_info(info: str) -> tuple[str, dict[str, str]]:
    """``python`` / ``python title="x"`` / ``{ .python norun="why" }`` -> (language, options)."""
    info = info.strip()
    braces = info.startswith("{") and info.endswith("}")
    words = shlex.split(info[1:-1] if braces else info)
    lang = ""
    options: dict[str, str] = {}
    for word in words:
        if braces and word.startswith("."):
            lang = lang or word[1:]
        elif "=" in word:
            key, _, value = word.partition("=")
            options[key] = value
        elif not braces and not lang:
            lang = word
        else:
            options[word] = ""
    return lang.lower(), options


def parse_blocks(page: Path, text: str | None = None) -> list[Block]:
    """The fenced blocks of a Markdown page, in order (indented fences in lists included)."""
    lines = (page.read_text() if text is None else text).splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = OPENING.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            body.append(lines[j][indent:] if not lines[j][:indent].strip() else lines[j])
            j += 1
        if j == len(lines):
            raise AssertionError(f"{page.name}:{i + 1}: this fence is never closed")
        lang, options = parse_info(opening["info"])
        found.append(Block(page, i + 1, lang, options, "\n".join(body) + "\n"))
        i = j + 1
    return found


def inline_code(page: Path, text: str | None = None) -> list[tuple[int, str]]:
    """``(line, code)`` of the inline code spans of a page's prose (fenced blocks left out)."""
    spans: list[tuple[int, str]] = []
    closing: re.Pattern[str] | None = None
    for number, line in enumerate((page.read_text() if text is None else text).splitlines(), 1):
        if closing is not None:
            if closing.match(line):
                closing = None
            continue
        opening = OPENING.match(line)
        if opening:
            fence = opening["fence"]
            closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
            continue
        spans += [(number, code) for code in re.findall(r"`([^`]+)`", line)]
    return spans


def run_py_commands() -> set[str]:
    """The commands ``run.py`` dispatches on (``command == "x"`` / ``command in (...)``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse((ROOT / "run.py").read_text())):
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name):
            if node.left.id != "command":
                continue
            for value in node.comparators:
                items = value.elts if isinstance(value, ast.Tuple) else [value]
                names.update(
                    item.value
                    for item in items
                    if isinstance(item, ast.Constant) and isinstance(item.value, str)
                )
    return names


def seed() -> None:
    """The demo's data, as a fresh ``manage.py seed`` makes it: the first organisation is "Acme"."""
    for factory in (OrganisationFactory, UserFactory, ProfileFactory, ArticleFactory):
        factory.reset_sequence(0)
    call_command("seed", *SEED, stdout=io.StringIO())


@contextlib.contextmanager
def prometheus_registry_restored() -> Iterator[None]:
    """Collectors a sample registers with prometheus_client's default registry are removed after."""
    try:
        from prometheus_client import REGISTRY
    except ImportError:
        yield
        return
    before = set(REGISTRY._collector_to_names)
    try:
        yield
    finally:
        for collector in set(REGISTRY._collector_to_names) - before:
            REGISTRY.unregister(collector)


@contextlib.contextmanager
def registrations_undone() -> Iterator[None]:
    """For an ``# apps.py`` block: the example's ``register()`` calls (models of other apps, i.e.
    ``auth.User``) are undone, so that the block's ``ready()`` registers them as in a new project;
    afterwards every cached model has its own manager back and nothing else stays registered."""
    saved = dict(registry._managers)
    foreign = {m: mgr for m, mgr in saved.items() if m._meta.app_label != "saas"}
    for model, manager in foreign.items():
        assert manager.name is not None
        delattr(model, manager.name)
        del registry._managers[model]
    registry._families.clear()
    try:
        yield
    finally:
        for model, manager in list(registry._managers.items()):
            if saved.get(model) is not manager and manager.name in vars(model):
                assert manager.name is not None
                delattr(model, manager.name)
        for model, manager in foreign.items():
            assert manager.name is not None
            setattr(model, manager.name, manager)
        registry._managers.clear()
        registry._managers.update(saved)
        registry._families.clear()


def problems(messages: list[checks.CheckMessage]) -> list[str]:
    return [str(m) for m in messages if m.level >= checks.WARNING]


@dataclass
class PageRunner:
    settings: Any  # pytest-django's settings fixture
    monkeypatch: pytest.MonkeyPatch
    prefix: str  # the test's KEY_PREFIX
    namespace: dict[str, Any] = field(default_factory=lambda: {"__name__": "docs_sample"})
    seeded: bool = False
    ran: int = 0

    def run_page(self, page: Path, text: str | None = None) -> int:
        """Run or check every block of ``page``; answers how many python blocks ran."""
        with prometheus_registry_restored():
            for block in parse_blocks(page, text):
                if block.lang in PYTHON:
                    self.run_python(block)
                else:
                    check_text_block(block)
        for line, span in inline_code(page, text):
            check_text_block(Block(page, line, "text", {}, span))
        return self.ran

    # -- python ------------------------------------------------------------------------------------

    def run_python(self, block: Block) -> None:
        unknown = set(block.options) - FENCE_OPTIONS
        assert not unknown, f"{block.where}: unknown fence option(s) {sorted(unknown)}"
        if "norun" in block.options:
            reason = block.options["norun"].strip()
            assert len(reason.split()) >= 3, (
                f'{block.where}: norun needs its reason in a few words: norun="needs ..."'
            )
            compile(block.code, block.where, "exec")  # still valid Python
            return
        if not self.seeded:
            seed()
            self.seeded = True
        kind = block.first_line
        try:
            if kind == "# settings.py":
                self.run_settings(block)
            elif kind == "# models.py":
                self.run_models(block)
            elif kind == "# apps.py" or kind.startswith("# apps.py "):
                self.run_apps(block)
            elif block.is_doctest or block.lang == "pycon":
                self.run_doctest(block, self.namespace)
            else:
                self.execute(block, self.namespace)
        except Exception as exc:
            raise AssertionError(
                f"{block.where}: the sample failed: {type(exc).__name__}: {exc}"
            ) from exc
        self.ran += 1

    @staticmethod
    def execute(block: Block, namespace: dict[str, Any]) -> None:
        # Blank lines in front, so that tracebacks name the page's own line numbers.
        code = compile("\n" * block.line + block.code, str(block.page), "exec")
        exec(code, namespace)

    @staticmethod
    def run_doctest(block: Block, namespace: dict[str, Any]) -> None:
        test = doctest.DocTestParser().get_doctest(
            block.code, namespace, block.where, str(block.page), block.line
        )
        report = io.StringIO()
        runner = doctest.DocTestRunner(
            optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
        )
        runner.run(test, out=report.write, clear_globs=False)
        assert test.examples, f"{block.where}: no example found"
        assert not runner.failures, report.getvalue()

    def run_settings(self, block: Block) -> None:
        self.monkeypatch.setenv("REDIS_URL", django_settings.REDIS_URL)
        namespace: dict[str, Any] = {
            "__name__": "settings",
            "os": os,
            "BASE_DIR": django_settings.BASE_DIR,
            "INSTALLED_APPS": list(django_settings.INSTALLED_APPS),
        }
        self.execute(block, namespace)
        apps = namespace["INSTALLED_APPS"]
        assert "django_cacheaside" in apps, "INSTALLED_APPS must hold 'django_cacheaside'"
        given = {name: namespace[name] for name in ("CACHES", "CACHEASIDE") if name in namespace}
        if "CACHEASIDE" in given:
            assert isinstance(given["CACHEASIDE"], dict), "CACHEASIDE must be a dict"
        with override_settings(**given):
            found = problems(checks.run_checks(tags=["cacheaside"]))
            assert not found, f"the app's system checks: {found}"
            for name in DEFAULTS:
                getattr(app_settings, name)  # ImproperlyConfigured for what no check sees
        if "CACHES" in given:
            self.settings.CACHES = given["CACHES"]
        if "CACHEASIDE" in given:
            self.settings.CACHEASIDE = {**given["CACHEASIDE"], "KEY_PREFIX": self.prefix}
        self.read_through_the_cache()

    @staticmethod
    def read_through_the_cache() -> None:
        """A miss that fills, then a hit, under the settings now in force, and no Redis error."""
        seen: list[str] = []

        def record(sender: Any, signal: Any, **kwargs: Any) -> None:
            if signal is signals.cache_fill:
                seen.append("fill" if kwargs["written"] else "fill refused")
            elif signal is signals.cache_error:
                seen.append(f"error in {kwargs['operation']}: {kwargs['error']!r}")
            else:
                seen.append("hit" if signal is signals.cache_hit else "miss")

        watched = (signals.cache_hit, signals.cache_miss, signals.cache_fill, signals.cache_error)
        org = Organisation.objects.order_by("pk").first()
        assert org is not None
        invalidate(org)
        for signal in watched:
            signal.connect(record, weak=False, dispatch_uid="test_docs")
        try:
            Organisation.cached.get(pk=org.pk)
            Organisation.cached.get(pk=org.pk)
        finally:
            for signal in watched:
                signal.disconnect(dispatch_uid="test_docs")
        assert seen == ["miss", "fill", "hit"], f"a fill and a hit under these settings: {seen}"

    def run_models(self, block: Block) -> None:
        namespace: dict[str, Any] = {"__name__": "saas.models", "models": models}
        # A registry of its own, with no app installed: isolate_apps("saas") would run
        # SaasConfig.ready() again (a second register(User)). The app label still comes from
        # __name__ through the global registry: "saas". The sample's models leave the app's
        # registry when the block is done.
        with (
            isolate_apps(),
            mock.patch.dict(registry._managers),
            mock.patch.dict(registry._families),
        ):
            self.execute(block, namespace)
            defined = [
                value
                for value in namespace.values()
                if isinstance(value, type)
                and issubclass(value, models.Model)
                and value._meta.apps is not global_apps
            ]
            assert defined, "a # models.py block defines at least one model"
            found = problems([m for m in check_managers() if getattr(m, "obj", None) in defined])
            assert not found, f"the app's system checks: {found}"
            for model in defined:
                manager = registry.manager_for(model)
                if manager is not None and not model._meta.abstract:
                    assert re.fullmatch(r"[0-9a-f]{8}", manager.schema)
        registry._families.clear()

    def run_apps(self, block: Block) -> None:
        namespace: dict[str, Any] = {"__name__": "saas.apps"}
        self.execute(block, namespace)
        configs = [
            value
            for value in namespace.values()
            if isinstance(value, type) and issubclass(value, AppConfig) and value is not AppConfig
        ]
        assert configs, "an # apps.py block defines an AppConfig"
        with registrations_undone():
            for config in configs:
                config("saas", importlib.import_module("saas")).ready()


# -- blocks that are not python ----------------------------------------------------------------------


def check_text_block(block: Block) -> None:
    """Commands named in a block that is not python exist; in shell blocks, paths exist too."""
    text = re.sub(r"\\\n\s*", " ", block.code)  # continuation lines
    known = run_py_commands()
    for match in RUN_PY.finditer(text):
        if match["cmd"].isupper():
            continue  # a placeholder: `python3 run.py CMD`
        assert match["cmd"] in known, (
            f"{block.where}: `python3 run.py {match['cmd']}` is not a run.py command "
            f"({', '.join(sorted(known))})"
        )
    for match in MANAGE_PY.finditer(text):
        if match["cmd"].isupper():
            continue
        assert match["cmd"] in get_commands(), (
            f"{block.where}: `manage.py {match['cmd']}` is not a management command"
        )
    if block.lang not in SHELL:
        return
    for match in REPO_PATH.finditer(text):
        path = ROOT / match["path"]
        assert path.exists(), f"{block.where}: {match['path']} does not exist"
        if match["test"]:
            assert re.search(rf"def {match['test']}\b", path.read_text()), (
                f"{block.where}: {match['path']} has no {match['test']}"
            )


# -- the pages -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_samples(
    page: Path, settings: Any, monkeypatch: pytest.MonkeyPatch, cache_prefix: str
) -> None:
    counters.buffer.take()  # earlier tests' unflushed counts would land under this prefix
    PageRunner(settings, monkeypatch, cache_prefix).run_page(page)


def reference_modules() -> list[ModuleType]:
    """The modules of the objects ``docs/reference.md`` renders (``::: dotted.path``)."""
    found: dict[str, ModuleType] = {}
    for target in re.findall(r"^::: *([\w.]+)", (ROOT / "docs/reference.md").read_text(), re.M):
        module_name, obj = target, None
        while True:
            try:
                module = importlib.import_module(module_name)
                break
            except ModuleNotFoundError:
                module_name, _, attr = module_name.rpartition(".")
                obj = attr
        value = getattr(module, obj) if obj else module
        home = importlib.import_module(getattr(value, "__module__", None) or module.__name__)
        found[module.__name__] = module
        found[home.__name__] = home
    return list(found.values())


@pytest.mark.django_db(transaction=True)
def test_docstring_examples() -> None:
    seed()
    finder = doctest.DocTestFinder(exclude_empty=True)
    ran = 0
    for module in reference_modules():
        for test in finder.find(module, globs={**vars(module), **EXAMPLE_MODELS}):
            runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
            report = io.StringIO()
            runner.run(test, out=report.write)
            assert not runner.failures, report.getvalue()
            ran += len(test.examples)
    assert ran, "the API reference renders docstring examples: some must have been found"


# -- the runner fails when it should ---------------------------------------------------------------


def test_fences_are_parsed() -> None:
    text = (
        "# Page\n\n```python\na = 1\n```\n\n- item\n\n    ```sh\n    python3 run.py test\n    ```\n\n"
        '```{ .python norun="needs Redis Cluster here" }\nb = 2\n```\n\n~~~text\nout\n~~~\n'
    )
    blocks = parse_blocks(Path("page.md"), text)
    assert [(b.lang, b.line, b.code) for b in blocks] == [
        ("python", 3, "a = 1\n"),
        ("sh", 9, "python3 run.py test\n"),
        ("python", 13, "b = 2\n"),
        ("text", 17, "out\n"),
    ]
    assert blocks[2].options == {"norun": "needs Redis Cluster here"}
    assert inline_code(Path("page.md"), "Run `a`.\n```sh\n`b`\n```\nand `c` `d`\n") == [
        (1, "a"),
        (5, "c"),
        (5, "d"),
    ]
    assert parse_info('python title="a b"') == ("python", {"title": "a b"})
    with pytest.raises(AssertionError, match="never closed"):
        parse_blocks(Path("page.md"), "```python\na = 1\n")


def test_run_py_and_manage_py_commands_are_known() -> None:
    assert {"demo", "test", "smoke", "lint", "docs"} <= run_py_commands()
    for good in ("python3 run.py smoke\n", "python manage.py cachestats --window 1h\n"):
        check_text_block(Block(Path("page.md"), 1, "sh", {}, good))
    for bad in ("python3 run.py tset\n", "python manage.py cachestat\n"):
        with pytest.raises(AssertionError, match="is not a"):
            check_text_block(Block(Path("page.md"), 1, "sh", {}, bad))
    with pytest.raises(AssertionError, match="does not exist"):
        check_text_block(Block(Path("page.md"), 1, "sh", {}, "pytest tests/test_nothing.py\n"))
    with pytest.raises(AssertionError, match="has no"):
        check_text_block(Block(Path("p.md"), 1, "sh", {}, "pytest tests/conftest.py::test_nope\n"))


BROKEN_SAMPLES = {
    "raises": ("```python\nfrom saas.models import Article\n\nArticle.cached.get(pk=-1)\n```\n"),
    "assert": "```python\nassert 1 + 1 == 3\n```\n",
    "doctest": "```python\n>>> 1 + 1\n3\n```\n",
    "unknown key": '```python\n# settings.py\nCACHEASIDE = {"TLL": 300}\n```\n',
    "bad value": '```python\n# settings.py\nCACHEASIDE = {"TTL": 0}\n```\n',
    "no app": '```python\n# settings.py\nINSTALLED_APPS = ["saas"]\n```\n',
    "bad tags": (
        "```python\n# models.py\nfrom django_cacheaside import CacheAsideManager\n\n\n"
        "class Note(models.Model):\n    cached = CacheAsideManager(tags=('orgg',))\n```\n"
    ),
    "no model": "```python\n# models.py\nx = 1\n```\n",
    "apps": (
        "```python\n# apps.py\nfrom django.apps import AppConfig\n\n\nclass Blog(AppConfig):\n"
        "    name = 'blog'\n\n    def ready(self):\n        raise RuntimeError('boom')\n```\n"
    ),
    "marker typo": '```{ .python no-run="needs Redis Cluster here" }\nb = 2\n```\n',
    "no reason": '```{ .python norun="" }\nb = 2\n```\n',
    "command": "```sh\npython3 run.py nonsense\n```\n",
    "prose command": "Run `python3 run.py nonsense` first.\n",
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", list(BROKEN_SAMPLES))
def test_a_broken_sample_fails(
    name: str, settings: Any, monkeypatch: pytest.MonkeyPatch, cache_prefix: str
) -> None:
    runner = PageRunner(settings, monkeypatch, cache_prefix)
    with pytest.raises(AssertionError):
        runner.run_page(Path("broken.md"), BROKEN_SAMPLES[name])


@pytest.mark.django_db(transaction=True)
def test_blocks_of_a_page_share_a_namespace_and_the_settings_stay(
    settings: Any, monkeypatch: pytest.MonkeyPatch, cache_prefix: str
) -> None:
    text = (
        '```python\n# settings.py\nCACHEASIDE = {"TTL": 123}\n```\n\n'
        "```python\nfrom saas.models import Article, Organisation\n\n"
        'org = Organisation.cached.get(slug="acme")\n```\n\n'
        "```python\n>>> org.slug\n'acme'\n>>> Article.cached.option(\"TTL\")\n123\n```\n\n"
        "```python\n# models.py\nclass Organisation(models.Model):\n    pass\n```\n\n"
        "```python\nassert Organisation._meta.db_table == 'saas_organisation'\n```\n"
    )
    runner = PageRunner(settings, monkeypatch, cache_prefix)
    assert runner.run_page(Path("page.md"), text) == 5
    written = settings.CACHEASIDE
    assert written == {"TTL": 123, "KEY_PREFIX": cache_prefix}
