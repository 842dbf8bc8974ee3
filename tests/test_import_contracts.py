"""The import rules of ``pyproject.toml`` (``[tool.importlinter]``), checked by import-linter on every run.

The roles depend on the shared event core and helpers, never on each other;
the tests and the benchmarks share a harness that imports neither, and the
service imports none of them. A violation fails the suite, and so CI,
instead of waiting for a reviewer.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from testing.processes import REPOSITORY

PACKAGES = ("aa_site", "auth_providers", "benchmarks", "common", "connector", "deployment", "events",
            "interceptor", "testing", "tests")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "COLUMNS": "400"},  # no wrapped lines
    )


def test_the_repository_keeps_every_import_contract() -> None:
    result = lint_imports(REPOSITORY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "14 kept, 0 broken" in result.stdout, result.stdout


def assert_breaks(root: Path, package: str, imported: str, contract: str) -> None:
    """In a copy of the tree under ``root``, a module ``shortcut`` of ``package`` (dotted) importing module
    ``imported`` fails the check, which names ``contract`` and the import."""
    for copied in PACKAGES:
        shutil.copytree(REPOSITORY / copied, root / copied,
                        ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    shutil.copy(REPOSITORY / "pyproject.toml", root / "pyproject.toml")
    parent, name = imported.rsplit(".", 1)
    (root / package.replace(".", "/") / "shortcut.py").write_text(f"from {parent} import {name}  # noqa: F401\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert f"{contract} BROKEN" in result.stdout, result.stdout
    assert f"{package}.shortcut -> {imported}" in result.stdout, result.stdout


def test_an_interceptor_module_importing_the_connector_breaks_a_contract(tmp_path: Path) -> None:
    """The contracts are not vacuous: one forbidden import in a copy of the tree fails the check, naming it."""
    assert_breaks(tmp_path, "interceptor", "connector.tokens",
                  "The connector and the interceptor do not import each other")


def test_a_harness_module_importing_a_benchmark_breaks_a_contract(tmp_path: Path) -> None:
    """What tests and benchmarks share stays below both of them."""
    assert_breaks(tmp_path, "testing", "benchmarks.faults",
                  "The shared test harness imports neither tests nor benchmarks")


def test_the_http_half_importing_the_desktop_half_breaks_a_contract(tmp_path: Path) -> None:
    """The connector's two halves meet only at what sits below both."""
    assert_breaks(tmp_path, "connector.http", "connector.desktops.fanout",
                  "The connector's two halves (desktop connections, HTTP API) do not import each other")


def test_a_lower_desktop_layer_importing_a_transport_breaks_a_contract(tmp_path: Path) -> None:
    """The Engine.IO session layer sits below the transports that use it."""
    assert_breaks(tmp_path, "connector.desktops.engineio", "connector.desktops.polling.waiting",
                  "Desktop transports above the shared consumer above the fan-out")
