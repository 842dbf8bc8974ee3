"""Settings for the test run: the production settings with test values in the environment.

pytest-django imports the settings before any conftest runs, so the values
the settings module reads at import are placed in the environment here.
Tests that need other values change them with the ``settings`` fixture.
"""

import os

os.environ.setdefault("DEVELOPMENT_MODE", "true")
os.environ.setdefault("GCP_PROJECT_ID", "test-project")
os.environ.setdefault("AUTH_OPTION", "Skip")
os.environ.setdefault("JWT_SECRET_KEY", "test-jwt-8z4bVNBnYh2NqrUHmWKXJh-uUTmcO1Qbzoa_WeAmpS1m")
# Tests register far more often than 30 times a minute from 127.0.0.1; the server processes
# of testing/processes.py inherit this too. tests/test_ratelimit.py sets its own limits.
os.environ.setdefault("REGISTER_RATE_LIMIT", "off")
# Likewise they open far more than 600 sessions a minute from 127.0.0.1 (and in-process, from no address at
# all); tests/test_preauth.py sets its own limit.
os.environ.setdefault("HANDSHAKE_RATE_LIMIT", "off")
# Plain log lines (as scripts/run-local.sh), for this process and the server processes that inherit it;
# tests/test_json_logs.py runs servers with the image's default, json.
os.environ.setdefault("LOG_FORMAT", "text")

from aa_site.settings import *  # noqa: E402,F403

# Every repeated line written in this process: a test counting lines must not depend on what an earlier test
# logged within the interval. tests/test_log_sampling.py sets an interval; the server processes keep the default.
LOG_SAMPLE_SECONDS = 0
