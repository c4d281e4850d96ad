"""Status lines go through `logging` (the logger `pipeline`), to standard output: `PIPELINE_LOG_LEVEL=WARNING`
quiets them, `DEBUG` adds detail. The one error line and each step's verdict stay plain output. MLflow's own
log lines lose the credentials a tracking URI carries (its warnings repeat the URI as given)."""

import logging
import os
import sys

from pipeline.errors import without_credentials

LOGGER = logging.getLogger("pipeline")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def configure() -> None:
    """Set the level from PIPELINE_LOG_LEVEL (default INFO); an unknown level ends the program in one line."""
    level = os.environ.get("PIPELINE_LOG_LEVEL", "INFO").upper()
    if level not in LEVELS:
        sys.exit(f"error: PIPELINE_LOG_LEVEL={level!r}: expected one of {', '.join(LEVELS)}")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(level)
    LOGGER.propagate = False
    for mlflow_handler in logging.getLogger("mlflow").handlers:
        if not any(isinstance(found, WithoutCredentials) for found in mlflow_handler.filters):
            mlflow_handler.addFilter(WithoutCredentials())


class WithoutCredentials(logging.Filter):
    """Rewrites each record's message `without_credentials`."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = without_credentials(record.getMessage()), None
        return True
