"""structlog configured once: JSON lines on stderr, request/task ids from contextvars.

Wharf's own events go straight from structlog to stderr (no stdlib `LogRecord` on the way: the
proxy logs every request, and the stdlib path cost a tenth of its CPU). Standard-library loggers
(aiohttp, alembic, asyncio) go through the same processors and renderer, so every line a
service prints is one JSON object.
"""

from __future__ import annotations

import logging
import sys

import structlog

from wharf_shared.config import mask_url

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(level: str = "info", service: str = "wharf") -> None:
    threshold = _LEVELS.get(level, logging.INFO)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,  # a stdlib record's name, or a _NamedWriter's
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            _MaskingJSONRenderer(),
        ],
        logger_factory=_NamedWriter,
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _MaskingJSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(threshold)
    # aiohttp's access log duplicates our request metrics and log lines.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # At debug level botocore logs every request's headers, the signed Authorization among them.
    for name in ("botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(name).setLevel(max(threshold, logging.INFO))
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)


class _MaskingJSONRenderer(structlog.processors.JSONRenderer):
    """JSON lines with URL passwords masked wherever they are (a field, a message, a traceback):
    an error from a database or Redis driver can quote the URL it was given. One scan of the
    rendered line, cheaper than visiting every field of every proxy access line."""

    def __call__(
        self, logger: structlog.types.WrappedLogger, name: str, event_dict: structlog.types.EventDict
    ) -> str | bytes:
        line = super().__call__(logger, name, event_dict)
        return mask_url(line) if isinstance(line, str) else line


class _NamedWriter(structlog.WriteLogger):
    """Writes rendered lines to stderr and remembers the name it was asked for."""

    def __init__(self, name: str = "") -> None:
        super().__init__(sys.stderr)
        self.name = name


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
