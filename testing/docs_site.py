"""The documentation site's settings reference, as its MkDocs hook renders it (docs/hooks/settings_reference.py).

The hook is a file of the site, not a package of the service: it is loaded from its path.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from testing.processes import REPOSITORY

SETTINGS_HOOK = REPOSITORY / "docs" / "hooks" / "settings_reference.py"


def settings_reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("settings_reference", SETTINGS_HOOK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def settings_page() -> str:
    """The settings page's tables (Markdown), generated from the code and docs/hooks/settings.yml."""
    return settings_reference().render()
