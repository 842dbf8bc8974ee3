"""Settings as a fresh process reads them from an environment: their values and the variables reported as bad."""

from __future__ import annotations

import os
import subprocess
import sys

from testing.processes import REPOSITORY


def read(names: tuple[str, ...], *, unset: tuple[str, ...] = (), **variables: str) -> str:
    """``repr(([values of names], [variables aa_site.settings reports as bad]))`` with only ``variables`` of
    ``names`` and ``unset`` (variables that are no setting's attribute, such as a setting's other name) set
    (and a project id)."""
    environment = {key: value for key, value in os.environ.items() if key not in names and key not in unset}
    environment.update(GCP_PROJECT_ID="p-1", **variables)
    script = ("from aa_site import settings as s; print(repr(([getattr(s, n) for n in " + repr(names) + "], "
              "[name for name, _ in s.ENVIRONMENT_PROBLEMS])))")
    return subprocess.run([sys.executable, "-c", script], cwd=REPOSITORY, env=environment, capture_output=True,
                          text=True, timeout=60, check=True).stdout.strip()
