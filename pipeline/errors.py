"""Errors a user can fix, reported as one line instead of a traceback."""

import functools
import re
import sys

import click


class PipelineError(Exception):
    """A problem with the input, parameters or environment; the message says what and where."""


CREDENTIALS_IN_URL = re.compile(r"(?<=://)[^/\s@]+@")  # user:password@ of a URL a library put in its message


def without_credentials(text: str) -> str:
    """`text` with the `user:password@` of every URL in it removed (MLflow's HTTP errors repeat the tracking URI
    as given, credentials included)."""
    return CREDENTIALS_IN_URL.sub("", text)


def first_line(error: Exception) -> str:
    """What went wrong, in one line and `without_credentials`: library messages run to paragraphs (the
    exception's type when it has none)."""
    text = without_credentials(str(error).strip())
    return text.splitlines()[0] if text else type(error).__name__


def reports_errors(command):
    """Run a click entry point so a PipelineError ends it with `error: <message>` and exit code 1, the message also
    on the entry point's MLflow run (`pipeline.entry.record_failure`), wherever it was raised.

    The exception still passes through any `with mlflow.start_run()` inside the command first,
    so the run is marked FAILED before the process exits.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except PipelineError as error:
            from pipeline.entry import record_failure  # here: entry imports this module, and MLflow is heavy

            record_failure(str(error))
            click.echo(f"error: {error}", err=True)
            sys.exit(1)

    return wrapper
