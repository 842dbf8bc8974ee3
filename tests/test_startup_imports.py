"""What a serving process imports at start-up, per role: nothing that only the operators' commands need.

The gRPC-based Google clients (Dialogflow, Pub/Sub, Secret Manager) take a good
part of a second to import, and only ``manage.py`` commands (and a secret read
from Secret Manager) use them; daphne's Twisted a quarter of a second, and the
image serves with uvicorn; a cold start on Cloud Run pays for every module
imported before ``/readyz`` answers. Each check starts a fresh interpreter with
the role's production-like environment, sets Django up and imports the ASGI
application as the image's server does, then lists ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from testing import processes

# Loaded only by the commands and functions that call these services.
GRPC_CLIENTS = ("grpc", "google.cloud.dialogflow", "google.cloud.dialogflow_v2", "google.cloud.pubsub",
                "google.pubsub_v1", "google.cloud.secretmanager")

# daphne's server and the Twisted under it: the image serves with uvicorn (daphne stays for local runs).
DAPHNE = ("daphne.server", "daphne.cli", "twisted", "autobahn")

# The image's server module, then the application it imports (which sets Django up and runs the checks).
LIST_MODULES = ("import json, sys\nimport aa_site.serve_uvicorn, uvicorn\nimport aa_site.asgi\n"
                "print(json.dumps(sorted(sys.modules)))\n")


def started_modules(role: str, redis: processes.RedisAddress) -> set[str]:
    """The modules a process of ``role`` holds once its ASGI application is imported."""
    run = subprocess.run([sys.executable, "-c", LIST_MODULES], cwd=processes.REPOSITORY, capture_output=True,
                         text=True, timeout=120, env=processes.server_environment(role=role, redis=redis))
    assert run.returncode == 0, run.stderr
    return set(json.loads(run.stdout.splitlines()[-1]))


def _under(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(name for name in modules if any(name == p or name.startswith(p + ".") for p in packages))


@pytest.mark.parametrize("role", ["connector", "interceptor"])
def test_start_up_imports_no_grpc_client(redis_server, role: str) -> None:
    assert _under(started_modules(role, redis_server), GRPC_CLIENTS) == []


@pytest.mark.parametrize("role", ["connector", "interceptor"])
def test_the_images_server_imports_no_daphne_or_twisted(redis_server, role: str) -> None:
    assert _under(started_modules(role, redis_server), DAPHNE) == []


# What each role loads of the other's package: the app (installed for every role) and its system checks; the
# interceptor also the JWT secret's module, which its /readyz names (and skips), and the client address
# function django-axes' settings name (AXES_CLIENT_IP_CALLABLE), light modules both.
OTHER_ROLE = {
    "connector": ("interceptor", {"interceptor", "interceptor.apps", "interceptor.checks"}),
    "interceptor": ("connector", {"connector", "connector.apps", "connector.checks", "connector.jwt_secret",
                                  "connector.ratelimit"}),
}


@pytest.mark.parametrize("role", ["connector", "interceptor"])
def test_a_role_imports_no_more_of_the_other_role_than_its_app_and_checks(redis_server, role: str) -> None:
    package, allowed = OTHER_ROLE[role]
    assert set(_under(started_modules(role, redis_server), (package,))) - allowed == set()
