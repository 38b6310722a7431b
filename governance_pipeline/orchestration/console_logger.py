"""The jobs' ``console`` logger: Dagster's coloured console logger, tracebacks optional.

A failed step is logged with its whole stack (``Stack Trace: ...``). The command line shows its
own ``error GP-...`` line and fix, so without ``--debug`` it runs the job with
``tracebacks: false``: the failure stays one line naming the error, and the traceback is kept
for ``--debug`` (and for the Dagster UI, where the event log holds it either way).
"""

from __future__ import annotations

import logging
from typing import Any

from dagster import Field, InitLoggerContext, logger
from dagster._core.log_manager import LOG_RECORD_METADATA_ATTR
from dagster._core.utils import coerce_valid_log_level
from dagster._utils.log import create_console_logger


class _OneLineErrors(logging.Filter):
    """Replace the error text (message and stack) Dagster appends to an event by its first
    line: for our steps, ``dagster...Failure: GP-...: message``."""

    def filter(self, record: logging.LogRecord) -> bool:
        meta: Any = getattr(record, LOG_RECORD_METADATA_ATTR, None)
        event = meta.get("dagster_event") if isinstance(meta, dict) else None
        error = getattr(getattr(event, "event_specific_data", None), "error", None)
        if error is not None and isinstance(record.msg, str) and "\n\n" in record.msg:
            head = record.msg.split("\n\n", 1)[0]
            first = error.message.strip().splitlines()[0] if error.message.strip() else ""
            record.msg = f"{head} {first} (--debug shows the traceback)"
            record.args = ()
        return True


@logger(
    {
        "log_level": Field(str, is_required=False, default_value="INFO"),
        "name": Field(str, is_required=False, default_value="dagster"),
        "tracebacks": Field(bool, is_required=False, default_value=True,
                            description="Log a failed step's stack trace (false: one line)."),
    },
    description="Dagster's coloured console logger; tracebacks: false keeps failures to a line.",
)
def console_logger(init_context: InitLoggerContext) -> logging.Logger:
    config = init_context.logger_config
    log = create_console_logger(name=config["name"],
                                level=coerce_valid_log_level(config["log_level"]))
    if not config["tracebacks"]:
        for handler in log.handlers:
            handler.addFilter(_OneLineErrors())
    return log
