"""The server log of ``lmgate serve``: one line per request, one line per failed call, text or JSON.

* ``lmgate.proxy.access`` (INFO): one line per LLM request when it ends (a stream when its
  last byte is sent or the client left, status 499): method, path, status, model,
  deployment, caller, latency, tokens, cost, and the error type when it failed.
* ``lmgate.proxy`` (ERROR or WARNING): one line per failed call, naming the mapped error,
  the status the client got and the status the upstream answered.
* Everything else (uvicorn's startup and error lines, lmgate's own warnings) goes through the
  same handler and formatter, so ``--log-format json`` gives only JSON lines (one object a
  line, for log shippers) and the default text format reads the same everywhere.

Lines are built only when the logger is enabled for their level. Values a client chose (a
model name, a path) are quoted and escaped in text lines, so they cannot forge a line; every
part of every line (the message and each field: path, model, deployment, error detail) passes
through secret masking, text or JSON, and the caller shows as a key alias or a prefix of the
key's SHA-256, never the key. uvicorn's own access log stays off: this one replaces it.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

import orjson

from .._secrets import LOG_FIELDS, MaskingFilter, remembered_secrets, scrub, scrub_fields, scrub_often
from ..types import Usage

LOG_FORMATS = ("text", "json")
TRACE = 5  # uvicorn's "trace" level, below DEBUG
ACCESS = logging.getLogger("lmgate.proxy.access")
ERRORS = logging.getLogger("lmgate.proxy")
_FIELDS = LOG_FIELDS  # the LogRecord attribute that carries a line's fields (MaskingFilter masks them)
_IN_MESSAGE = "lmgate_in_message"  # fields the text line already shows in its message
_REQUEST_IN_MESSAGE = ("method", "path", "status")
_MAX_VALUE_CHARS = 200  # a client-chosen value (model name, path) is cut to this in a line
_dict_get = dict.get
_BARE = re.compile(r"[^\s\"'=\\\x00-\x1f\x7f]+")


# ---------------------------------------------------------------------- set-up


def logging_config(level: str = "info", log_format: str = "text") -> dict[str, Any]:
    """The ``logging.config.dictConfig`` dict for the proxy; also given to uvicorn as ``log_config``,
    so every worker process sets up the same handler."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    numeric = _level(level)
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    # the masking filter sits on the handler, so every line (uvicorn's and tracebacks too) is masked
    handler = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "formatter": "lmgate",
        "filters": ["mask"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"lmgate": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "filters": {"mask": {"()": "lmgate._secrets.MaskingFilter"}},
        "handlers": {"lmgate": handler},
        "loggers": {
            "lmgate": {"handlers": ["lmgate"], "level": numeric, "propagate": False},
            "uvicorn": {"handlers": ["lmgate"], "level": numeric, "propagate": False},
            "uvicorn.error": {"level": numeric},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }


def setup_logging(level: str = "info", log_format: str = "text") -> None:
    """Send lmgate's and uvicorn's log records to stderr in ``log_format``, from ``level`` up."""
    import logging.config

    logging.config.dictConfig(logging_config(level, log_format))


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    name = level.strip().upper()
    if name == "TRACE":
        logging.addLevelName(TRACE, "TRACE")
        return TRACE
    value = logging.getLevelName(name)
    if not isinstance(value, int):
        raise ValueError(
            f"log level must be one of trace, debug, info, warning, error, critical, got {level!r}"
        )
    return value


# ---------------------------------------------------------------------- formatters


_last_second: tuple[int, str] = (-1, "")  # the last second formatted (strftime is the slow part)
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))  # the end of a timestamp, formatted once


def _timestamp(record: logging.LogRecord) -> str:
    return _timestamp_at(record.created, record.msecs)


def _timestamp_at(created: float, msecs: float) -> str:
    global _last_second
    second = int(created)
    cached = _last_second  # one read: another thread may replace it, never half of it
    if cached[0] != second:
        cached = _last_second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return cached[1] + _MILLIS[int(msecs)]


