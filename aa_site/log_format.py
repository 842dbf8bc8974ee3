"""Log lines Cloud Logging understands: one JSON object per line, with severity and the request's trace.

python-json-logger writes each record as JSON (``LOG_FORMAT=json``, the default): ``severity``
(Python's level name, which Cloud Logging reads as is), ``message``, ``logger``, ``timestamp``,
and, while a request with a trace header is handled, ``logging.googleapis.com/trace`` as
``projects/<GCP_PROJECT_ID>/traces/<trace id>``, which links the line to the request in Cloud
Trace and groups it under the request's entry. ``aa_site.middleware.TraceMiddleware`` sets the
trace for each Django request from ``X-Cloud-Trace-Context`` (Cloud Run's front end adds it) or
``traceparent`` (W3C). ``LOG_FORMAT=text`` gives plain lines for local runs.

Every record, whichever logger wrote it (ours, Django's, uvicorn's, daphne's, asyncio's), passes
``QueryStringFilter`` on its way to a handler: request paths are written without their query strings
(``/conversation-name?conversationIntegrationKey=+1555...`` carries a customer's phone number, and a
token a client put in a URL is still valid).
"""

from __future__ import annotations

import contextvars
import logging
import re
import traceback
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


# A path or URL followed by its query string, as reprs, access lines and exception messages write them: the
# query runs to the next whitespace, quote or angle bracket. Only what follows a "/" counts as a path, so a
# question mark in prose ("retry?") is left alone.
_PATH_QUERY = re.compile(r"(/[^\s?\"'<>]*)\?[^\s\"'<>]*")
# An ASGI scope's repr carries the query without its "?": "'query_string': b'token=...'".
_SCOPE_QUERY = re.compile(r"""(['"]query_string['"]:\s*b?)(['"]).*?(?<!\\)\2""")
# What every LogRecord has; anything else on a record came from ``extra=`` (python-json-logger writes each).
_PLAIN_RECORD = logging.LogRecord("", 0, "", 0, "", (), None).__dict__
_RECORD_ATTRIBUTES = frozenset({*_PLAIN_RECORD, "message", "asctime", "taskName", TRACE_FIELD})


def without_query(text: str) -> str:
    """``text`` with every request path or URL in it cut before its query string."""
    if "?" in text:
        text = _PATH_QUERY.sub(r"\1", text)
    if "query_string" in text:
        text = _SCOPE_QUERY.sub(r"\1\2\2", text)
    return text


def loggable(value: Any, depth: int = 0) -> Any:
    """An extra field's value as a log line may carry it: a request (Django's, or an ASGI scope) as its method
    and path, text without query strings, numbers as they are."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return without_query(value)
    method, path = getattr(value, "method", None), getattr(value, "path", None)
    if isinstance(method, str) and isinstance(path, str):  # django.http.HttpRequest and its subclasses
        return without_query(f"{method} {path}")
    if isinstance(value, dict):
        if isinstance(value.get("type"), str) and isinstance(value.get("path"), str):  # an ASGI scope
            return without_query(" ".join(str(value[name]) for name in ("type", "method", "path") if name in value))
        if depth < 2:
            return {str(key): loggable(item, depth + 1) for key, item in value.items()}
    elif isinstance(value, (list, tuple)) and depth < 2:
        return [loggable(item, depth + 1) for item in value]
    # python-json-logger would write str() of anything else itself, and the text formatter never shows it.
    return without_query(str(value))


class QueryStringFilter(logging.Filter):
    """Cuts the query string off every request path a record carries: in its message, in the request Django
    attaches (``django.request``), in any other extra field, in its traceback. Lets every record pass.

    On every handler, so no logger's record reaches a line without it. Cheap when there is nothing to cut
    (the access log writes a record per request): the message is formatted once, here, for the formatter too,
    and scanned for a "?" before any pattern runs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg
        if record.args or not isinstance(message, str):
            if isinstance(message, dict):  # python-json-logger writes a dict message's items as fields
                record.msg = loggable(message)
            else:
                try:
                    message = record.getMessage()
                except Exception:  # noqa: BLE001 - a record whose arguments do not fit its format
                    message = f"{message!s} {record.args!r}"
                record.msg, record.args = without_query(message), ()
        elif "?" in message or "query_string" in message:
            record.msg = without_query(message)
        if len(record.__dict__) > len(_PLAIN_RECORD):  # else no extra field: the set difference costs more
            for name in record.__dict__.keys() - _RECORD_ATTRIBUTES:
                record.__dict__[name] = loggable(record.__dict__[name])
        if record.exc_info:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            cut = without_query(text)
            record.exc_text = cut
            if cut != text:
                record.exc_info = None  # python-json-logger formats exc_info afresh, but writes exc_text if alone
        elif record.exc_text:
            record.exc_text = without_query(record.exc_text)
        if record.stack_info:
            record.stack_info = without_query(record.stack_info)
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
    handler = {"formatter": log_format, "filters": ["trace", "query_string"]}
    handlers = {"console": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", **handler}}
    if file:
        handlers["file"] = {"class": "logging.FileHandler", "filename": file, **handler}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "trace": {"()": "aa_site.log_format.TraceFilter"},
            "query_string": {"()": "aa_site.log_format.QueryStringFilter"},
        },
        "formatters": {log_format: formatters[log_format]},
        "handlers": handlers,
        "root": {"handlers": list(handlers), "level": level},
        # httpx logs every request URL at INFO, and SalesforceLWC carries the
        # provider token in the query string: keep it at WARNING.
        "loggers": {
            "daphne": {"level": "WARNING"},
            "django": {"level": "INFO"},
            # Django writes a WARNING for every 4xx answer ("Not Found: /x", "Too Many Requests: /register"):
            # a line per refused request, which a client can multiply at will, and which says no more than the
            # access line (method, path, status) that ACCESS_LOG keeps for each 4xx, or than the refusal's own
            # line where the reason matters (a push's, a provider's). Its ERROR line for a 5xx stays: an
            # unexpected exception's traceback (a 503 the service means to give is logged where it is decided).
            "django.request": {"level": "ERROR"},
            # Django's own configuration gives runserver's request log a stderr handler of its own, without
            # these filters: through the root's handlers instead, as every other logger.
            "django.server": {"propagate": True},
            "httpx": {"level": "WARNING"},
        },
    }
