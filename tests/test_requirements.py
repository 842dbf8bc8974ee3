"""requirements.txt pins what the service runs, and only that.

The image installs requirements.txt and nothing else (Dockerfile), so a pin
there is a package every instance carries. Computed from the installed
distributions' metadata (no network): the distributions the service's code
imports, with those its settings and server load by name, are the roots
(requirements.txt's "Direct:" list); they and everything they require, by
their markers and extras, are what requirements.txt must pin, no more.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from django.conf import settings
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPOSITORY = Path(__file__).resolve().parent.parent
DOTTED_NAME = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+$")
# What the image copies (Dockerfile COPY lines): the packages and manage.py.
SERVICE_PACKAGES = ("aa_site", "auth_providers", "common", "connector", "deployment", "events", "interceptor")
SERVICE_FILES = ("manage.py",)
# Distributions the service uses without an import statement naming them.
LOADED_BY_NAME = {
    "uvloop": "the image's server's event loop (aa_site/serve_uvicorn.py, loop='uvloop')",
    "httptools": "the image's server's HTTP parser (uvicorn's httptools protocol)",
    "websockets": "the image's server's WebSocket library (uvicorn's websockets protocol)",
    "hiredis": "redis-py's C reply parser, which redis-py uses by itself once installed",
    "psycopg[binary]": "Django's PostgreSQL backend, for DATABASE_URL=postgres://...",
}


def pinned() -> dict[str, str]:
    """requirements.txt's pins: canonical name -> version."""
    pins = {}
    for line in (REPOSITORY / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.txt: {line!r} is not pinned"
            pins[canonicalize_name(name)] = version
    return pins


def direct_list() -> set[str]:
    """The names requirements.txt's header comment lists after "Direct:"."""
    header = []
    for line in (REPOSITORY / "requirements.txt").read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("# "))
    text = " ".join(header)
    listed = text.split("Direct:", 1)[1].split(";", 1)[0]
    return {_requirement_key(name) for name in listed.split()}


def _requirement_key(text: str) -> str:
    requirement = Requirement(text)
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    return canonicalize_name(requirement.name) + extras


def service_sources() -> Iterator[Path]:
    for package in SERVICE_PACKAGES:
        yield from sorted((REPOSITORY / package).rglob("*.py"))
    for name in SERVICE_FILES:
        yield REPOSITORY / name


