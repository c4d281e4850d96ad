"""pipeline.tracking.runs: a step's run records its failure, logs each parameter once, and shows no credentials."""

import mlflow
import pytest

from pipeline.contract import ERROR_TAG, STEP_TAG
from pipeline.errors import PipelineError
from pipeline.tracking.runs import is_artifact_uri, log_new_params, run_id_in, shown_tracking_uri, step_run, tls_verification
from pipeline.tracking.runs import tracking_auth


def test_a_failed_step_run_is_failed_with_its_reason_and_no_credentials(tracking):
    with pytest.raises(PipelineError):
        with step_run("download_data"):
            raise PipelineError("http://alice:hunter2@example.org/imdb.zip: HTTP 404 Not Found")
    (run,) = mlflow.search_runs(experiment_names=["Default"], output_format="list")
    assert run.info.status == "FAILED" and run.data.tags[STEP_TAG] == "download_data"
    assert run.data.tags[ERROR_TAG] == "http://example.org/imdb.zip: HTTP 404 Not Found"


def test_parameters_mlflow_run_logged_already_are_not_logged_again(tracking):
    with mlflow.start_run() as run:
        mlflow.log_param("epochs", "'3'")  # as `mlflow run` stores it: its copy stays
        log_new_params({"epochs": 3, "batch_size": 16})
    assert mlflow.get_run(run.info.run_id).data.params == {"epochs": "'3'", "batch_size": "16"}


def test_uris_are_told_apart_and_shown_without_credentials(monkeypatch):
    assert run_id_in("runs:/abc123/imdb/test.csv") == "abc123" and run_id_in("/data/imdb") is None
    assert [is_artifact_uri(uri) for uri in ("runs:/a/imdb", "models:/m@champion", "s3://b/k", "file:///d", "/d", "C:/d")] == \
        [True, True, True, False, False, False]
    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: "https://alice:hunter2@mlflow.example.com:8443/base")
    assert shown_tracking_uri() == "https://mlflow.example.com:8443/base"


def test_the_credentials_mlflow_would_send(monkeypatch):
    for variable in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                     "MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_TRACKING_SERVER_CERT_PATH"):
        monkeypatch.delenv(variable, raising=False)
    assert tracking_auth() == {} and tls_verification() is True
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t0k3n")
    assert tracking_auth() == {"headers": {"Authorization": "Bearer t0k3n"}}
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "hunter2")
    assert tracking_auth() == {"auth": ("alice", "hunter2")}  # basic auth first, as MLflow's client does
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", "/etc/ca.pem")
    assert tls_verification() == "/etc/ca.pem"
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    assert tls_verification() is False
