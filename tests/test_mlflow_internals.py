"""Contract tests for the MLflow internals `pipeline/mlflow_internals.py` relies on: each fails loudly, naming
the assumption, when an MLflow upgrade changes it."""

import inspect

import pytest
from mlflow.exceptions import MlflowException
from mlflow.projects.databricks import DatabricksSubmittedRun

from pipeline.mlflow_internals import check_registry_names, set_databricks_poll_interval


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