def imports(source: Path) -> Iterator[tuple[str, ...]]:
    """Each name a file imports, at the top or inside a function, as the modules it may be: ``from a import b``
    is module ``a.b`` when ``b`` is a submodule, else a name in module ``a``."""
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import):
            yield from ((alias.name,) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield from ((f"{node.module}.{alias.name}", node.module) for alias in node.names)


def named_modules(source: Path) -> Iterator[tuple[str, ...]]:
    """Dotted names in a file's strings (docstrings aside) that may be a module or a name in one, as the
    settings and the logging configuration name middleware, backends and formatters."""
    tree = ast.parse(source.read_text(), filename=str(source))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if DOTTED_NAME.match(node.value):
                yield node.value, node.value.rsplit(".", 1)[0]


class Owners:
    """Which installed distribution holds a module, from the distributions' file lists."""

    def __init__(self) -> None:
        self.by_file: dict[str, str] = {}
        for distribution in importlib.metadata.distributions():
            name = canonicalize_name(distribution.metadata["Name"])
            for file in distribution.files or ():
                path = file.as_posix()
                self.by_file[path] = name
                if path.endswith((".so", ".pyd")):
                    # An extension module: "orjson/orjson.cpython-311-x86_64-linux-gnu.so" is module orjson.orjson.
                    directory, _, filename = path.rpartition("/")
                    self.by_file[f"{directory}/{filename.split('.')[0]}.py".lstrip("/")] = name

    def of(self, module: str) -> str | None:
        """The distribution holding ``module`` (a module file or a package's ``__init__``), if any does."""
        path = module.replace(".", "/")
        return self.by_file.get(f"{path}/__init__.py") or self.by_file.get(f"{path}.py")


def is_ours_or_standard(module: str) -> bool:
    top = module.split(".")[0]
    return top in SERVICE_PACKAGES or top in sys.stdlib_module_names or top == "__future__"


def third_party_imports() -> Iterator[tuple[str, tuple[str, ...], bool]]:
    """(where, the modules it may be, whether it must resolve) for every third-party name the service imports,
    names as a module in a string, or installs as an app."""
    for source in service_sources():
        where = source.relative_to(REPOSITORY).as_posix()
        for candidates in imports(source):
            if not is_ours_or_standard(candidates[0]):
                yield where, candidates, True
        for candidates in named_modules(source):
            if not is_ours_or_standard(candidates[0]):
                yield where, candidates, False
    for app in settings.INSTALLED_APPS:
        if not is_ours_or_standard(app):
            yield "INSTALLED_APPS", (app, app.rsplit(".", 1)[0]), True


def imported_distributions() -> dict[str, set[str]]:
    """Distribution -> where the service imports it (a module no installed distribution holds is named as such)."""
    owners = Owners()
    found: dict[str, set[str]] = {}
    for where, candidates, must_resolve in third_party_imports():
        owner = next((owner for module in candidates if (owner := owners.of(module))), None)
        if owner or must_resolve:
            found.setdefault(owner or f"no installed distribution holds {candidates[-1]}", set()).add(where)
    return found


def closure(roots: Iterable[str]) -> set[str]:
    """``roots`` (names with extras) and every distribution they require on this interpreter."""
    seen: set[str] = set()
    waiting = [Requirement(root) for root in roots]
    visited: set[tuple[str, frozenset[str]]] = set()
    while waiting:
        requirement = waiting.pop()
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in visited:
            continue
        visited.add(key)
        seen.add(name)
        for text in importlib.metadata.requires(name) or ():
            required = Requirement(text)
            if required.marker is None or any(
                required.marker.evaluate({"extra": extra}) for extra in ("", *requirement.extras)
            ):
                waiting.append(required)
    return seen


def roots() -> set[str]:
    return set(imported_distributions()) | {_requirement_key(name) for name in LOADED_BY_NAME}


def test_the_service_imports_only_pinned_distributions() -> None:
    """Every distribution the service's code imports (or its settings name) is pinned, and installed."""
    pins = pinned()
    unpinned = {name: sorted(where) for name, where in imported_distributions().items() if name not in pins}
    assert not unpinned, f"imported by the service but not pinned in requirements.txt: {unpinned}"


def test_requirements_pin_exactly_what_the_service_runs() -> None:
    """No pin the service does not need; every distribution it needs pinned (none left to pip's choice)."""
    needed = closure(roots())
    pins = pinned()
    unneeded = sorted(set(pins) - needed)
    assert not unneeded, f"pinned in requirements.txt but neither used by the service nor required by it: {unneeded}"
    unpinned = sorted(needed - set(pins))
    assert not unpinned, f"needed by the service but not pinned in requirements.txt: {unpinned}"


def test_the_pins_are_what_is_installed() -> None:
    """The closure above is computed from installed metadata: it holds for the pinned versions only."""
    pins = pinned()
    differ = {name: (version, importlib.metadata.version(name)) for name, version in pins.items()
              if importlib.metadata.version(name) != version}
    assert not differ, f"pinned, installed: {differ}"


def test_the_header_lists_the_direct_dependencies() -> None:
    """requirements.txt's "Direct:" comment names the roots: what the service imports or loads by name."""
    listed, direct = direct_list(), roots()
    assert listed == direct, f"listed only: {sorted(listed - direct)}; direct, not listed: {sorted(direct - listed)}"


def test_the_closure_follows_extras_and_markers_and_namespace_packages_resolve() -> None:
    """The checks are not vacuous: daphne needs Twisted's tls extra (pyOpenSSL) and autobahn (msgpack), never
    pytest; a module in Google's namespace package is its own distribution's."""
    needed = closure(["daphne"])
    assert {"twisted", "pyopenssl", "autobahn", "msgpack"} <= needed
    assert "pytest" not in needed
    assert Owners().of("google.cloud.dialogflow_v2") == "google-cloud-dialogflow"
    assert Owners().of("google.cloud") is None
