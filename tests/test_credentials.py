"""pipeline/credentials.py: what `main` hands its steps on a Databricks cluster, and nowhere else."""

import pytest

from pipeline.credentials import child_process_credentials
from pipeline.errors import PipelineError


@pytest.fixture
def databricks_tracking(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "databricks")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.databrickscfg of the machine's
    for variable in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CONFIG_PROFILE", "DATABRICKS_RUNTIME_VERSION"):
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def test_off_a_cluster_nothing_is_handed_down(databricks_tracking):
    databricks_tracking.setenv("DATABRICKS_HOST", "http://127.0.0.1:9")  # never asked
    databricks_tracking.setenv("DATABRICKS_TOKEN", "dapi-laptop")
    assert child_process_credentials() == {}  # the steps resolve them from the same environment


def test_on_a_cluster_the_resolved_host_and_token_are_handed_down(databricks_tracking, http_root):
    """(Here the driver's own credentials come from its environment; `tests/test_databricks.py` has them come
    from the emulated runtime context, with no variables, as on a job cluster.)"""
    _, host = http_root  # answers 404 to the SDK's host-metadata request, as a workspace may
    databricks_tracking.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    databricks_tracking.setenv("DATABRICKS_HOST", host)
    databricks_tracking.setenv("DATABRICKS_TOKEN", "dapi-cluster")
    assert child_process_credentials() == {"DATABRICKS_HOST": host, "DATABRICKS_TOKEN": "dapi-cluster"}


def test_a_cluster_without_credentials_is_one_line(databricks_tracking):
    databricks_tracking.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    with pytest.raises(PipelineError, match=r"^cannot resolve this cluster's Databricks credentials for the steps \(default auth"):
        child_process_credentials()


def test_a_local_store_needs_no_credentials(databricks_tracking, tmp_path):
    databricks_tracking.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    databricks_tracking.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert child_process_credentials() == {}
