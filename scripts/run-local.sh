#!/usr/bin/env bash
# Run both roles in one local process on http://127.0.0.1:${PORT:-8080}, development mode:
# AUTH_OPTION=Skip, the development signing secret, and the in-process channel layer
# unless REDISHOST is set. Not for production (see the README's Cloud Run section).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh" requirements.txt
cd "$ROOT"
export DEVELOPMENT_MODE="${DEVELOPMENT_MODE:-true}"
export AUTH_OPTION="${AUTH_OPTION-Skip}"
export CORS_ALLOWED_ORIGINS="${CORS_ALLOWED_ORIGINS:-*}"
# Plain log lines for a terminal; the image's default is one JSON object per line (Cloud Logging).
export LOG_FORMAT="${LOG_FORMAT:-text}"
# The admin's users: SQLite under var/ unless DATABASE_URL (PostgreSQL) or SQLITE_PATH says otherwise.
if [ -z "${DATABASE_URL:-}" ]; then mkdir -p "$(dirname "${SQLITE_PATH:-$ROOT/var/admin.sqlite3}")"; fi
"$VENV/bin/python" manage.py migrate --noinput
# aa_site.serve: daphne with an access log that leaves out query strings (the image runs uvicorn,
# aa_site.serve_uvicorn, with the same access log; daphne stays for local runs).
exec "$VENV/bin/python" -m aa_site.serve -b "${BIND:-127.0.0.1}" -p "${PORT:-8080}" aa_site.asgi:application
