"""A fake ``gcloud`` executable for ``deploy_plan --execute``: records each call, answers look-ups, fails on demand.

``install(directory)`` writes the script as ``directory/gcloud``; put the
directory first on ``PATH``. Each call appends one JSON line to
``$FAKE_GCLOUD_LOG``: the arguments, the working directory, and for
``run services replace FILE`` the file's content, and for ``--data-file=-`` what it read on stdin. ``describe`` calls print the
values below (``redis clusters get-cluster-certificate-authority`` too, by its ``--format``). Secret Manager keeps state in the log: ``secrets versions describe latest
--secret=S`` succeeds and ``secrets versions access latest --secret=S`` prints the value once a
``secrets versions add S`` was logged, or when ``$FAKE_GCLOUD_SECRETS`` (JSON, secret to value)
names S; otherwise both fail with NOT_FOUND. Other resources keep state the same way: a ``create`` of a
resource a successful ``create`` made already fails with ALREADY_EXISTS, and a ``describe`` other than the
look-ups above (the printed script's guard before a create) succeeds once the resource was created, else fails
with NOT_FOUND; a resource is its command group and name (a service account's email counts as its name).
Each logged call says whether it ``failed``. ``FAKE_GCLOUD_FAIL_AT=N`` makes the Nth call fail (exit 1);
``FAKE_GCLOUD_EXISTS_AT=N`` makes it fail the way gcloud reports an existing resource.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REDIS_HOST = "10.0.0.3"
REDIS_PORT = "6379"
PROJECT_NUMBER = "123456789012"
INTERCEPTOR_URL = "https://cloud-pubsub-interceptor-abc123-ew.a.run.app"
REDIS_AUTH_STRING = "fake-auth-5f0c2a8e-9d1b-4c3a-8e7f-2b6d4a1c9e0f"
REDIS_SERVER_CA = "-----BEGIN CERTIFICATE-----\nMIIfake\n-----END CERTIFICATE-----"
# Memorystore for Redis Cluster: its discovery endpoint, and its CA chain as the plan's --flatten prints it.
REDIS_CLUSTER_HOST = "10.0.0.9"
REDIS_CLUSTER_PORT = "6379"
REDIS_CLUSTER_CA = ("-----BEGIN CERTIFICATE-----\nMIIleaf\n-----END CERTIFICATE-----\n"
                    "-----BEGIN CERTIFICATE-----\nMIIroot\n-----END CERTIFICATE-----")

SCRIPT = '''#!{python}
import json, os, sys
from pathlib import Path
log = Path(os.environ["FAKE_GCLOUD_LOG"])
arguments = sys.argv[1:]
call = {{"argv": arguments, "cwd": os.getcwd()}}
if arguments[:3] == ["run", "services", "replace"]:
    call["file"] = (Path(os.getcwd()) / arguments[3]).read_text()
if "--data-file=-" in arguments:
    call["stdin"] = sys.stdin.read()
previous = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
number = len(previous) + 1


def resource(argv, verb):
    at = argv.index(verb)
    return argv[:at] + [argv[at + 1].split("@")[0]] if at + 1 < len(argv) else None


created = [resource(p["argv"], "create") for p in previous if "create" in p["argv"] and not p["failed"]]
refused = os.environ.get("FAKE_GCLOUD_FAIL_AT") == str(number)
exists = (os.environ.get("FAKE_GCLOUD_EXISTS_AT") == str(number)
          or ("create" in arguments and resource(arguments, "create") in created))
call["failed"] = refused or exists
with log.open("a") as stream:
    stream.write(json.dumps(call) + "\\n")
if refused:
    sys.stderr.write("ERROR: (gcloud.fake) PERMISSION_DENIED: the fake refuses call %d\\n" % number)
    sys.exit(1)
if exists:
    sys.stderr.write("ERROR: (gcloud.fake) Resource in projects [p] is the subject of a conflict: already exists\\n")
    sys.exit(1)
if arguments[:4] in (["secrets", "versions", "describe", "latest"], ["secrets", "versions", "access", "latest"]):
    secret = next(a.split("=", 1)[1] for a in arguments if a.startswith("--secret="))
    values = json.loads(os.environ.get("FAKE_GCLOUD_SECRETS", "{{}}"))
    for line in log.read_text().splitlines():
        logged = json.loads(line)
        if logged["argv"][:4] == ["secrets", "versions", "add", secret]:
            values[secret] = logged["stdin"]
    if secret not in values:
        sys.stderr.write("ERROR: (gcloud.secrets.versions) NOT_FOUND: Secret [%s] has no versions\\n" % secret)
        sys.exit(1)
    if arguments[2] == "access":
        sys.stdout.write(values[secret])
    sys.exit(0)
answers = {{"--format=value(host)": {host!r}, "--format=value(port)": {port!r},
           "--format=value(projectNumber)": {number!r}, "--format=value(status.url)": {url!r},
           "--format=value(authString)": {auth!r}, "--format=value(serverCaCerts[0].cert)": {ca!r},
           "--format=value(discoveryEndpoints[0].address)": {cluster_host!r},
           "--format=value(discoveryEndpoints[0].port)": {cluster_port!r},
           "--format=value(managedServerCa.caCerts.certificates)": {cluster_ca!r}}}
looked_up = [answers[argument] for argument in arguments if argument in answers]
if "describe" in arguments and not looked_up and resource(arguments, "describe") not in created:
    sys.stderr.write("ERROR: (gcloud.fake) NOT_FOUND: %s\\n" % " ".join(arguments))
    sys.exit(1)
for answer in looked_up:
    print(answer)
'''


def install(directory: Path) -> Path:
    """Write the fake as ``directory/gcloud`` (executable) and return its path."""
    path = directory / "gcloud"
    path.write_text(SCRIPT.format(python=sys.executable, host=REDIS_HOST, port=REDIS_PORT, number=PROJECT_NUMBER,
                                  url=INTERCEPTOR_URL, auth=REDIS_AUTH_STRING, ca=REDIS_SERVER_CA,
                                  cluster_host=REDIS_CLUSTER_HOST, cluster_port=REDIS_CLUSTER_PORT,
                                  cluster_ca=REDIS_CLUSTER_CA))
    path.chmod(0o755)
    return path


def calls(log: Path) -> list[dict[str, Any]]:
    """The recorded calls, in order."""
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
