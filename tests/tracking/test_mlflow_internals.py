"""Contract tests for the MLflow internals `pipeline/tracking/mlflow_internals.py` relies on: each fails loudly, naming
the assumption, when an MLflow upgrade changes it."""

import inspect

import pytest
from mlflow.exceptions import MlflowException
from mlflow.projects.databricks import DatabricksSubmittedRun

from pipeline.tracking.mlflow_internals import check_registry_names, set_databricks_poll_interval


@pytest.mark.parametrize(("name", "aliases"), [("bad/name", ("champion",)), ("ok", ("best model!",)), ("ok", ("latest",))])
def test_the_registry_checks_refuse_what_the_registry_refuses(name, aliases):
    with pytest.raises(MlflowException):
        check_registry_names(name, aliases)


def test_the_registry_checks_accept_good_names():
    check_registry_names("main.default.sentiment", ("champion", "challenger"))


def test_the_databricks_wait_polls_at_the_interval_we_set(monkeypatch):
    assert DatabricksSubmittedRun.POLL_STATUS_INTERVAL == 30, "MLflow's default poll interval changed"
    assert "self.POLL_STATUS_INTERVAL" in inspect.getsource(DatabricksSubmittedRun.wait), "MLflow's wait no longer reads it"
    monkeypatch.setattr(DatabricksSubmittedRun, "POLL_STATUS_INTERVAL", 30)
    set_databricks_poll_interval(0.5)
    assert DatabricksSubmittedRun.POLL_STATUS_INTERVAL == 0.5


def test_steps_get_the_environment_we_set_instead_of_mlflows_token_copy(monkeypatch):
    """MLflow's local backend adds `get_databricks_env_vars(...)` (host and a copy of the token) to each entry point's
    environment; `step_environment` replaces what it adds, and restores MLflow's function afterwards."""
    import mlflow.projects.backend.local as local_backend

    from pipeline.tracking.mlflow_internals import step_environment

    for function in (local_backend._run_entry_point, local_backend._invoke_mlflow_run_subprocess):
        assert "get_databricks_env_vars(" in inspect.getsource(function), f"{function.__name__} no longer adds MLflow's credentials"
    original = local_backend.get_databricks_env_vars
    served = {"DATABRICKS_HOST": "https://w", "DATABRICKS_METADATA_SERVICE_URL": "http://127.0.0.1:1/x"}
    with step_environment(served):
        assert local_backend.get_databricks_env_vars(tracking_uri="databricks") == {"MLFLOW_TRACKING_URI": "databricks", **served}
    assert local_backend.get_databricks_env_vars is original
    with step_environment({}):
        assert local_backend.get_databricks_env_vars is original
