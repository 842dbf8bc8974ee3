# Sourced by run-local.sh and manage after bootstrap.sh (which sets ROOT): the local development
# settings, each only when the environment does not set it, so the server and the commands run
# against the same settings and the same SQLite file. Not for production (docs/deploying.md
# runs .venv/bin/python manage.py with the deployment's settings).
export DEVELOPMENT_MODE="${DEVELOPMENT_MODE:-true}"
export AUTH_OPTION="${AUTH_OPTION-Skip}"
export CORS_ALLOWED_ORIGINS="${CORS_ALLOWED_ORIGINS:-*}"
# Plain log lines for a terminal; the image's default is one JSON object per line (Cloud Logging).
export LOG_FORMAT="${LOG_FORMAT:-text}"
# The admin's users: SQLite under var/ unless DATABASE_URL (PostgreSQL) or SQLITE_PATH says otherwise.
if [ -z "${DATABASE_URL:-}" ]; then mkdir -p "$(dirname "${SQLITE_PATH:-$ROOT/var/admin.sqlite3}")"; fi
