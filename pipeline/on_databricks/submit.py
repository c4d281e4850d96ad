"""Run the project on Databricks and wait for it: for CI/CD, where `mlflow run -b databricks-jobs` returns at submission.

    python -m pipeline.on_databricks.submit . --backend-config cluster_spec.json --experiment-name /Users/<you>/sentiment -P epochs=1
    python -m pipeline.on_databricks.submit https://github.com/<you>/<repo>.git --version <full commit sha> ...

Submits through `mlflow.projects.run(..., backend="databricks-jobs", synchronous=True)` (pipeline/on_databricks/jobs.py),
prints the job's run page and the progress of the MLflow runs it creates, and exits 1 when the remote run fails
(0 when it succeeds). Authentication comes from the environment (DATABRICKS_HOST / DATABRICKS_TOKEN or
~/.databrickscfg), never from arguments, so no secret lands in a shell history or CI log.

`--backend databricks` is MLflow's own legacy backend, for workspaces that still have a DBFS root: it uploads a
local folder as it is (a tarball of everything but `mlruns/`, `.venv/` and downloads too), so a local project in a
git work tree is first staged as git sees it: a shallow clone of its commit (MLflow records that commit, which
reuse needs) with the work tree's content of the tracked files on top. That backend needs the DBFS root: a workspace
without one refuses its upload (403, PERMISSION_DENIED, on a DBFS path), which is explained whatever its wording.
"""

import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import click
import mlflow
from mlflow.exceptions import ExecutionException, MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_DATABRICKS_RUN_URL, MLFLOW_PARENT_RUN_ID, MLFLOW_PROJECT_BACKEND, MLFLOW_RUN_NAME

from pipeline.on_databricks.jobs import NAME as DATABRICKS_JOBS
from pipeline.on_databricks.code_upload import staged_files
from pipeline.on_databricks.job_run import DatabricksJobRun
from pipeline.on_databricks.jobs import SubmissionRefused
from pipeline.contract import ERROR_TAG
from pipeline.errors import PipelineError, first_line
from pipeline.entry import reports_errors
from pipeline.logs import LOGGER, configure
from pipeline.tracking.mlflow_internals import set_databricks_poll_interval
from pipeline.tracking.runs import shown_tracking_uri


@click.command(help=__doc__)
@click.argument("project_uri", default=".")
@click.option("--version", default=None, help="Git commit (full sha) or branch, for a git project URI.")
@click.option("--entry-point", default="main", show_default=True)
@click.option("--backend-config", type=click.Path(exists=True, dir_okay=False), default="cluster_spec.json", show_default=True,
              help="The job cluster's bare spec (Jobs API new_cluster); libraries come from MLproject.")
@click.option("--experiment-name", required=True, help="Workspace experiment path, e.g. /Shared/sentiment (created if missing).")
@click.option("--poll-seconds", type=click.FloatRange(min=0.1), default=30.0, show_default=True)
@click.option("--backend", type=click.Choice([DATABRICKS_JOBS, "databricks"]), default=DATABRICKS_JOBS, show_default=True,
              help="databricks-jobs: Jobs API 2.2, no DBFS root needed; databricks: MLflow's legacy backend (DBFS root).")
@click.option("-P", "--param", "params", multiple=True, help="KEY=VALUE, passed to the entry point.")
@reports_errors
def main(project_uri, version, entry_point, backend_config, experiment_name, poll_seconds, backend, params) -> None:
    parameters = dict(parse_param(param) for param in params)
    if not mlflow.get_tracking_uri().startswith(("databricks", "http")):
        raise PipelineError(f"MLFLOW_TRACKING_URI is {shown_tracking_uri()!r}: set it to 'databricks' (or the workspace's tracking server)")
    try:
        found = mlflow.get_experiment_by_name(experiment_name)
        experiment = found.experiment_id if found else mlflow.create_experiment(experiment_name)
    except MlflowException as error:
        raise PipelineError(f"workspace of {shown_tracking_uri()!r}: {first_line(error)}") from None
    set_databricks_poll_interval(poll_seconds)  # MLflow's wait loop; 30 s unless told
    DatabricksJobRun.poll_seconds = poll_seconds
    stop, since_ms = threading.Event(), int(time.time() * 1000)
    watcher = threading.Thread(target=report_progress, args=(experiment, since_ms, poll_seconds, stop), daemon=True)
    watcher.start()
    legacy = backend == "databricks"
    try:
        with tempfile.TemporaryDirectory(prefix="submit-") as scratch:
            uri = staged_project(project_uri, Path(scratch)) if legacy and not version else project_uri
            submitted = mlflow.projects.run(uri, entry_point=entry_point, version=version, parameters=parameters,
                                            experiment_id=experiment, backend=backend, backend_config=backend_config,
                                            synchronous=True)
    except SubmissionRefused as error:
        raise PipelineError(f"cannot submit {project_uri}: {error}") from None
    except MlflowException as error:  # ExecutionException too: MLflow's backend raises it where it cannot upload
        fail_unsubmitted_runs(experiment, since_ms)
        if legacy and dbfs_refused(error):
            raise PipelineError(f"cannot submit {project_uri}: this workspace has no DBFS root, which MLflow's legacy backend "
                                f"`databricks` needs (new workspaces have none): use --backend {DATABRICKS_JOBS}") from None
        if isinstance(error, ExecutionException):
            raise PipelineError(f"remote run failed: {remote_reason(error)}") from None
        raise PipelineError(f"cannot submit {project_uri}: {first_line(error)}") from None
    finally:
        stop.set()
        watcher.join()
    click.echo(f"remote run succeeded: MLflow run {submitted.run_id}")


