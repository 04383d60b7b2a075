"""JSON logs for every PAS process, uvicorn's own lines included, with secrets masked."""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog
from structlog.typing import EventDict, WrappedLogger

from libs.common.redaction import redact_mapping
from libs.common.telemetry import add_trace_ids

LogFormat = Literal["json", "console"]


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Mask secrets in every field of a line (and in its message and traceback): fields named
    like secrets, credentials inside URLs and DSNs, bearer tokens."""
    return redact_mapping(event_dict)


_SHARED_PROCESSORS: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    # Beside the request id: the trace and span the line was logged in, when one is active.
    add_trace_ids,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
    structlog.processors.format_exc_info,
    # Last, so that it sees the rendered traceback too; foreign (stdlib) lines pass here as well.
    redact_secrets,
]


def configure_logging(level: str = "INFO", fmt: LogFormat = "json") -> None:
    """Route structlog and stdlib logging (uvicorn included) to one stream of JSON lines.

    Idempotent: every app factory calls it, the last call wins.
    """
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            # Drop lines below the level before any work is done on them (hot paths log).
            structlog.stdlib.filter_by_level,
            *_SHARED_PROCESSORS,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_SHARED_PROCESSORS,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request at INFO; our access log already says what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # uvicorn configures its loggers before it imports the app, each at INFO whatever level
    # was asked: its own lines go through ours, at ours.
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers[:] = []
        uvicorn_logger.setLevel(logging.NOTSET)
        uvicorn_logger.propagate = True
    # Its access line is pas.access's (request_context.py: one line a request, with its id and
    # duration), so its access logger is left with nowhere to write: uvicorn checks that
    # (``hasHandlers``) and then skips the line altogether, as ``--no-access-log`` asks.
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False
