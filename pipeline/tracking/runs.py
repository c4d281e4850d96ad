"""A step's own MLflow run, its parameters, the tracking server's reachability, artifacts by URI and finding a step's runs."""

import contextlib
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import requests
from mlflow import MlflowClient
from mlflow.environment_variables import (MLFLOW_TRACKING_INSECURE_TLS, MLFLOW_TRACKING_PASSWORD, MLFLOW_TRACKING_SERVER_CERT_PATH,
                                          MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME)
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.utils.uri import is_databricks_unity_catalog_uri

from pipeline.contract import ERROR_TAG, STEP_TAG, latest_finished_run
from pipeline.errors import PipelineError, first_line, without_credentials


@contextlib.contextmanager
def step_run(step: str, log_system_metrics: bool = False):
    """Start (or, under `mlflow run`, resume) the step's run, tagged with its name.

    A PipelineError is also written to the run as a tag, so `main` can repeat the step's message. A tracking
    store that stops answering while the step runs (after MLflow's own bounded retries:
    MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT) ends it in one line too.
    """
    check_tracking_server()
    try:
        with mlflow.start_run(run_name=step, log_system_metrics=log_system_metrics) as run:
            mlflow.set_tag(STEP_TAG, step)
            try:
                yield run
            except PipelineError as error:
                with contextlib.suppress(MlflowException):  # an unreachable store cannot take it; the line still says it
                    mlflow.set_tag(ERROR_TAG, without_credentials(str(error))[:5000])
                raise
    except MlflowException as error:
        raise PipelineError(f"tracking store {shown_tracking_uri()} failed during {step} ({first_line(error)[:300]}); "
                            "run the same command again once it answers: finished steps are reused, "
                            "fine-tuning resumes from its checkpoints") from None


def log_new_params(params: dict) -> None:
    """Log the parameters the active run does not have yet (`mlflow run` logs its own copies first)."""
    logged = mlflow.get_run(mlflow.active_run().info.run_id).data.params
    mlflow.log_params({key: value for key, value in params.items() if key not in logged})


def check_tracking_server(timeout_s: float = 10.0) -> None:
    """Fail fast with one line when an http(s) tracking server does not answer, refuses the credentials or errs
    (MLflow itself retries for minutes, then prints a traceback that repeats the URI). It asks the REST API with
    the credentials MLflow would send (MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN)."""
    uri = mlflow.get_tracking_uri()
    if urlparse(uri).scheme not in ("http", "https"):
        return
    shown = shown_tracking_uri()
    try:
        answer = requests.get(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search", params={"max_results": 1},
                              timeout=timeout_s, verify=tls_verification(), **tracking_auth())
    except requests.exceptions.RequestException as error:
        raise PipelineError(f"tracking server {shown} does not answer ({type(error).__name__}); check MLFLOW_TRACKING_URI") from None
    if answer.status_code in (401, 403):
        raise PipelineError(f"tracking server {shown} refuses the credentials (HTTP {answer.status_code}); "
                            "check MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN")
    if answer.status_code >= 500:
        raise PipelineError(f"tracking server {shown} fails (HTTP {answer.status_code}); see the server's log")
    if answer.status_code != 200:
        raise PipelineError(f"{shown} answers HTTP {answer.status_code} to MLflow's REST API: is it an MLflow tracking server?")


def tracking_auth() -> dict:
    """The `requests` arguments for the credentials MLflow's documented variables give."""
    username, password = MLFLOW_TRACKING_USERNAME.get(), MLFLOW_TRACKING_PASSWORD.get()
    if username and password:
        return {"auth": (username, password)}
    token = MLFLOW_TRACKING_TOKEN.get()
    return {"headers": {"Authorization": f"Bearer {token}"}} if token else {}


def tls_verification() -> bool | str:
    if MLFLOW_TRACKING_INSECURE_TLS.get():
        return False
    return MLFLOW_TRACKING_SERVER_CERT_PATH.get() or True


def shown_tracking_uri() -> str:
    """The tracking URI as messages may show it: without the user and password an http(s) URI can carry."""
    parts = urlparse(mlflow.get_tracking_uri())
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def run_id_in(uri: str) -> str | None:
    """The run id of a `runs:/<run id>/<path>` URI; None for any other location."""
    return uri.split("/")[1] if uri.startswith("runs:/") else None


def is_artifact_uri(location: str) -> bool:
    """True for `runs:/...`, `models:/...`, `s3://...` and other URIs MLflow downloads; False for local paths."""
    scheme = urlparse(location).scheme
    return len(scheme) > 1 and scheme != "file"  # one letter is a Windows drive


def download_artifacts(uri: str, destination: Path) -> Path:
    """Download an MLflow artifact (folder or file) into `destination`."""
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(destination)))
    except Exception as error:  # MLflow raises several types for a bad run id or path
        raise PipelineError(f"cannot download {uri}: {first_line(error)}") from None


def check_model_name(name: str, registry: str | None = None) -> None:
    """Unity Catalog (the registry behind tracking URI `databricks`) only takes three-part names; `registry`: this
    process's registry unless told (the backend checks for the job's before submitting)."""
    registry = registry or mlflow.get_registry_uri()
    if is_databricks_unity_catalog_uri(registry) and len(name.split(".")) != 3:
        raise PipelineError(f"registered_model_name={name!r}: the Unity Catalog registry ({registry}) needs "
                            f"catalog.schema.model, e.g. main.default.{name.rpartition('.')[2]}")


def end_unfinished_run(run_id: str, status: str, reason: str) -> None:
    """End a run its process left RUNNING (killed, cancelled, or stopped before its code reached the run) with
    `status`, and `reason` as its `pipeline.error` unless it said why itself; a run that ended is left as it is."""
    client = MlflowClient()
    run = client.get_run(run_id)
    if run.info.status == "RUNNING":
        if status != "FINISHED" and ERROR_TAG not in run.data.tags:
            client.set_tag(run_id, ERROR_TAG, reason)
        client.set_terminated(run_id, status)


def step_run_by_id(run_id: str, step: str, given: str) -> Run:
    """The run `run_id`, which must exist and be a run of `step`; `given` names what the user passed."""
    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except MlflowException as error:
        raise PipelineError(f"{given}: no run {run_id!r} in {shown_tracking_uri()} ({first_line(error)})") from None
    found = run.data.tags.get(STEP_TAG)
    if found != step:
        raise PipelineError(f"{given}: run {run_id} is a {found or 'non-pipeline'} run, not a {step} run")
    return run


def latest_run_or_none(step: str, experiment_id: str):
    """The latest finished run of `step`, or None when there is none."""
    try:
        return latest_finished_run(step, experiment_id)
    except PipelineError:
        return None