class TextFormatter(logging.Formatter):
    """``2026-01-31T12:00:00.123Z INFO  lmgate.proxy.access: POST /v1/chat/completions 200 model=fast …``"""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname:<5} {record.name}: {record.getMessage()}"
        fields = getattr(record, _FIELDS, None)
        if fields:
            skip = getattr(record, _IN_MESSAGE, ())
            for k, v in fields.items():  # a loop, not a join over a generator: once per request
                if v is not None and k not in skip:
                    line += f" {k}={_text_value(v)}"
        exc = _exception_text(self, record)
        if exc:
            line += "\n" + exc
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time``, ``level``, ``logger``, ``message``, the line's fields, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, _FIELDS, None)
        if fields:
            for key, value in fields.items():
                if value is not None and key not in out:
                    out[key] = value
        exc = _exception_text(self, record)
        if exc:
            out["exc"] = exc
        return orjson.dumps(out, default=str).decode()


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    """The record's traceback, masked: the one ``MaskingFilter`` put in ``exc_text``, never
    ``exc_info`` formatted again (that would bring back what the filter masked)."""
    if record.exc_text:
        return record.exc_text
    if record.exc_info:
        record.exc_text = scrub(formatter.formatException(record.exc_info))
        return record.exc_text
    return None


_SHOWN: dict[str, str] = {}  # a string value as a text line shows it: the same few on every line
_SHOWN_MAX = 1024  # client-chosen values among them: past this many, the rest are not kept


def _text_value(value: Any) -> str:
    kind = type(value)
    if kind is str:
        shown = _SHOWN.get(value)
        if shown is None:
            shown = _shown(value)
            if len(_SHOWN) < _SHOWN_MAX:
                _SHOWN[value] = shown
        return shown
    if kind is int:
        return str(value)
    if kind is float:
        return f"{value:.6g}"
    return _shown(str(value))


def _shown(text: str) -> str:
    if _BARE.fullmatch(text):
        return text
    return orjson.dumps(text).decode()  # quoted, with newlines and quotes escaped


# ---------------------------------------------------------------------- the lines


def log_request(
    scope: Mapping[str, Any],
    status: int,
    model: str | None,
    deployment: Any,
    user: Any,
    seconds: float,
    usage: Any = None,
    cost: Any = None,
    error: BaseException | None = None,
    level: int = logging.INFO,
) -> None:
    """The request's line on ``lmgate.proxy.access``, built only when ``level`` is on."""
    if not ACCESS.isEnabledFor(level):
        return
    handler = _direct_handler(level)
    if handler is not None and not _FORMATS[type(handler.formatter)]:
        _text_line(handler, level, scope, status, model, deployment, user, seconds, usage, cost, error)
        return
    method = str(scope.get("method") or "-")
    path = _clip(str(scope.get("path") or "-"))
    shown_model = _clip(model) if model else None
    shown_deployment = deployment_label(deployment)
    key = caller_label(user)
    latency_ms = round(seconds * 1000, 1)
    prompt, completion = _tokens(usage)
    cost_usd = float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None
    error_name = error_label(error) if error is not None else None
    args = (method, _text_value(path), status)
    fields: dict[str, Any] = {
        "method": method,
        "path": path,
        "status": status,
        "model": shown_model,
        "deployment": shown_deployment,
        "key": key,
        "latency_ms": latency_ms,
    }
    if prompt is not None or completion is not None:
        fields["prompt_tokens"] = prompt
        fields["completion_tokens"] = completion
    if cost_usd is not None:
        fields["cost_usd"] = cost_usd
    if error_name is not None:
        fields["error"] = error_name
    if handler is not None:  # the JSON line
        _write_direct(handler, level, None, args, fields)
        return
    record = _access_record(level, args)
    record.__dict__.update({_FIELDS: fields, _IN_MESSAGE: _REQUEST_IN_MESSAGE})
    ACCESS.handle(record)  # filters and handlers as ACCESS.log would; no caller lookup


# ---------------------------------------------------------------------- the direct line
#
# With the logging set up as ``setup_logging`` (or uvicorn, from ``logging_config``) sets it up,
# a request line goes to exactly one place: the one stream handler, through the masking filter
# and one of the two formatters above. Then the line is built here as those three would build it
# and written under the handler's lock, without a LogRecord, ``Logger.handle``'s walk or the
# formatter's generic parts: that was a sixth of the proxy's own CPU per forwarded request
# (issue 18). Any other set-up (a handler or filter someone added, another formatter, a record
# factory, a handler level above the line's) takes the record path, so what it sees is unchanged.

_FORMATS: dict[type, bool] = {TextFormatter: False, JsonFormatter: True}  # exact type -> is JSON


