"""What the Docker image holds and sets, rebuilt from the Dockerfile without a Docker engine.

``image_tree`` copies what the Dockerfile's ``COPY`` lines copy (honouring
``.dockerignore``, so no ``__pycache__``) and runs its ``RUN python -m compileall``
lines there; ``image_environment`` is its ``ENV``; ``refuse_test_only_packages``
leaves out what only the tests install. Used by
``tests/test_dockerfile.py`` (the image's contents serve both roles) and
``benchmarks/cold_start.py`` (a process started as the image starts it).
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from testing.processes import REPOSITORY

# Installed here (requirements-dev.txt), not in the image (requirements.txt).
TEST_ONLY_PACKAGES = ("pytest", "pytest_django", "pytest_asyncio", "aiohttp", "playwright")


def dockerfile(repository: Path = REPOSITORY) -> str:
    return (repository / "Dockerfile").read_text()


def _ignored(relative: str, patterns: list[str]) -> bool:
    parts = Path(relative).parts
    for pattern in patterns:
        pattern = pattern.removeprefix("**/")
        if fnmatch.fnmatch(relative, pattern) or any(fnmatch.fnmatch(part, pattern) for part in parts):
            return True
    return False


def image_tree(destination: Path, repository: Path = REPOSITORY) -> Path:
    """Copy what ``repository``'s Dockerfile copies (minus .dockerignore) into ``destination``, then compile
    its bytecode as the Dockerfile does (if it does)."""
    text = dockerfile(repository)
    ignore = [
        line.strip()
        for line in (repository / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source, target in re.findall(r"^COPY\s+(\S+)\s+(\S+)\s*$", text, flags=re.MULTILINE):
        origin = repository / source
        if origin.is_dir():
            for path in origin.rglob("*"):
                relative = path.relative_to(repository).as_posix()
                if path.is_file() and not _ignored(relative, ignore):
                    copy = destination / target.removeprefix("./") / path.relative_to(origin)
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, copy)
        else:
            (destination / origin.name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, destination / origin.name)
    for arguments in re.findall(r"^RUN python -m compileall (.+?)\s*$", text, flags=re.MULTILINE):
        subprocess.run([sys.executable, "-m", "compileall", *shlex.split(arguments)], cwd=destination, check=True,
                       stdout=subprocess.DEVNULL)
    return destination


def image_environment(repository: Path = REPOSITORY) -> dict[str, str]:
    """The variables the Dockerfile's ``ENV`` lines set."""
    environment: dict[str, str] = {}
    for block in re.findall(r"^ENV\s+((?:.*\\\n)*.*)$", dockerfile(repository), flags=re.MULTILINE):
        for word in shlex.split(block.replace("\\\n", " ")):
            name, _, value = word.partition("=")
            environment[name] = value
    return environment


def _requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", line.strip())
        if match:
            names.add(re.sub(r"[-_.]+", "-", match.group(1)).lower())
    return names


def development_only_modules(repository: Path = REPOSITORY) -> tuple[str, ...]:
    """The top-level modules of the packages ``requirements-dev.txt`` installs beyond ``requirements.txt`` (the
    image's): libraries look for some of them (httpx for rich, engineio for aiohttp) and load them when found."""
    extra = _requirement_names(repository / "requirements-dev.txt") - _requirement_names(repository / "requirements.txt")
    return tuple(sorted(
        module for module, distributions in importlib.metadata.packages_distributions().items()
        if all(re.sub(r"[-_.]+", "-", name).lower() in extra for name in distributions)
    ))


def refuse_test_only_packages(directory: Path, packages: tuple[str, ...] = TEST_ONLY_PACKAGES) -> Path:
    """A directory to put first on ``PYTHONPATH``: its ``sitecustomize`` makes every import of one of ``packages``
    (top-level names) fail (ImportError), as it would in the image, where none is installed."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Refuse:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {packages!r}:\n"
        "            raise ImportError('test-only package imported by the image: ' + name)\n"
        "sys.meta_path.insert(0, _Refuse())\n"
    )
    return directory
