"""A step's own MLflow run, its parameters, the tracking server's reachability and artifacts by URI."""

import contextlib
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import requests

from pipeline.contract import ERROR_TAG, STEP_TAG
from pipeline.errors import PipelineError, first_line


@contextlib.contextmanager
def step_run(step: str, log_system_metrics: bool = False):
    """Start (or, under `mlflow run`, resume) the step's run, tagged with its name.

    A PipelineError is also written to the run as a tag, so `main` can repeat the step's message.
    """
    check_tracking_server()
    with mlflow.start_run(run_name=step, log_system_metrics=log_system_metrics) as run:
        mlflow.set_tag(STEP_TAG, step)
        try:
            yield run
        except PipelineError as error:
            mlflow.set_tag(ERROR_TAG, str(error)[:5000])
            raise


def log_new_params(params: dict) -> None:
    """Log the parameters the active run does not have yet (`mlflow run` logs its own copies first)."""
    logged = mlflow.get_run(mlflow.active_run().info.run_id).data.params
    mlflow.log_params({key: value for key, value in params.items() if key not in logged})


def check_tracking_server(timeout_s: float = 10.0) -> None:
    """Fail fast with one line when an http(s) tracking URI does not answer (MLflow itself retries for minutes)."""
    uri = mlflow.get_tracking_uri()
    if urlparse(uri).scheme not in ("http", "https"):
        return
    try:
        requests.get(uri, timeout=timeout_s)
    except requests.exceptions.RequestException as error:
        raise PipelineError(f"tracking server {shown_tracking_uri()} does not answer ({type(error).__name__}); check MLFLOW_TRACKING_URI") from None


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


def download(uri: str, destination: Path) -> Path:
    """Download an MLflow artifact (folder or file) into `destination`."""
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(destination)))
    except Exception as error:  # MLflow raises several types for a bad run id or path
        raise PipelineError(f"cannot download {uri}: {first_line(error)}") from None