def _direct_handler(level: int) -> logging.StreamHandler[Any] | None:
    """The one handler a line at ``level`` reaches, when a line may be written to it directly."""
    if ACCESS.filters or logging.getLogRecordFactory() is not logging.LogRecord:
        return None
    found: logging.Handler | None = None
    logger: logging.Logger | None = ACCESS
    while logger is not None:
        handlers = logger.handlers
        if handlers:  # most loggers on the way have none
            for handler in handlers:
                if level >= handler.level:
                    if found is not None:  # more than one place: the record path
                        return None
                    found = handler
        if not logger.propagate:
            break
        logger = logger.parent
    if (
        found is None  # logging's last resort, as Logger.callHandlers would use it
        or type(found) is not logging.StreamHandler
        or type(found.formatter) not in _FORMATS
        or len(found.filters) != 1
        or type(found.filters[0]) is not MaskingFilter
    ):
        return None
    return found


def _text_line(
    handler: logging.StreamHandler[Any],
    level: int,
    scope: Mapping[str, Any],
    status: int,
    model: str | None,
    deployment: Any,
    user: Any,
    seconds: float,
    usage: Any,
    cost: Any,
    error: BaseException | None,
) -> None:
    """The text line of a request, as ``TextFormatter`` would format its record, written to the
    one handler: the part made of the route, status, model, deployment and caller is made once
    per such combination (``_text_prefix``), the rest from the values (once a request: issue 18)."""
    global _prefixes, _prefixes_for
    remembered = remembered_secrets()
    if _prefixes_for is not remembered:  # a new secret: every cached part is masked again
        _prefixes, _prefixes_for = {}, remembered
    shown_deployment = deployment_label(deployment)
    key = caller_label(user)
    cache_key = (level, scope.get("method"), scope.get("path"), status, model, shown_deployment, key)
    prefix = _prefixes.get(cache_key)
    if prefix is None:
        path = _clip(str(scope.get("path") or "-"))
        args = (str(scope.get("method") or "-"), _text_value(path), status)
        prefix = _text_prefix(level, args, _clip(model) if model else None, shown_deployment, key)
        if len(_prefixes) < _PREFIXES_MAX:
            _prefixes[cache_key] = prefix
    global _last_second
    now = time.time()
    second = int(now)
    cached = _last_second  # one read: another thread may replace it, never half of it
    if cached[0] != second:
        cached = _last_second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    # the parts after the latency, each "" when the line has none, joined once (one string a line)
    tokens = cost_text = error_text = ""
    if usage:
        if type(usage) is Usage or type(usage) is dict:  # _tokens written out: once a request
            # dict's own get, not looked up through a Usage's __getattr__ hook
            prompt, completion = _dict_get(usage, "prompt_tokens"), _dict_get(usage, "completion_tokens")
        else:
            prompt, completion = _tokens(usage)
        if type(prompt) is int and type(completion) is int:  # the usual usage block
            tokens = f" prompt_tokens={prompt} completion_tokens={completion}"
        else:
            if prompt is not None:
                tokens = f" prompt_tokens={_text_value(prompt)}"
            if completion is not None:
                tokens += f" completion_tokens={_text_value(completion)}"
    if type(cost) is float:
        cost_text = f" cost_usd={cost:.6g}"
    elif isinstance(cost, (int, float)) and not isinstance(cost, bool):
        cost_text = f" cost_usd={float(cost):.6g}"
    if error is not None:
        error_text = f" error={_text_value(scrub_often(error_label(error)))}"
    latency = f"{seconds * 1000:.1f}"  # _latency_text written out (once a request: issue 18)
    if len(latency) > 7:
        latency = _latency_text(seconds)
    elif latency[-1] == "0":
        latency = latency[:-2]
    line = (
        f"{cached[1]}{_MILLIS[int((now - second) * 1000)]}{prefix}"  # msecs as LogRecord computes them
        f" latency_ms={latency}{tokens}{cost_text}{error_text}{handler.terminator}"
    )
    _emit(handler, line, level, None, None, scope, status, terminated=True)


def _latency_text(seconds: float) -> str:
    """``f"{round(seconds * 1000, 1):.6g}"``, the record path's text of ``latency_ms``, in one float
    format instead of a ``round`` and a format (issue 18). Both round the exact value to one decimal
    the same way (the same correctly rounded conversion); ``.6g`` then drops a ``.0`` and shows up
    to six digits, which is all of them below 100,000 ms; a longer figure takes the old way."""
    text = f"{seconds * 1000:.1f}"
    if len(text) > 7:  # "99999.9" is the longest shown the same both ways
        return f"{round(seconds * 1000, 1):.6g}"
    return text[:-2] if text[-1] == "0" else text


