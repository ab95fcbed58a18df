"""Structured JSON logs (structlog) for the service and the workers.

Every line carries ``run_id``, ``tenant`` and ``profile`` (null when a line is about no run), plus
whatever the code bound with :func:`bind`. Library modules keep using ``logging.getLogger``; their
lines go through the same JSON renderer, with the same bound context.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, TextIO

import structlog

CONTEXT_KEYS = ("run_id", "tenant", "profile")


def _context_keys(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in CONTEXT_KEYS:
        event_dict.setdefault(key, None)
    return event_dict


def configure_logging(level: str = "INFO", *, stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging to one JSON-lines handler on ``stream`` (stderr)."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _context_keys,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log duplicates our request log line; its error log is kept.
    logging.getLogger("uvicorn.access").handlers = []
    logging.getLogger("uvicorn.access").propagate = False
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True


def get_logger(name: str) -> Any:
    return structlog.stdlib.get_logger(name)


@contextmanager
def bind(**values: Any) -> Iterator[None]:
    """Bind ``values`` to every log line of this thread/task inside the block."""
    with structlog.contextvars.bound_contextvars(**values):
        yield
