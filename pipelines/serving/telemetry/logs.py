"""Log lines as text (the default, for a terminal) or JSON (one object a line), each with the
request id of the request or job it belongs to.

:func:`configure_logging` is called by the CLI only (library code never configures logging).
Messages are the code's own; the code logs no personal settings or secrets (ids, counts and
timings only), and the JSON form adds nothing from the request beyond its id.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from pipelines.serving.telemetry.context import current_request_id

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
#: Loggers that say every routine step at INFO (the scheduler logs each 15-second run).
QUIET_LOGGERS = (
    "httpx",
    "sentence_transformers",
    "urllib3",
    "filelock",
    "apscheduler.scheduler",
    "apscheduler.executors.default",
)


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id``: the current request's or job's id, ``-`` outside one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request id, and the exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or current_request_id(),
            "thread": record.threadName,
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a line is logged: a test runner swaps and closes
    its captured streams, and a background thread logging later must not hit a closed one."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(
    *,
    level: int = logging.INFO,
    fmt: Literal["text", "json"] = "text",
    stream: Any = None,
    force: bool = False,
) -> logging.Handler | None:
    """Log to ``stream`` (stderr) in ``fmt`` at ``level``, every line with its request id.

    Like ``logging.basicConfig``: when the root logger already has handlers (a host that set up
    its own logging, a test runner) nothing changes and None is returned, unless ``force``
    replaces them. The CLI calls it once per process; returns the handler it installed.
    """
    root = logging.getLogger()
    if root.handlers and not force:
        return None
    handler = logging.StreamHandler(stream) if stream is not None else _CurrentStderrHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler
