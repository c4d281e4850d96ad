"""Run the project on Databricks and wait for it: for CI/CD, where `mlflow run -b databricks` returns at submission.

    python -m pipeline.submit . --backend-config cluster_spec.json --experiment-name /Shared/sentiment -P epochs=1
    python -m pipeline.submit https://github.com/<you>/<repo>.git --version <full commit sha> ...

Submits through `mlflow.projects.run(..., backend="databricks", synchronous=True)`, prints the job's run page
and the progress of the MLflow runs it creates, and exits 1 when the remote run fails (0 when it succeeds).
Authentication comes from the environment (DATABRICKS_HOST / DATABRICKS_TOKEN or ~/.databrickscfg), never from
arguments, so no secret lands in a shell history or CI log.
"""

import threading
import time

import click
import mlflow
from mlflow.exceptions import ExecutionException, MlflowException
from mlflow.projects.databricks import DatabricksSubmittedRun
from mlflow.utils.mlflow_tags import MLFLOW_DATABRICKS_RUN_URL, MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from pipeline.errors import PipelineError, first_line, reports_errors
from pipeline.tracking import shown_tracking_uri


@click.command(help=__doc__)
@click.argument("project_uri", default=".")
@click.option("--version", default=None, help="Git commit (full sha) or branch, for a git project URI.")
@click.option("--entry-point", default="main", show_default=True)
@click.option("--backend-config", type=click.Path(exists=True, dir_okay=False), default="cluster_spec.json", show_default=True,
              help="The job cluster's bare spec (Jobs API new_cluster); libraries come from MLproject.")
@click.option("--experiment-name", required=True, help="Workspace experiment path, e.g. /Shared/sentiment (created if missing).")
@click.option("--poll-seconds", type=click.FloatRange(min=0.1), default=30.0, show_default=True)
@click.option("-P", "--param", "params", multiple=True, help="KEY=VALUE, passed to the entry point.")
@reports_errors
def main(project_uri, version, entry_point, backend_config, experiment_name, poll_seconds, params) -> None:
    parameters = dict(parse_param(param) for param in params)
    if not mlflow.get_tracking_uri().startswith(("databricks", "http")):
        raise PipelineError(f"MLFLOW_TRACKING_URI is {shown_tracking_uri()!r}: set it to 'databricks' (or the workspace's tracking server)")
    try:
        found = mlflow.get_experiment_by_name(experiment_name)
        experiment = found.experiment_id if found else mlflow.create_experiment(experiment_name)
    except MlflowException as error:
        raise PipelineError(f"workspace of {shown_tracking_uri()!r}: {first_line(error)}") from None
    DatabricksSubmittedRun.POLL_STATUS_INTERVAL = poll_seconds  # MLflow's wait loop; 30 s unless told
    stop, since_ms = threading.Event(), int(time.time() * 1000)
    watcher = threading.Thread(target=report_progress, args=(experiment, since_ms, poll_seconds, stop), daemon=True)
    watcher.start()
    try:
        submitted = mlflow.projects.run(project_uri, entry_point=entry_point, version=version, parameters=parameters,
                                        experiment_id=experiment, backend="databricks", backend_config=backend_config,
                                        synchronous=True)
    except ExecutionException as error:
        raise PipelineError(f"remote run failed: {error}") from None
    except MlflowException as error:
        fail_unsubmitted_runs(experiment, since_ms)
        raise PipelineError(f"cannot submit {project_uri}: {first_line(error)}") from None
    finally:
        stop.set()
        watcher.join()
    click.echo(f"remote run succeeded: MLflow run {submitted.run_id}")


def parse_param(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise PipelineError(f"-P {text!r}: expected KEY=VALUE")
    return key, value


def fail_unsubmitted_runs(experiment: str, since_ms: int) -> None:
    """MLflow creates the run before Databricks accepts the job: when the job is refused, that run is FAILED, not RUNNING."""
    client = mlflow.MlflowClient()
    for run in client.search_runs([experiment], f"attributes.start_time >= {since_ms} and attributes.status = 'RUNNING'"):
        if run.data.tags.get("mlflow.project.backend") == "databricks" and MLFLOW_DATABRICKS_RUN_URL not in run.data.tags:
            client.set_terminated(run.info.run_id, "FAILED")


def report_progress(experiment: str, since_ms: int, every: float, stop: threading.Event) -> None:
    """Print the run page and each status change of the runs this submission creates, until `stop` is set."""
    seen: dict[str, str] = {}
    client = mlflow.MlflowClient()
    while True:
        finished = stop.is_set()
        runs = client.search_runs([experiment], f"attributes.start_time >= {since_ms}", order_by=["attributes.start_time ASC"])
        for run in runs:
            tags, run_id = run.data.tags, run.info.run_id
            submitted = MLFLOW_DATABRICKS_RUN_URL in tags
            if not submitted and MLFLOW_PARENT_RUN_ID not in tags:
                continue  # the submitted run before its job exists: it is announced with its page
            if submitted and run_id not in seen:
                click.echo(f"Databricks run page: {tags[MLFLOW_DATABRICKS_RUN_URL]} (MLflow run {run_id})")
            if seen.get(run_id) != run.info.status:
                seen[run_id] = run.info.status
                click.echo(f"  {tags.get(MLFLOW_RUN_NAME, run_id)}: {run.info.status}")
        if finished:
            return
        stop.wait(every)


if __name__ == "__main__":
    main()
