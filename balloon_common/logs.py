"""structlog set-up, called once by each process's entry point."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(service: str, *, json: bool | None = None, level: int = logging.INFO) -> None:
    """JSON lines when stdout is not a terminal, a readable console otherwise.

    Every event carries `service`, a timestamp and the log level.
    """
    if json is None:
        json = not sys.stdout.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