def _request_args(scope: Mapping[str, Any], status: int) -> tuple[Any, ...]:
    return (str(scope.get("method") or "-"), _text_value(_clip(str(scope.get("path") or "-"))), status)


def _emit(
    handler: logging.StreamHandler[Any],
    line: str,
    level: int,
    args: tuple[Any, ...] | None,
    fields: dict[str, Any] | None,
    scope: Mapping[str, Any] | None = None,
    status: int = 0,
    terminated: bool = False,
) -> None:
    """``line`` written as ``handler.emit`` writes one (``terminated``: it ends with the handler's
    terminator already); a failure reported as it reports one, with the request's record
    (``args``: method, path, status; else made from ``scope`` and ``status``) made only then."""
    lock = handler.lock  # what handler.acquire()/release() take, without their two calls
    if lock:
        lock.acquire()
    try:
        stream = handler.stream
        stream.write(line if terminated else line + handler.terminator)
        if stream is not _file_stream or not stream.write_through:  # else the write did it all
            if stream and hasattr(stream, "flush"):  # StreamHandler.flush, under the lock held already
                stream.flush()
            _note_file_stream(stream)
    except RecursionError:  # as StreamHandler.emit
        raise
    except Exception:
        record = _access_record(level, args if args is not None else _request_args(scope or {}, status))
        record.__dict__.update({_FIELDS: fields or {}, _IN_MESSAGE: _REQUEST_IN_MESSAGE})
        handler.handleError(record)
    finally:
        if lock:
            lock.release()


# The stream of the last line when it is a text layer straight over a file (Python's own stderr):
# with write-through on, its write hands the bytes to the file at once, and the flush that
# ``StreamHandler.emit`` adds does nothing but check the file is open, which the write checked;
# so a line to it is not flushed again (issue 18). Kept by identity, so the check is one
# comparison; write-through is read each time (``reconfigure`` may turn it off).
_file_stream: Any = None


def _note_file_stream(stream: Any) -> None:
    global _file_stream
    if type(stream) is io.TextIOWrapper and type(stream.buffer) is io.FileIO:
        _file_stream = stream


# a text line's part between its time and its latency: the same few on every line (route, status,
# model, deployment, caller), so made once each while the remembered secrets stay the same
_prefixes: dict[tuple[Any, ...], str] = {}
_prefixes_for: Any = None
_PREFIXES_MAX = 1024  # client-chosen values among them: past this many, the rest are made each time


def _text_prefix(level: int, args: tuple[Any, ...], model: Any, deployment: Any, key: Any) -> str:
    prefix = f" {logging.getLevelName(level):<5} {ACCESS.name}: {scrub_often(_REQUEST_MESSAGE % args)}"
    # every field masked as MaskingFilter masks a record's fields (a key sent as a model name)
    if model is not None:
        prefix += f" model={_text_value(scrub_often(model))}"
    if deployment is not None:
        prefix += f" deployment={_text_value(scrub_often(deployment))}"
    if key is not None:
        prefix += f" key={_text_value(scrub_often(key))}"
    return prefix


def _now_stamp() -> str:
    now = time.time()
    return _timestamp_at(now, int((now - int(now)) * 1000) + 0.0)  # msecs as LogRecord computes them


def _write_direct(
    handler: logging.StreamHandler[Any],
    level: int,
    text: str | None,
    args: tuple[Any, ...],
    fields: dict[str, Any] | None,
) -> None:
    """Write the line ``handler`` would write for this request's record: the text line ``text``,
    or the JSON line of ``fields``."""
    if text is not None:
        line = text
    else:
        out: dict[str, Any] = {
            "time": _now_stamp(),
            "level": logging.getLevelName(level),
            "logger": ACCESS.name,
            "message": scrub_often(_REQUEST_MESSAGE % args),  # what MaskingFilter makes of it
        }
        for key, value in scrub_fields(fields or {}).items():  # as MaskingFilter masks them
            if value is not None and key not in out:
                out[key] = value
        line = orjson.dumps(out, default=str).decode()
    _emit(handler, line, level, args, fields)


_REQUEST_MESSAGE = "%s %s %d"
# the parts of a request line's record that are the same on every line of one thread of one process
_record_template: tuple[tuple[Any, ...], logging.LogRecord] | None = None


