"""``python -m benchmarks.scenarios --quick`` runs end to end, so the benchmark cannot rot.

No timing is asserted (figures belong in the benchmark's output): only that
every scenario ran against real servers and delivered every acknowledged
push exactly once, with nothing refused or logged as an error.
"""

from __future__ import annotations

import re
import subprocess
import sys

from tests import processes

LINE = re.compile(r"^(a|b|c|e) .*\| expected (\d+) received (\d+) lost (\d+) dup (\d+) \|", re.MULTILINE)


def test_quick_scenarios_deliver_everything_exactly_once() -> None:
    environment = processes.server_environment(role="all", redis=None)
    run = subprocess.run([sys.executable, "-m", "benchmarks.scenarios", "--quick"], cwd=processes.REPOSITORY,
                         env=environment, capture_output=True, text=True, timeout=240)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    lines = LINE.findall(run.stdout)
    assert [line[0] for line in lines] == ["a", "b", "c", "e"], output
    for name, expected, received, lost, duplicated in lines:
        assert int(expected) > 0 and received == expected and lost == "0" and duplicated == "0", (name, output)