def remote_reason(error: ExecutionException) -> str:
    """Why the remote run failed, as its MLflow run says (`pipeline.error`: the job's or the step's own line), with the
    run's id; MLflow's own message names the run only."""
    found = re.search(r"Run \(ID '([0-9a-f]+)'\) failed", str(error))
    if not found:
        return first_line(error)
    reason = mlflow.MlflowClient().get_run(found.group(1)).data.tags.get(ERROR_TAG, "see the run's Databricks page")
    return f"{reason} (MLflow run {found.group(1)})"


def dbfs_refused(error: Exception) -> bool:
    """MLflow's legacy backend stopped at the DBFS root: a 403 or PERMISSION_DENIED on its DBFS get-status or upload.
    Databricks documents no message for it (users report "Public DBFS root is disabled"), so the code and the path
    decide, not the wording."""
    text = str(error)
    refused = "PERMISSION_DENIED" in text or re.search(r"\b403\b", text) is not None
    return refused and re.search(r"(?i)\bdbfs\b|/dbfs/|dbfs:/", text) is not None


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def staged_project(project_uri: str, scratch: Path) -> str:
    """The project as git sees it, in `scratch`: what should travel. Anything else (a git URI, a folder outside
    git) is returned as it is."""
    folder = Path(project_uri)
    if not folder.is_dir() or subprocess.run(["git", "rev-parse"], cwd=folder, capture_output=True).returncode != 0:
        return project_uri
    top = Path(git("rev-parse", "--show-toplevel", cwd=folder))
    inside = folder.resolve().relative_to(top.resolve())
    staged = scratch / "project"
    git("clone", "--quiet", "--depth", "1", "--no-checkout", top.resolve().as_uri(), str(staged), cwd=scratch)
    origin = subprocess.run(["git", "remote", "get-url", "origin"], cwd=top, capture_output=True, text=True).stdout.strip()
    if origin:
        git("remote", "set-url", "origin", origin, cwd=staged)  # MLflow records the repository's own URL
    for name, source in staged_files(str(folder)).items():  # a tracked file deleted in the work tree stays deleted
        (staged / inside / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, staged / inside / name)
    return str(staged / inside)


def parse_param(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise PipelineError(f"-P {text!r}: expected KEY=VALUE")
    return key, value


def fail_unsubmitted_runs(experiment: str, since_ms: int) -> None:
    """MLflow creates the run before Databricks accepts the job: when the job is refused, that run is FAILED, not RUNNING."""
    client = mlflow.MlflowClient()
    for run in client.search_runs([experiment], f"attributes.start_time >= {since_ms} and attributes.status = 'RUNNING'"):
        if run.data.tags.get(MLFLOW_PROJECT_BACKEND) == "databricks" and MLFLOW_DATABRICKS_RUN_URL not in run.data.tags:
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
                LOGGER.info(f"Databricks run page: {tags[MLFLOW_DATABRICKS_RUN_URL]} (MLflow run {run_id})")
            if seen.get(run_id) != run.info.status:
                seen[run_id] = run.info.status
                LOGGER.info(f"  {tags.get(MLFLOW_RUN_NAME, run_id)}: {run.info.status}")
        if finished:
            return
        stop.wait(every)


if __name__ == "__main__":
    configure()
    main()
