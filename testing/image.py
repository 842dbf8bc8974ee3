"""What the Docker image holds and sets, rebuilt from the Dockerfile without a Docker engine.

``image_tree`` copies what the Dockerfile's ``COPY`` lines copy (honouring
``.dockerignore``, so no ``__pycache__``) and runs its ``RUN python -m compileall``
lines there; ``image_environment`` is its ``ENV``. Used by
``tests/test_dockerfile.py`` (the image's contents serve both roles) and
``benchmarks/cold_start.py`` (a process started as the image starts it).
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from testing.processes import REPOSITORY


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
