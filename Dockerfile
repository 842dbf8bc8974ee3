# One image for both roles: SERVICE_ROLE=connector or interceptor picks what a
# container serves. Runtime dependencies only; no test tooling.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=aa_site.settings \
    PORT=8080 \
    TRUSTED_PROXY_HOPS=1 \
    ACCESS_LOG=errors

WORKDIR /app
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY manage.py ./
COPY aa_site ./aa_site
COPY auth_providers ./auth_providers
COPY common ./common
COPY connector ./connector
# The operators' commands (deploy_plan, configure_conversation_profile, create_push_subscriptions) run in the image.
COPY deployment ./deployment
# The Cloud Run service templates deploy_plan renders, so the plan can be printed from the image.
COPY deploy ./deploy
COPY events ./events
COPY interceptor ./interceptor
# Bytecode now: PYTHONDONTWRITEBYTECODE (above) and .dockerignore leave none, so every start of a container
# (Cloud Run's cold starts) would otherwise compile every module from source again.
RUN python -m compileall -q aa_site auth_providers common connector deployment events interceptor

RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent aa
# The admin's SQLite file (SQLITE_PATH) when DATABASE_URL is not set: per instance, lost with it (production
# uses DATABASE_URL, PostgreSQL).
RUN mkdir /app/var && chown 10001:10001 /app/var
USER 10001:10001

EXPOSE 8080
# ACCESS_LOG=errors (above): Cloud Run's request log already records every request with its status,
# latency and size; the application's own access line then only adds the refusals and errors (with
# their path only), and the interceptor writes no log line for an accepted push.
# Cloud Run sets PORT. aa_site.serve_uvicorn is uvicorn (uvloop, httptools, websockets) with an
# access log that leaves out query strings (conversation keys, misplaced tokens). uvicorn, not
# daphne, because it measured better for both roles (docs/performance.md, "The image's server: uvicorn instead of daphne"; benchmarks/scenarios.py):
# about half daphne's CPU per push in the interceptor (daphne's Twisted parses every Content-Type
# through the email package) and less connector CPU per delivered event, at equal or lower latency.
# daphne (aa_site.serve) stays for local runs. Forwarded headers are not trusted: uvicorn and
# daphne would take the client from the left-most X-Forwarded-For entry, which the client writes.
# The rate limit reads the entry Cloud Run's front end appended instead
# (TRUSTED_PROXY_HOPS=1 above; 0 when nothing trusted sits in front).
CMD ["sh", "-c", "exec python -m aa_site.serve_uvicorn --bind 0.0.0.0 --port \"$PORT\" aa_site.asgi:application"]
