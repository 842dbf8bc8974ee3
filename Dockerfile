# One image for both roles: SERVICE_ROLE=connector or interceptor picks what a
# container serves. Runtime dependencies only; no test tooling.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=aa_site.settings \
    PORT=8080

WORKDIR /app
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY manage.py ./
COPY aa_site ./aa_site
COPY auth_providers ./auth_providers
COPY connector ./connector
COPY interceptor ./interceptor

RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent aa
USER 10001:10001

EXPOSE 8080
# Cloud Run sets PORT; --proxy-headers takes the client address from X-Forwarded-For.
CMD ["sh", "-c", "exec daphne --bind 0.0.0.0 --port \"$PORT\" --proxy-headers aa_site.asgi:application"]
