#!/usr/bin/env bash
# Run the whole test suite. Installs the Python and npm test dependencies on first use;
# starts a private redis-server unless AA_TEST_REDIS=host:port names one.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh" requirements-dev.txt
cd "$ROOT"
if [ -f tests/node/package-lock.json ] && [ ! -d tests/node/node_modules ]; then
  (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
fi
exec "$VENV/bin/python" -m pytest "$@"
