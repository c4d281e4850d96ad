"""Errors a user can fix, reported as one line instead of a traceback."""

import functools
import re
import sys

import click


class PipelineError(Exception):
    """A problem with the input, parameters or environment; the message says what and where."""


CREDENTIALS_IN_URL = re.compile(r"(?<=://)[^/\s@]+@")  # user:password@ of a URL a library put in its message


def first_line(error: Exception) -> str:
    """What went wrong, in one line: library messages run to paragraphs (the exception's type when it has none).
    URLs in it lose their user and password (MLflow's HTTP errors repeat the tracking URI as given)."""
    text = CREDENTIALS_IN_URL.sub("", str(error).strip())
    return text.splitlines()[0] if text else type(error).__name__


def reports_errors(command):
    """Run a click entry point so a PipelineError ends it with `error: <message>` and exit code 1.

    The exception still passes through any `with mlflow.start_run()` inside the command first,
    so the run is marked FAILED before the process exits.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except PipelineError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(1)

    return wrapper