def _access_record(level: int, args: tuple[Any, ...]) -> logging.LogRecord:
    """The record of a request line, as ``Logger.makeRecord`` would build it, at a fraction of
    the cost: once per request, ``logging.LogRecord`` is a tenth of the proxy's own CPU (issue 18).
    The thread and process fields come from a record built the normal way for this thread;
    a record factory someone installed (``logging.setLogRecordFactory``) is used as it is."""
    global _record_template
    if logging.getLogRecordFactory() is not logging.LogRecord:
        return ACCESS.makeRecord(ACCESS.name, level, __file__, 0, _REQUEST_MESSAGE, args, None, "log_request")
    where = (
        threading.get_ident(),
        os.getpid(),
        logging.logThreads,
        logging.logProcesses,
        logging.logMultiprocessing,
    )
    cached = _record_template
    if cached is None or cached[0] != where:
        base = logging.LogRecord(ACCESS.name, level, __file__, 0, _REQUEST_MESSAGE, args, None, "log_request")
        cached = _record_template = (where, base)
    template = cached[1]
    record = logging.LogRecord.__new__(logging.LogRecord)
    attributes = record.__dict__
    attributes.update(template.__dict__)
    now = time.time()
    attributes["created"] = now
    attributes["msecs"] = int((now - int(now)) * 1000) + 0.0  # as LogRecord computes them
    attributes["relativeCreated"] = template.relativeCreated + (now - template.created) * 1000
    attributes["levelno"] = level
    attributes["levelname"] = logging.getLevelName(level)
    attributes["args"] = args
    if "taskName" in attributes:  # Python 3.12+: the task logging, as LogRecord finds it
        attributes["taskName"] = _task_name()
    return record


def _task_name() -> str | None:
    if not getattr(logging, "logAsyncioTasks", False):
        return None
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop
        return None
    return task.get_name() if task is not None else None


def log_failed_call(
    error: BaseException, status: int, message: str, model: str | None, user: Any, deployment: Any = None
) -> None:
    """The failed call's line on ``lmgate.proxy``: ERROR when the operator has to act (an upstream
    5xx, 401, 403 or 404, no answer at all, an unexpected exception), WARNING for what the request
    itself caused (other 4xx, 429). An unexpected exception carries its traceback. ``deployment``
    is the config's deployment the call failed at, when one was tried."""
    from .. import exceptions as exc

    upstream = error.status_code if isinstance(error, exc.APIError) else None
    unexpected = not isinstance(error, exc.LmgateError) and status >= 500
    operator = (
        status >= 500
        or upstream in (401, 403, 404)
        or isinstance(error, exc.APIConnectionError)
        or unexpected
    )
    level = logging.ERROR if operator else logging.WARNING
    if not ERRORS.isEnabledFor(level):
        return
    fields = {
        "error": type(error).__name__,
        "status": status,
        "upstream_status": upstream,
        "provider": getattr(error, "llm_provider", None),
        "model": _clip(model) if model else None,
        "deployment": deployment_label(deployment),
        "key": caller_label(user),
        "detail": _clip(scrub(message), 500),
    }
    ERRORS.log(level, "call failed", extra={_FIELDS: fields}, exc_info=error if unexpected else None)


def error_label(error: BaseException) -> str:
    """An error as the log names it: the proxy's own answers by their code (``model_not_found``,
    ``invalid_api_key``), anything else by its class (``AuthenticationError``)."""
    from .errors import ProxyError

    if isinstance(error, ProxyError):
        return error.code if not error.code.isdigit() else error.type
    return type(error).__name__


def deployment_label(deployment: Any) -> str | None:
    """A deployment as the log names it: its configured ``model_info.id``, else its model string."""
    if deployment is None:
        return None
    configured = deployment.model_info.get("id")
    return str(configured) if configured is not None else deployment.model


def caller_label(user: Any) -> str | None:
    """The caller: its key alias when it has one, else the first 12 hex digits of its key's SHA-256."""
    if user is None:
        return None
    alias = getattr(user, "key_alias", None)
    if alias:
        return str(alias)
    digest = getattr(user, "api_key", None)
    return f"sha256:{digest[:12]}" if digest else None


def _tokens(usage: Any) -> tuple[Any, Any]:
    if not usage:
        return None, None
    if isinstance(usage, dict):
        return usage.get("prompt_tokens"), usage.get("completion_tokens")
    return getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None)


def _clip(text: str, limit: int = _MAX_VALUE_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


__all__ = [
    "LOG_FORMATS",
    "JsonFormatter",
    "TextFormatter",
    "caller_label",
    "deployment_label",
    "error_label",
    "log_failed_call",
    "log_request",
    "logging_config",
    "setup_logging",
]
