"""Log lines Cloud Logging understands: one JSON object per line, with severity and the request's trace.

python-json-logger writes each record as JSON (``LOG_FORMAT=json``, the default): ``severity``
(Python's level name, which Cloud Logging reads as is), ``message``, ``logger``, ``timestamp``,
and, while a request with a trace header is handled, ``logging.googleapis.com/trace`` as
``projects/<GCP_PROJECT_ID>/traces/<trace id>``, which links the line to the request in Cloud
Trace and groups it under the request's entry. ``aa_site.middleware.TraceMiddleware`` sets the
trace for each Django request from ``X-Cloud-Trace-Context`` (Cloud Run's front end adds it) or
``traceparent`` (W3C). ``LOG_FORMAT=text`` gives plain lines for local runs.
"""

from __future__ import annotations

import contextvars
import logging
import re
from typing import Any

TRACE_FIELD = "logging.googleapis.com/trace"
# The current request's trace, already in Cloud Logging's form; None outside a traced request.
current_trace: contextvars.ContextVar[str | None] = contextvars.ContextVar("aa_log_trace", default=None)

# X-Cloud-Trace-Context: TRACE_ID[/SPAN_ID][;o=OPTIONS]; traceparent: VERSION-TRACE_ID-SPAN_ID-FLAGS.
# Only 32 hex digits are taken: the header is the client's, and a log field must not carry what it wrote.
_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/|;|$)")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_ZERO_TRACE = "0" * 32


def trace_id(cloud_trace_context: str | None, traceparent: str | None) -> str | None:
    """The 32-hex-digit trace id of a request's headers (``X-Cloud-Trace-Context`` first), or None."""
    for header, pattern in ((cloud_trace_context, _CLOUD_TRACE), (traceparent, _TRACEPARENT)):
        match = pattern.match(header.strip()) if header else None
        if match and match[1] != _ZERO_TRACE:
            return match[1].lower()
    return None


def trace_resource(project: str, trace: str) -> str:
    """``projects/<project>/traces/<trace>``: how Cloud Logging names a trace."""
    return f"projects/{project}/traces/{trace}"


class TraceFilter(logging.Filter):
    """Adds the current request's trace to each record (as the field Cloud Logging reads); lets every record pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        trace = current_trace.get()
        if trace is not None:
            setattr(record, TRACE_FIELD, trace)
        return True


def logging_config(*, log_format: str, level: str, file: str) -> dict[str, Any]:
    """Django's ``LOGGING``: JSON (or plain text) to stdout, and to ``file`` too when given."""
    formatters = {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s",
            "rename_fields": {"levelname": "severity", "name": "logger"},
            "timestamp": True,
        },
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    }
    handler = {"formatter": log_format, "filters": ["trace"]}
    handlers = {"console": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", **handler}}
    if file:
        handlers["file"] = {"class": "logging.FileHandler", "filename": file, **handler}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"trace": {"()": "aa_site.log_format.TraceFilter"}},
        "formatters": {log_format: formatters[log_format]},
        "handlers": handlers,
        "root": {"handlers": list(handlers), "level": level},
        # httpx logs every request URL at INFO, and SalesforceLWC carries the
        # provider token in the query string: keep it at WARNING.
        "loggers": {"daphne": {"level": "WARNING"}, "django": {"level": "INFO"}, "httpx": {"level": "WARNING"}},
    }
