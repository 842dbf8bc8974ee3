"""What a plan would deploy that cannot work, each with the flag or setting that fixes it.

``deploy_plan`` asks before it prints or runs a plan: ``--execute`` refuses,
and the printed script says so at its top and refuses to run. Unlike
:class:`deployment.plan.PlanError` (a value the plan cannot carry at all),
these plans are complete shell scripts: they deploy, then fail for the
desktops or at a late step.
"""

from __future__ import annotations

from dataclasses import dataclass

from deployment.plan import BUILT_IN_PROVIDERS, PROFILE_PLACEHOLDER, Options


@dataclass(frozen=True)
class Problem:
    """What would not work, and how to fix it."""

    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what}; {self.fix}"


def problems(options: Options) -> list[Problem]:
    """Every problem of ``options``' plan, in the order the plan meets them."""
    found = []
    if not options.auth_option and not options.app_auth_option:
        # A connector needs one provider; APP_AUTH_OPTION alone serves the integrations that register as apps.
        found.append(Problem(
            "no identity provider: the connector would refuse every /register and /register-app",
            "pass --auth-option (the desktops' provider, e.g. Salesforce) or --app-auth-option, or set AUTH_OPTION "
            "or APP_AUTH_OPTION"))
    for value, flag, setting in ((options.auth_option, "--auth-option", "AUTH_OPTION"),
                                 (options.app_auth_option, "--app-auth-option", "APP_AUTH_OPTION")):
        # A dotted path names a provider class of the operator's own, which only the connector can load.
        if value and value not in BUILT_IN_PROVIDERS and "." not in value:
            found.append(Problem(
                f"{setting}={value} is not an identity provider: the connector would not start",
                f"pass {flag} with one of {', '.join(name for name in BUILT_IN_PROVIDERS if name != 'Skip')}, or "
                f"the dotted path of a provider class"))
    if not options.allowed_origins:
        found.append(Problem(
            "no allowed browser origins: the connector would refuse every desktop running in a browser",
            "pass --allowed-origins with the desktops' origins (comma-separated, e.g. "
            "https://my-org.lightning.force.com), or set CORS_ALLOWED_ORIGINS"))
    if options.conversation_profile in ("", PROFILE_PLACEHOLDER):
        found.append(Problem(
            f"no conversation profile: the step configuring it would be given {PROFILE_PLACEHOLDER}, which "
            "Dialogflow does not have, after every service is deployed",
            "pass --conversation-profile with the profile's id (or projects/P/locations/L/conversationProfiles/ID)"))
    return found


def report(found: list[Problem]) -> str:
    """``found`` as lines for an operator: a heading, then one problem and its fix a line."""
    return "This plan cannot work as it is:\n" + "".join(f"- {problem}\n" for problem in found)
