"""structlog set up once per process: readable on a terminal, JSON in containers."""

from __future__ import annotations

import logging
import sys

import structlog


class _Stderr:
    """Writes each line to whatever sys.stderr is at the time (it may be replaced, e.g. by tests)."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    debug = info = warning = warn = error = critical = exception = log = msg


def setup(fmt: str = "console", level: str = "info") -> None:
    """Configure structlog for the process; every logger binds its service and run id."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=lambda *_: _Stderr(),
        cache_logger_on_first_use=False,
    )


def get(service: str, **bound: object) -> structlog.typing.FilteringBoundLogger:
    """A logger bound to a service name (and any ids given)."""
    return structlog.get_logger().bind(service=service, **bound)
