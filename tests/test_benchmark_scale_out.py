"""``python -m benchmarks.scale_out --quick`` runs end to end, so the benchmark cannot rot.

Two interceptor and two connector processes, on a standalone Redis and on a three-primary Redis Cluster. No
figure is asserted (they belong in the benchmark's output): only the output's shape, that every acknowledged
push reached each desktop of its conversation exactly once, and that the per-primary counts add up to the
pushes and conversations of the run.
"""

from __future__ import annotations

import re
import subprocess
import sys

from testing import processes

NUMBER = r"[\d.]+|nan"
PHASE = re.compile(rf"^(unpaced|(?:paced|skewed) [\d.]+/s) +pushes (\d+) acked (\d+) acked/s (?:{NUMBER}) \| "
                   rf"expected (\d+) "
                   rf"received (\d+) lost (-?\d+) dup (\d+) \| ms p50 (?:{NUMBER}) p99 (?:{NUMBER}) \| interceptors "
                   rf"(?:{NUMBER}) ms/push \| connectors \d+ us/event$")
NODE = re.compile(rf"^node \d+ (primary|replica) +shard \d+ (?:\| conversations (\d+) appends (\d+) )?\| idle "
                  rf"(?:{NUMBER}) ms/s \| unpaced: cpu (?:{NUMBER}) us/push.* \| paced: cpu (?:{NUMBER}) us/push.* \| "
                  rf"skewed: (?:cpu (?:{NUMBER}) us/push|no pushes)")
BALANCE = re.compile(rf"^balance over (\d+) primaries: conversations ([\d ]+) \(max/mean (?:{NUMBER})\) \| pushes "
                     rf"([\d ]+) \(max/mean (?:{NUMBER})\)$")


def runs(output: str) -> dict[str, list[str]]:
    """The output's lines under each run's header (``standalone 2x2``, ``cluster 2x2``), up to the summary."""
    found: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        header = re.match(r"^== (standalone|cluster) (\d+x\d+): ", line)
        if header:
            current = found.setdefault(f"{header[1]} {header[2]}", [])
        elif line.startswith("summary:"):
            current = None
        elif current is not None:
            current.append(line)
    return found


def test_a_quick_scale_out_run_delivers_everything_once_and_counts_every_node() -> None:
    environment = processes.server_environment(role="all", redis=None)
    run = subprocess.run([sys.executable, "-m", "benchmarks.scale_out", "--quick"], cwd=processes.REPOSITORY,
                         env=environment, capture_output=True, text=True, timeout=300)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    found = runs(run.stdout)
    assert list(found) == ["standalone 2x2", "cluster 2x2"], output
    for name, lines in found.items():
        phases = [PHASE.match(line) for line in lines if PHASE.match(line)]
        assert [phase[1].split()[0] for phase in phases] == ["unpaced", "paced", "skewed"], (name, output)
        acked = 0
        for phase in phases:
            pushes, acknowledged, expected, received, lost, duplicated = map(int, phase.groups()[1:])
            assert pushes == acknowledged > 0 and expected == 2 * acknowledged, (name, output)
            assert received == expected and lost == 0 and duplicated == 0, (name, output)
            acked += acknowledged
        nodes = [NODE.match(line) for line in lines if line.startswith("node ")]
        assert all(nodes), (name, output)
        roles = [node[1] for node in nodes]
        assert roles == (["primary"] if name.startswith("standalone") else ["primary"] * 3 + ["replica"] * 3), output
        balance = next(BALANCE.match(line) for line in lines if line.startswith("balance"))
        conversations = list(map(int, balance[2].split()))
        pushes = list(map(int, balance[3].split()))
        assert int(balance[1]) == len(conversations) == roles.count("primary"), output
        # Every conversation is on one primary, and Redis counted every acknowledged push there.
        assert sum(conversations) == 6 and sum(pushes) == acked, (name, output)
        assert conversations == [int(node[2]) for node in nodes if node[1] == "primary"], output
    summary = re.findall(r"^(standalone|cluster) +2x2 +\|", run.stdout, re.M)
    assert summary == ["standalone", "cluster"], output
    table = run.stdout[run.stdout.index("capacity model"):].splitlines()
    assert [line.split()[0] for line in table[2:5]] == ["1,000", "10,000", "50,000"], output
