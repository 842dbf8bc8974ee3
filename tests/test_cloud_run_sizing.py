"""Each Cloud Run service's size (concurrency, CPU, memory, instances, CPU allocation, start-up boost) reaches its
service file at the Knative paths Cloud Run reads, from the measured defaults or from ``deploy_plan``'s flags, and
what Cloud Run would refuse is refused with the flag named.

The files are rendered by ``manage.py deploy_plan`` itself (the heredocs of the script it prints) and parsed.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import CommandError, call_command

from deployment import plan, sizing

FLAGS = ("--project", "acme-cx", "--region", "europe-west1", "--auth-option", "Salesforce",
         "--env", "SALESFORCE_ORGANIZATION_ID=00D000000000001EAA", "--allowed-origins",
         "https://acme.lightning.force.com", "--conversation-profile", "CP-1")
CONNECTOR_FILE, INTERCEPTOR_FILE = "ui-connector.service.yaml", "cloud-pubsub-interceptor.service.yaml"
SIZING_DOC = Path(plan.DEPLOY_DIRECTORY).parent / "docs" / "cloud-run-sizing.md"


def rendered(*flags: str) -> dict[str, dict[str, Any]]:
    """The service files of the script ``deploy_plan`` prints for ``flags``, parsed, by file name."""
    out = io.StringIO()
    call_command("deploy_plan", *flags, stdout=out, stderr=io.StringIO())
    files = dict(re.findall(r"^cat > (\S+) <<EOF\n(.*?)^EOF$", out.getvalue(), re.MULTILINE | re.DOTALL))
    assert set(files) == {CONNECTOR_FILE, INTERCEPTOR_FILE}
    return {name: yaml.safe_load(text) for name, text in files.items()}


def size_of(service: dict[str, Any]) -> dict[str, Any]:
    """What Cloud Run reads for the revision's size, from the Knative paths."""
    template = service["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    (container,) = template["spec"]["containers"]
    return {
        "concurrency": template["spec"]["containerConcurrency"],
        "cpu": container["resources"]["limits"]["cpu"],
        "memory": container["resources"]["limits"]["memory"],
        "min": annotations["autoscaling.knative.dev/minScale"],
        "max": annotations["autoscaling.knative.dev/maxScale"],
        "throttling": annotations["run.googleapis.com/cpu-throttling"],
        "boost": annotations["run.googleapis.com/startup-cpu-boost"],
    }


def test_the_measured_defaults_reach_both_service_files() -> None:
    files = rendered(*FLAGS)
    for name, default, throttling in ((CONNECTOR_FILE, sizing.CONNECTOR, "false"),
                                      (INTERCEPTOR_FILE, sizing.INTERCEPTOR, "true")):
        assert size_of(files[name]) == {
            "concurrency": default.concurrency, "cpu": default.cpu, "memory": default.memory, "min": "1",
            "max": str(default.max_instances), "throttling": throttling, "boost": "true"}, name
    # A number, as Knative's schema has it; annotations and quantities are strings.
    assert isinstance(size_of(files[CONNECTOR_FILE])["concurrency"], int)
    # Not Cloud Run's default of 80 requests: one connector instance takes 1,000 desktops.
    assert sizing.CONNECTOR.concurrency == sizing.MAX_CONCURRENCY


def test_every_flag_overrides_its_value_and_only_its_service() -> None:
    files = rendered(*FLAGS, "--connector-concurrency", "500", "--connector-cpu", "2", "--connector-memory", "1Gi",
                     "--connector-max-instances", "4", "--interceptor-concurrency", "1", "--interceptor-cpu", "0.5",
                     "--interceptor-memory", "256Mi", "--interceptor-max-instances", "3", "--min-instances", "2",
                     "--no-startup-cpu-boost")
    assert size_of(files[CONNECTOR_FILE]) == {"concurrency": 500, "cpu": "2", "memory": "1Gi", "min": "2", "max": "4",
                                              "throttling": "false", "boost": "false"}
    assert size_of(files[INTERCEPTOR_FILE]) == {"concurrency": 1, "cpu": "0.5", "memory": "256Mi", "min": "2",
                                                "max": "3", "throttling": "true", "boost": "false"}


def test_one_flag_leaves_the_other_values_at_their_defaults() -> None:
    files = rendered(*FLAGS, "--interceptor-memory", "2Gi", "--min-instances", "0")
    assert size_of(files[INTERCEPTOR_FILE])["memory"] == "2Gi"
    assert size_of(files[INTERCEPTOR_FILE])["concurrency"] == sizing.INTERCEPTOR.concurrency
    assert size_of(files[CONNECTOR_FILE])["memory"] == sizing.CONNECTOR.memory
    assert size_of(files[CONNECTOR_FILE])["min"] == size_of(files[INTERCEPTOR_FILE])["min"] == "0"


@pytest.mark.parametrize("arguments, reason", [
    (("--connector-concurrency", "0"), "--connector-concurrency must be between 1 and 1000"),
    (("--interceptor-concurrency", "1001"), "--interceptor-concurrency must be between 1 and 1000"),
    (("--connector-cpu", "3"), "above 1, Cloud Run takes 2, 4, 6 or 8"),
    (("--connector-cpu", "two"), "not a number of CPUs"),
    (("--interceptor-cpu", "0.05", "--interceptor-concurrency", "1"), "least is 0.08"),
    (("--connector-cpu", "500m"), "needs its CPU between requests"),
    (("--interceptor-cpu", "0.5"), "only with --interceptor-concurrency 1"),
    (("--interceptor-cpu", "0.25", "--interceptor-concurrency", "1", "--interceptor-memory", "1Gi"),
     "at most 512Mi"),
    (("--interceptor-cpu", "0.75", "--interceptor-concurrency", "1", "--interceptor-memory", "2Gi"),
     "at most 1024Mi"),
    (("--connector-memory", "512MB"), "not an amount with Mi or Gi"),
    (("--connector-memory", "64Mi"), "128Mi to 32Gi"),
    (("--connector-memory", "40Gi", "--connector-cpu", "8"), "128Mi to 32Gi"),
    (("--connector-memory", "6Gi"), "more than 4Gi needs --connector-cpu 2"),
    (("--interceptor-memory", "20Gi", "--interceptor-cpu", "4"), "more than 16Gi needs --interceptor-cpu 6"),
    (("--connector-cpu", "4"), "needs --connector-memory 2Gi or more"),
    (("--interceptor-cpu", "8", "--interceptor-memory", "2Gi"), "needs --interceptor-memory 4Gi or more"),
    (("--connector-max-instances", "0", "--min-instances", "0"), "--connector-max-instances must be at least 1"),
    (("--interceptor-max-instances", "2", "--min-instances", "3"), r"at least --min-instances \(3\)"),
    (("--min-instances", "-1"), "--min-instances at least 0"),
])
def test_what_cloud_run_would_refuse_is_a_command_error_naming_the_flag(arguments: tuple[str, ...],
                                                                       reason: str) -> None:
    with pytest.raises(CommandError, match=reason):
        call_command("deploy_plan", *FLAGS, *arguments, stdout=io.StringIO(), stderr=io.StringIO())


@pytest.mark.parametrize("value, expected", [("1", 1.0), ("0.5", 0.5), (".25", 0.25), ("500m", 0.5), ("8", 8.0),
                                             ("1.5.0", None), ("-1", None), ("", None)])
def test_cpu_quantities(value: str, expected: float | None) -> None:
    assert sizing.cpus(value) == expected


def test_the_largest_values_cloud_run_takes_are_accepted() -> None:
    files = rendered(*FLAGS, "--connector-cpu", "8", "--connector-memory", "32Gi", "--connector-concurrency", "1000",
                     "--interceptor-cpu", "0.08", "--interceptor-concurrency", "1", "--interceptor-memory", "128Mi")
    assert size_of(files[CONNECTOR_FILE])["memory"] == "32Gi"
    assert size_of(files[INTERCEPTOR_FILE])["cpu"] == "0.08"


def test_each_template_says_where_its_sizes_come_from() -> None:
    """The templates' comments point to the page with the measurements, which exists and names the command."""
    for template in (plan.CONNECTOR_TEMPLATE, plan.INTERCEPTOR_TEMPLATE):
        text = template.read_text(encoding="utf-8")
        assert "docs/cloud-run-sizing.md" in text and "benchmarks.sizing" in text, template.name
    page = SIZING_DOC.read_text(encoding="utf-8")
    assert "python -m benchmarks.sizing" in page
    for default in (sizing.CONNECTOR, sizing.INTERCEPTOR):
        assert f"`{default.memory}`" in page and f"`{default.concurrency}`" in page
