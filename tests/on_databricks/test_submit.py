"""`pipeline.on_databricks.submit` refusing what it cannot send, with one line and before any upload; the Databricks runs
themselves are in `test_databricks.py`."""

import mlflow
import pytest

from conftest import REPO, cli_runner
from pipeline.on_databricks import submit


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    """Tracking URI `databricks`, but no host, token or ~/.databrickscfg."""
    for variable in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CONFIG_FILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "databricks")
    mlflow.set_tracking_uri(None)


def invoke(*args: str):
    return cli_runner().invoke(submit.main, [str(REPO), "--backend-config", str(REPO / "cluster_spec.json"), *args])


def test_missing_credentials_are_one_line(no_credentials):
    result = invoke("--experiment-name", "/Shared/sentiment")
    assert result.exit_code == 1
    (message,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert message.startswith("error: workspace of 'databricks': Reading Databricks credential configuration failed")
    assert "Traceback" not in result.stdout + result.stderr


def test_local_tracking_uri_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(None)
    result = invoke("--experiment-name", "/Shared/sentiment")
    assert result.exit_code == 1
    assert "set it to 'databricks' (or the workspace's tracking server)" in result.stderr


@pytest.mark.parametrize(("args", "expected"), [
    (["--experiment-name", "/Shared/s", "-P", "epochs"], "error: -P 'epochs': expected KEY=VALUE"),
    (["--experiment-name", "/Shared/s", "--backend-config", "missing.json"], "'--backend-config': File 'missing.json' does not exist"),
    ([], "Missing option '--experiment-name'"),
])
def test_bad_arguments(no_credentials, args, expected):
    result = invoke(*args)
    assert result.exit_code != 0
    assert expected in result.stderr


def test_the_backend_refuses_a_local_store_before_creating_a_run(tmp_path):
    """`mlflow run -b databricks-jobs` with a SQLite store: the job could never log into it; no run is created there."""
    import subprocess
    import sys

    from conftest import client_env

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = subprocess.run([sys.executable, "-m", "mlflow", "run", str(REPO), "-b", "databricks-jobs", "--backend-config",
                             str(REPO / "cluster_spec.json"), "--experiment-name", "/Shared/sentiment"],
                            env=client_env(store), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "is on this machine, where the job cannot log" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert mlflow.MlflowClient(store).search_runs([mlflow.MlflowClient(store).get_experiment_by_name("/Shared/sentiment").experiment_id]) == []
