"""Where an entry point runs and what it was given, both under `mlflow run` and on Databricks.

`mlflow run` starts every entry point's command from the project folder. On Databricks (MLflow's Spark job
project format) MLflow pastes the entry file's source into a generated `<uuid>.py` on DBFS, after code that
unpacks the project and `chdir`s into it, and passes the rest of the command as the job's parameters: split on
spaces and still shell-quoted (`cache_dir='~/.cache/x'`), because no shell reads them. So the project folder
is the working directory, never `__file__`'s folder, and the arguments may need the shell's unquoting.
"""

import functools
import os
import shlex
import signal
import sys
from pathlib import Path

import click
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.contract import ERROR_TAG
from pipeline.errors import PipelineError
from pipeline.logs import configure as configure_logs


def project_dir() -> Path:
    """The project folder: the working directory, where MLflow runs every entry point."""
    folder = Path.cwd()
    if not (folder / "MLproject").is_file():
        raise PipelineError(f"{folder}: no MLproject here; run the entry points from the project folder (as `mlflow run .` does)")
    return folder


def command_arguments(argv: list[str] | None = None) -> list[str]:
    """The entry point's arguments, unquoted as a shell would have done where MLflow's Spark job wrapper runs it."""
    argv = sys.argv if argv is None else argv
    return shlex.split(" ".join(argv[1:])) if run_by_spark_job_wrapper(argv[0]) else argv[1:]


def run_by_spark_job_wrapper(script: str) -> bool:
    """True when the running file is not one of the project's: MLflow's wrapper, which lives on DBFS."""
    return not Path(script).resolve().is_relative_to(Path.cwd().resolve())


# The run `mlflow run` made for this process, read at start: MLflow unsets MLFLOW_RUN_ID when that run ends.
STARTED_RUN_ID = os.environ.get("MLFLOW_RUN_ID")


def record_failure(message: str) -> None:
    """Put the one-line reason on the run `mlflow run` made for this entry point (MLFLOW_RUN_ID), wherever the
    failure happened: before the step's code reached its run (a device check, an option) or after it ended it
    (Ctrl-C), so `main` can repeat it."""
    run_id = os.environ.get("MLFLOW_RUN_ID") or STARTED_RUN_ID
    if run_id:
        try:
            MlflowClient().set_tag(run_id, ERROR_TAG, message[:5000])
        except MlflowException:
            pass  # the store is unreachable too: the message on stderr is what is left to say


INTERRUPTED = "interrupted"  # the reason an entry point stopped on Ctrl-C or SIGTERM, on its run


def interrupted(signum, frame):
    """Ctrl-C or SIGTERM: from here on the entry point stops what it started and ends its runs, which a second
    signal (a terminal's Ctrl-C reaches `mlflow run` too, which then sends SIGTERM) must not cut short."""
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.SIG_IGN)
    raise KeyboardInterrupt


def run_entry_point(command: click.Command) -> None:
    """Run an entry point's command on its arguments. A value its options refuse ends in one line (`error: ...`),
    as the step's other errors do, and the step's MLflow run (`mlflow run` sets MLFLOW_RUN_ID) carries the reason.
    SIGTERM (what `mlflow run` and `main` send to stop an entry point) is handled as Ctrl-C: the `with` blocks end
    the runs they started, the reason is `interrupted`, and the exit code 130."""
    configure_logs()
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, interrupted)
    try:
        code = command.main(args=command_arguments(), standalone_mode=False)
    except click.ClickException as error:
        message = error.format_message()
        record_failure(message)
        click.echo(f"error: {message}", err=True)
        sys.exit(error.exit_code)
    except click.Abort:  # Ctrl-C or SIGTERM
        record_failure(INTERRUPTED)
        click.echo("error: interrupted; the same command again resumes (finished steps are reused, training from its "
                   "last checkpoint)", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def reports_errors(command):
    """Run a click entry point so a PipelineError ends it with `error: <message>` and exit code 1, the message also
    on the entry point's MLflow run (`record_failure`), wherever it was raised.

    The exception still passes through any `with mlflow.start_run()` inside the command first,
    so the run is marked FAILED before the process exits.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except PipelineError as error:
            record_failure(str(error))
            click.echo(f"error: {error}", err=True)
            sys.exit(1)

    return wrapper
