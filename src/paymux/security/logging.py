"""Logging setup for paymux: JSON lines on stderr, with card data and credentials redacted.

:func:`configure_logging` puts one handler on the root logger. Redaction runs
as a filter on that handler, so it covers records from every logger that
propagates to the root, including ``uvicorn.*``, ``sqlalchemy.*`` and
``httpx``; uvicorn's own handlers are removed so its records take that path
too. Call it after anything else that configures logging: when starting
uvicorn programmatically pass ``log_config=None``, or uvicorn's ``dictConfig``
puts its own, unredacted, handlers back.

The request id of the current request lives in :data:`request_id_var`; both
formatters print it.

This module is ``paymux.security.logging``; ``import logging`` inside it is an
absolute import and means the standard library module.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
from datetime import UTC, datetime
from typing import Any, Final, TextIO, cast

from paymux.security.redact import RedactingFilter, redact, redact_data

__all__ = [
    "JsonFormatter",
    "RequestIdFilter",
    "configure_logging",
    "install_redaction",
    "request_id_var",
]

#: The id of the request being handled, set by the HTTP middleware.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "paymux_request_id", default=None
)

_STANDARD_ATTRS: Final = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__
) | {"message", "asctime", "taskName", "request_id"}

# Keys JsonFormatter writes itself; an ``extra`` with one of these names is renamed.
_RESERVED_KEYS: Final = frozenset(
    {"ts", "level", "logger", "message", "request_id", "exc", "stack"}
)

_UVICORN_LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access")
_TEXT_FORMAT: Final = "%(asctime)s %(levelname)-8s %(name)s [%(request_id)s] %(message)s"

# JSON lines keep non-ASCII text as it is: readable, and no longer than needed.
_dumps = functools.partial(json.dumps, ensure_ascii=False)


class _RootHandler(logging.StreamHandler[TextIO]):
    """The handler configure_logging installs; calling it again replaces this one."""


def _request_id(record: logging.LogRecord) -> str | None:
    """The request id stamped on the record, or else the current one."""
    value = getattr(record, "request_id", None)
    if value is None:
        return request_id_var.get()
    return str(value)


class RequestIdFilter(logging.Filter):
    """Stamps ``record.request_id`` from :data:`request_id_var` unless already set.

    On a handler this runs in the thread (and context) that logged the record,
    so the id is right even if the record is formatted elsewhere later.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


def _json_default(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


class JsonFormatter(logging.Formatter):
    """Formats each record as one JSON object on one line.

    Keys: ``ts`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``,
    ``message``, ``request_id`` (the record's ``request_id`` attribute, else
    :data:`request_id_var`), every ``extra`` attribute, ``exc`` (the formatted
    exception) and ``stack`` (stack info) when present. An ``extra`` key that
    clashes with one of these is written as ``extra_<key>``. Values that are
    not JSON types are written as their ``str()``.

    Everything is redacted, on its own and again as a whole line; if that final
    pass would break the JSON, the redacted line is wrapped in a fresh object.
    """

    def format(self, record: logging.LogRecord) -> str:
        try:
            return self._format(record)
        except Exception as exc:
            # Raising would make the handler print the raw record to stderr.
            return json.dumps(
                {
                    "ts": self._timestamp(record),
                    "level": record.levelname,
                    "logger": record.name,
                    "message": "[log record withheld: formatting failed with "
                    f"{type(exc).__name__}]",
                    "request_id": None,
                }
            )

    def _format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:
            message = f"{record.msg!s} [could not format arguments: {record.args!r}]"
        # ts, level and logger are made here and safe; everything else is redacted.
        payload: dict[str, Any] = {
            "ts": self._timestamp(record),
            "level": record.levelname,
            "logger": record.name,
        }
        unsafe: dict[str, Any] = {"message": message, "request_id": _request_id(record)}
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS:
                unsafe[f"extra_{key}" if key in _RESERVED_KEYS else key] = value
        if record.exc_info and record.exc_info[0] is not None:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            unsafe["exc"] = record.exc_text
        if record.stack_info:
            unsafe["stack"] = self.formatStack(record.stack_info)
        # typing.cast does nothing at run time: a mutant of its type argument cannot be seen.
        payload.update(cast(dict[str, Any], redact_data(unsafe)))  # pragma: no mutate

        line = _dumps(payload, default=_json_default)
        guarded = redact(line)
        if guarded != line:
            try:
                json.loads(guarded)
            except ValueError:
                guarded = _dumps(
                    {
                        "ts": payload["ts"],
                        "level": record.levelname,
                        "logger": record.name,
                        "message": guarded,
                        "request_id": payload["request_id"],
                    },
                )
        return guarded

    @staticmethod
    def _timestamp(record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, tz=UTC)
        return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _TextFormatter(logging.Formatter):
    """Plain text for development, with the request id and a final redaction pass."""

    def format(self, record: logging.LogRecord) -> str:
        had_id = "request_id" in record.__dict__
        saved = record.__dict__.get("request_id")
        if saved is None:
            record.request_id = request_id_var.get() or "-"
        try:
            return redact(super().format(record))
        finally:
            # Leave the record as it was for other handlers' formatters.
            if had_id:
                record.request_id = saved
            else:
                del record.__dict__["request_id"]


def install_redaction(handler: logging.Handler) -> None:
    """Attach a :class:`RedactingFilter` to ``handler`` unless it already has one.

    For handlers set up outside :func:`configure_logging`, such as pytest's
    ``caplog.handler``.
    """
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(RedactingFilter())


_PARAMETER_LOGGERS = ("aiosqlite", "asyncpg", "sqlalchemy.engine")
_DEFAULT_LEVEL: Final = "INFO"


def configure_logging(level: str = _DEFAULT_LEVEL, json_output: bool = True) -> None:
    """Send all logging to stderr, redacted, as JSON lines (or text).

    Installs one ``StreamHandler(sys.stderr)`` on the root logger with
    :class:`JsonFormatter` (or a text formatter) plus :class:`RequestIdFilter`
    and :class:`RedactingFilter`, sets the root level, and makes uvicorn's
    loggers propagate to the root with no handlers of their own. Calling it
    again replaces the handler it installed before. Other handlers already on
    the root logger are kept and get a :class:`RedactingFilter` as well.

    Raises ValueError for an unknown level name.
    """
    levels = logging.getLevelNamesMapping()
    level_name = level.strip().upper()
    if level_name not in levels:
        raise ValueError(f"unknown log level {level!r}")

    handler = _RootHandler()  # writes to sys.stderr (as it is now) by default
    handler.setFormatter(JsonFormatter() if json_output else _TextFormatter(_TEXT_FORMAT))
    handler.addFilter(RequestIdFilter())
    install_redaction(handler)

    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _RootHandler):
            root.removeHandler(old)
            old.close()
        else:
            install_redaction(old)
    root.addHandler(handler)
    root.setLevel(levels[level_name])

    for name in _UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        for old in list(uvicorn_logger.handlers):
            uvicorn_logger.removeHandler(old)
        uvicorn_logger.propagate = True
    # Database drivers log every statement with its parameters (emails, names) at DEBUG:
    # keep them at WARNING or above whatever the level asked for.
    for name in _PARAMETER_LOGGERS:
        logging.getLogger(name).setLevel(max(levels[level_name], logging.WARNING))
