"""Every operator command answers ``--help`` in a bare environment, and ``manage.py help`` lists them all.

Run as an operator would, from production defaults (no test settings, no Redis, no project): the help
must not depend on the serving checks, and each command that changes cloud state must offer a dry run.
"""

from __future__ import annotations

import re

import pytest

from testing.commands import manage

# command -> (its app in `manage.py help`, a phrase of its description, whether it changes cloud state)
COMMANDS = {
    "create_jwt_secret": ("connector", "Secret Manager", True),
    "issue_token": ("connector", "desktop JWT", False),
    "send_test_event": ("interceptor", "Pub/Sub push envelope", False),
    "configure_conversation_profile": ("deployment", "conversation profile", True),
    "create_push_subscriptions": ("deployment", "push subscription", True),
    "deploy_plan": ("deployment", "Print every command of the deployment", False),
    "ensure_superuser": ("aa_site", "DJANGO_SUPERUSER_PASSWORD", False),
}
# deploy_plan changes nothing unless asked: printing is its default, running is --execute; the tutorial's
# broader runtime roles are asked for too.
OPT_IN = {"deploy_plan": ("--execute", "--tutorial-runtime-roles")}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_exits_zero_with_usage_and_description(command: str) -> None:
    _, phrase, changes_cloud = COMMANDS[command]
    result = manage(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: manage.py {command}"), result.stdout[:200]
    # argparse wraps the description: compare with the line breaks folded.
    assert phrase in " ".join(result.stdout.split()), result.stdout
    if changes_cloud:
        assert "--dry-run" in result.stdout
    for option in OPT_IN.get(command, ()):
        assert option in result.stdout
    assert "Traceback" not in result.stderr


def test_manage_py_help_lists_every_operator_command_under_its_app() -> None:
    result = manage("help")
    assert result.returncode == 0, result.stderr
    sections = dict(re.findall(r"^\[(\w+)\]\n((?:    \w+\n)+)", result.stdout, re.MULTILINE))
    for command, (app, _, _) in COMMANDS.items():
        assert f"    {command}\n" in sections.get(app, ""), (command, app, result.stdout)
