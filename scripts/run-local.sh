#!/usr/bin/env bash
# Run both roles in one local process on http://127.0.0.1:${PORT:-8080}, development mode:
# AUTH_OPTION=Skip and the development signing secret. Events, sessions and long-polling
# live in Redis: REDISHOST's, else a private redis-server this script starts on a free
# loopback port (nothing kept on disk; stopped with the server) when one is installed,
# else in process, without the long-polling transport (LOCAL_REDIS=off asks for that).
# Not for production (docs/deploying.md deploys to Cloud Run).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh" requirements.txt
cd "$ROOT"
source "$ROOT/scripts/local-env.sh"
"$VENV/bin/python" manage.py migrate --noinput

start_private_redis() {
  local port directory
  port="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  directory="$(mktemp -d)"
  redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$directory" \
    --protected-mode yes --loglevel warning &
  REDIS_PID=$!
  trap 'kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; rm -rf "'"$directory"'"' EXIT
  for _ in $(seq 100); do
    if "$VENV/bin/python" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.1)' \
        "$port" 2>/dev/null; then
      export REDISHOST=127.0.0.1 REDISPORT="$port"
      echo "run-local: a private redis-server on 127.0.0.1:$port (stopped with the server; keeps nothing)" >&2
      return
    fi
    sleep 0.05
  done
  echo "run-local: the private redis-server did not start; keeping events in process" >&2
}

if [ -z "${REDISHOST:-}${REDIS_URL:-}" ] && [ "${LOCAL_REDIS:-auto}" != "off" ]; then
  if command -v redis-server >/dev/null; then
    start_private_redis
  else
    echo "run-local: no redis-server installed: events stay in process and long-polling is off" \
      "(socket.io-client needs transports: [\"websocket\"]); apt-get install redis-server for both" >&2
  fi
fi
# aa_site.serve: daphne with an access log that leaves out query strings (the image runs uvicorn,
# aa_site.serve_uvicorn, with the same access log; daphne stays for local runs). Not exec'd when a
# private redis-server runs, so that it stops with the server (the EXIT trap).
if [ -n "${REDIS_PID:-}" ]; then
  "$VENV/bin/python" -m aa_site.serve -b "${BIND:-127.0.0.1}" -p "${PORT:-8080}" aa_site.asgi:application &
  SERVER_PID=$!
  # Background jobs of a script ignore Ctrl-C's SIGINT: pass it on as the TERM the server stops on.
  trap 'kill -TERM "$SERVER_PID" 2>/dev/null || true' INT TERM
  set +e
  wait "$SERVER_PID"; status=$?
  if kill -0 "$SERVER_PID" 2>/dev/null; then  # a signal ended the wait: the server is still stopping
    wait "$SERVER_PID"; status=$?
  fi
  exit "$status"
else
  exec "$VENV/bin/python" -m aa_site.serve -b "${BIND:-127.0.0.1}" -p "${PORT:-8080}" aa_site.asgi:application
fi
