"""The Docker image's contents, checked without a Docker engine.

No engine runs on the test machines, so these tests rebuild what the image
would hold from the Dockerfile's own ``COPY`` lines (honouring
``.dockerignore``) in a temporary directory, start the server from there the way
the image's ``CMD`` does, and check both roles serve. A module the image
forgets to copy, or a runtime import of a test-only package, fails here.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from testing import processes
from testing.image import image_tree, refuse_test_only_packages

REPOSITORY = processes.REPOSITORY
DOCKERFILE = (REPOSITORY / "Dockerfile").read_text()


def test_the_image_installs_runtime_requirements_only() -> None:
    """The image installs requirements.txt, which names no test-only package."""
    assert "pip install --no-cache-dir -r requirements.txt" in DOCKERFILE
    runtime = (REPOSITORY / "requirements.txt").read_text().lower()
    for package in ("pytest", "pytest-django", "pytest-asyncio", "aiohttp", "playwright"):
        assert not re.search(rf"^{package}==", runtime, flags=re.MULTILINE), package


def test_the_image_runs_its_server_on_port_as_a_non_root_user() -> None:
    """CMD serves aa_site.asgi:application on $PORT through the module the test servers run; USER is not root."""
    module = re.escape(processes.SERVE_MODULES[processes.IMAGE_SERVER])
    assert re.search(
        rf'^CMD .*python -m {module} .*--port \\"\$PORT\\".* aa_site\.asgi:application', DOCKERFILE, re.MULTILINE
    )
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE, flags=re.MULTILINE)
    assert users and not users[-1].startswith(("root", "0:", "0"))


def test_the_image_sets_what_the_benchmarks_run_its_server_with() -> None:
    """``processes.IMAGE_ENV`` (the benchmarks' settings for the image's server) is what the image's ENV sets."""
    for name, value in processes.IMAGE_ENV.items():
        assert re.search(rf"^ENV (?:.*\\\n)*?\s*{name}={re.escape(value)}\b", DOCKERFILE, re.MULTILINE), name


@pytest.mark.parametrize(("role", "path", "status"), [("connector", "/status", 200), ("interceptor", "/status", 404)])
def test_each_role_starts_from_the_image_contents(tmp_path: Path, redis_server, role: str, path: str, status: int) -> None:
    """The image's server started from only the copied files serves the role, without importing any test-only package."""
    tree = image_tree(tmp_path / "app")
    assert not any((tree / package).exists() for package in ("tests", "testing", "benchmarks"))
    guard = refuse_test_only_packages(tmp_path / "guard")
    with processes.service_server(
        role=role, redis=redis_server, cwd=tree, PYTHONPATH=f"{guard}:{tree}"
    ) as server:
        response = httpx.get(server.http_url + path, timeout=10)
        assert response.status_code == status
        assert "Traceback" not in server.log()


def test_the_image_has_the_operators_commands(tmp_path: Path) -> None:
    """Operators run the deployment tooling in the image: ``manage.py help`` there lists its commands."""
    tree = image_tree(tmp_path / "app")
    result = subprocess.run(
        [sys.executable, "manage.py", "help"], cwd=tree, capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "aa_site.settings", "PYTHONPATH": str(tree)},
    )
    assert result.returncode == 0, result.stderr
    for command in ("deploy_plan", "configure_conversation_profile", "create_push_subscriptions", "ensure_superuser"):
        assert f"    {command}\n" in result.stdout, command


def test_the_image_prints_a_deployment_plan(tmp_path: Path) -> None:
    """``deploy_plan`` run in the image renders the Cloud Run service templates it carries (deploy/*.yaml)."""
    tree = image_tree(tmp_path / "app")
    result = subprocess.run(
        [sys.executable, "manage.py", "deploy_plan", "--project", "acme-cx", "--region", "us-central1",
         "--auth-option", "GenesysCloud", "--env", "GENESYS_CLOUD_REGION=usw2.pure.cloud",
         "--allowed-origins", "https://apps.usw2.pure.cloud", "--conversation-profile", "CP-1"],
        cwd=tree, capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "aa_site.settings", "PYTHONPATH": str(tree)},
    )
    assert result.returncode == 0, result.stderr
    assert "cat > ui-connector.service.yaml <<EOF" in result.stdout
    assert "cat > cloud-pubsub-interceptor.service.yaml <<EOF" in result.stdout


def test_the_image_holds_the_bytecode_of_every_module_it_copies(tmp_path: Path) -> None:
    """The image runs with PYTHONDONTWRITEBYTECODE and copies no __pycache__: without bytecode compiled when it is
    built, every start would compile the service's modules from source again (cold starts on Cloud Run)."""
    tree = image_tree(tmp_path / "app")
    modules = [path for path in tree.rglob("*.py") if path.parent != tree]
    assert modules
    missing = [str(path.relative_to(tree)) for path in modules
               if not Path(importlib.util.cache_from_source(str(path))).is_file()]
    assert missing == []
