"""Checks `make run` makes before `mlflow run .`, where MLflow's own CLI would fail before any code of ours runs.

With an unreachable http(s) tracking server MLflow's CLI retries for about four minutes and then prints a
traceback that shows the tracking URI, credentials included. This says it in one line, without them.
"""

import click

from pipeline.entry import reports_errors
from pipeline.tracking.runs import check_tracking_server


@click.command(help=__doc__)
@reports_errors
def main() -> None:
    check_tracking_server()


if __name__ == "__main__":
    main()
