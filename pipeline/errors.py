"""Errors a user can fix, reported as one line instead of a traceback."""

import functools
import sys

import click


class PipelineError(Exception):
    """A problem with the input, parameters or environment; the message says what and where."""


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
