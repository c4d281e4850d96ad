"""Status lines go through `logging` (the logger `pipeline`), to standard output: `PIPELINE_LOG_LEVEL=WARNING`
quiets them, `DEBUG` adds detail and brings back what the libraries say by default (MLflow's and Lightning's
INFO lines, download and loading bars), which below DEBUG would bury each step's few lines. The one error line and
each step's verdict stay plain output. MLflow's own log lines lose the credentials a tracking URI carries (its
warnings repeat the URI as given)."""

import importlib
import logging
import os
import sys

from pipeline.errors import without_credentials

LOGGER = logging.getLogger("pipeline")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Libraries that log routine INFO lines through `logging`: kept to their warnings unless the level is DEBUG.
CHATTY_LOGGERS = ("mlflow", "lightning.pytorch", "lightning.fabric")
# The same, for processes this one starts (the steps, training processes, Spark's Python workers), read at their
# imports: MLflow's level, its artifact bar and the run and experiment links it prints as each run ends on a tracking
# server, the Hugging Face hub's bars (transformers' too).
QUIET_ENVIRONMENT = {"MLFLOW_LOGGING_LEVEL": "WARNING", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
                     "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def chosen_level() -> str:
    return os.environ.get("PIPELINE_LOG_LEVEL", "INFO").upper()


def configure() -> None:
    """Set the level from PIPELINE_LOG_LEVEL (default INFO); an unknown level ends the program in one line."""
    level = chosen_level()
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
    if level != "DEBUG":
        quiet_libraries()


def quiet_libraries() -> None:
    """The libraries' routine lines and bars off, in this process and the ones it starts; a variable the user set wins."""
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if jvm_call_cut_short not in logging.getLogger().filters:
        logging.getLogger().addFilter(jvm_call_cut_short)
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1" and "transformers" in sys.modules:
        importlib.import_module("transformers.utils.logging").disable_progress_bar()  # it read the switch at import


def jvm_call_cut_short(record: logging.LogRecord) -> bool:
    """False for py4j's traceback of a call to Spark's JVM that Ctrl-C or SIGTERM interrupted (it logs it on the root
    logger, py4j/java_gateway.py): the step says `interrupted` and ends what it started."""
    return not record.getMessage().startswith("KeyboardInterrupt while sending command")


class WithoutCredentials(logging.Filter):
    """Rewrites each record's message `without_credentials`."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = without_credentials(record.getMessage()), None
        return True
