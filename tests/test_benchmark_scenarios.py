"""``python -m benchmarks.scenarios --quick`` runs end to end, so the benchmark cannot rot.

No timing is asserted (figures belong in the benchmark's output): only that
every scenario ran against real servers and delivered every acknowledged
push exactly once, with nothing refused or logged as an error.
"""

from __future__ import annotations

import re
import subprocess
import sys

from testing import processes

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


def test_a_small_polling_benchmark_delivers_everything_exactly_once_on_both_transports() -> None:
    """``python -m benchmarks.polling``, small: two connectors behind nginx, half the desktops long-polling."""
    environment = processes.server_environment(role="all", redis=None)
    run = subprocess.run([sys.executable, "-m", "benchmarks.polling", "--desktops", "8", "--conversations", "2",
                          "--pushes", "40", "--wakes", "5"], cwd=processes.REPOSITORY, env=environment, capture_output=True,
                         text=True, timeout=240)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    delivered, expected = map(int, re.search(r"^delivered / expected +(\d+) / (\d+)$", run.stdout, re.M).groups())
    assert delivered == expected > 0, output
    assert re.search(r"^duplicates +0$", run.stdout, re.M) and re.search(r"^misdelivered +0$", run.stdout, re.M), output
    per_transport = [int(re.search(rf"^{transport} +push-to-desktop ms .*\((\d+) deliveries\)$", run.stdout,
                                   re.M).group(1)) for transport in ("polling", "websocket")]
    assert sum(per_transport) == delivered and min(per_transport) > 0, output
    assert re.search(r"^connectors' CPU +\d+\.\d+ s", run.stdout, re.M), output
    assert re.search(r"^wakes +5: .* ms  p50 ", run.stdout, re.M), output  # every poll was woken


def test_a_quick_soak_loses_and_doubles_nothing_while_every_bound_is_abused() -> None:
    """``python -m benchmarks.soak --quick``: a minute of steady pushes, desktops staying, churning, recovering
    and stalling on both transports, and an abuser at each bound. Memory's flatness is the full run's to judge
    (a minute has no steady state); what is checked here is that every desktop that stays got everything once,
    every actor ran, and no server logged an ERROR."""
    environment = processes.server_environment(role="all", redis=None)
    run = subprocess.run([sys.executable, "-m", "benchmarks.soak", "--quick"], cwd=processes.REPOSITORY,
                         env=environment, capture_output=True, text=True, timeout=400)
    output = run.stdout + run.stderr
    tally = re.search(r"^soak .* delivered +(\d+)/(\d+) +duplicated +(\d+) +lost +(\d+)", run.stdout, re.M)
    assert tally is not None, output
    delivered, expected, duplicated, lost = map(int, tally.groups())
    assert delivered == expected > 0 and duplicated == 0 and lost == 0, output
    assert len(re.findall(r"^ +[\d.]+ min  RSS MiB", run.stdout, re.M)) >= 5, output
    problems = [line for line in run.stdout.splitlines() if line.strip().startswith("problem:")]
    assert problems == [], output
    for actor in ("handshakes", "unauthenticated websockets", "polling queue, no token", "polling queue, token",
                  "waiting polls", "replays", "conversation-name lookup", "register", "admin login", "churn",
                  "recovering desktop (websocket)", "recovering desktop (polling)"):
        assert f"  {actor}: " in run.stdout, (actor, output)


def test_after_rounds_of_desktops_coming_and_going_the_connector_holds_nothing_of_them() -> None:
    """``python -m benchmarks.churn``, small: desktops of the three kinds join, receive, drop and recover,
    vanish, and leave, round after round. After each round the connector's own heap report
    (``benchmarks.churn_server``) must show every per-process container empty: no conversation in the hub or
    its subscription, no desktop in the registry, no poller, no heartbeat in flight, no unauthenticated hold.
    Something kept per desktop, conversation, token or address after it went would show in one of them."""
    environment = processes.server_environment(role="all", redis=None)
    run = subprocess.run([sys.executable, "-m", "benchmarks.churn", "--rounds", "3", "--desktops", "12",
                          "--warm-up", "1"], cwd=processes.REPOSITORY, env=environment, capture_output=True,
                         text=True, timeout=300)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    rounds = re.findall(r"^round +(\d+) .* non-empty (\{.*?\})", run.stdout, re.M)
    assert [number for number, _ in rounds] == ["0", "1", "2", "3"], output
    assert all(held == "{}" for _, held in rounds), output
    tally = re.search(r"^events: expected (\d+), received (\d+), lost 0, duplicated 0; client failures 0$",
                      run.stdout, re.M)
    assert tally is not None and tally.group(1) == tally.group(2) != "0", output


def test_a_quick_cold_start_prints_each_roles_time_to_ready() -> None:
    """``python -m benchmarks.cold_start --quick``: one start of each role from the image's contents, timed to its
    first 200 on /readyz, and an interceptor's first pushes after it, each answered 204 (figures printed, none
    asserted)."""
    environment = processes.server_environment(role="all", redis=None)
    run = subprocess.run([sys.executable, "-m", "benchmarks.cold_start", "--quick"], cwd=processes.REPOSITORY,
                         env=environment, capture_output=True, text=True, timeout=240)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    pushes = r"  first push +\d+\.\d\d ms, the next 10 median +\d+\.\d\d ms"
    for role, after in (("connector", ""), ("interceptor", pushes)):
        assert re.search(rf"^run 1 {role} +this +exec to /readyz 200: +\d+\.\d ms +CPU +\d+ ms{after}$", run.stdout,
                         re.M), output
        assert re.search(rf"^{role} +this +median +\d+\.\d ms +min +\d+\.\d +max +\d+\.\d ", run.stdout, re.M), output
    assert re.search(r"^interceptor +this +first push after ready: median +\d+\.\d\d ms", run.stdout, re.M), output
    assert re.search(r"^load average before: [\d.]+ [\d.]+ [\d.]+$", run.stdout, re.M), output


def test_a_quick_sizing_run_prints_each_step_and_the_largest_within_target() -> None:
    """``python -m benchmarks.sizing --quick``: two desktop steps on one connector with scenario c's and b's loads,
    two paced rates on one interceptor; every push acknowledged and delivered once (figures printed, none
    asserted: whether a step is within its target is the machine's)."""
    environment = processes.server_environment(role="all", redis=None)
    run = subprocess.run([sys.executable, "-m", "benchmarks.sizing", "--quick"], cwd=processes.REPOSITORY,
                         env=environment, capture_output=True, text=True, timeout=240)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    # The step's own columns, then per load: name, p50, p99, target, acked/s, CPU %, us/event, ms/push, lost,
    # duplicated.
    number = r" +[\d.]+"
    load_columns = rf"(c|b){number * 2} (?:<=|> )[\d.]+{number * 4} +(\d+) +(\d+) \|"
    rows = re.findall(rf"^ *(?:\d+{number}{number})? *\| {load_columns}", run.stdout, re.M)
    assert [name for name, _, _ in rows] == ["c", "b", "c", "b"], output
    assert all(lost == duplicated == "0" for _, lost, duplicated in rows), output
    for load in ("c", "b"):
        assert re.search(rf"^connector, load {load} \(p99 <= [\d.]+ ms\): (largest step within target \d+ desktops, "
                         rf"RSS \d+ MiB|no step within target)", run.stdout, re.M), output
    assert len(re.findall(rf"^{number * 9} \| [\d.]+$", run.stdout, re.M)) == 2, output  # one line per rate
    assert re.search(r"^interceptor \(p99 ack <= [\d.]+ ms", run.stdout, re.M), output
