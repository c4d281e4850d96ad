"""The whole pipeline on a real Databricks workspace: `make test-databricks`, the one check the emulator cannot make.

Needs DATABRICKS_HOST and DATABRICKS_TOKEN (or DATABRICKS_CONFIG_PROFILE), DATABRICKS_CATALOG and
DATABRICKS_SCHEMA (a Unity Catalog schema you may create models in) and DATABRICKS_EXPERIMENT (a workspace path
such as /Users/<you>/sentiment-smoke); without them it is skipped, saying so. It submits this checkout with
`pipeline.on_databricks.submit` through the `databricks-jobs` backend (epochs=1) on `$DATABRICKS_CLUSTER_SPEC` (default
`cluster_spec.json`, AWS), prints the run page, and loads `@champion` back through the workspace to predict.
"""

import os
import secrets
import subprocess
import sys

import mlflow
import pytest

from conftest import REPO, params

REQUIRED = ("DATABRICKS_CATALOG", "DATABRICKS_SCHEMA", "DATABRICKS_EXPERIMENT")
HAS_AUTH = bool(os.environ.get("DATABRICKS_CONFIG_PROFILE") or (os.environ.get("DATABRICKS_HOST") and os.environ.get("DATABRICKS_TOKEN")))
MISSING = [name for name in REQUIRED if not os.environ.get(name)] + ([] if HAS_AUTH else ["DATABRICKS_HOST/DATABRICKS_TOKEN"])
pytestmark = [pytest.mark.workspace, pytest.mark.slow,
              pytest.mark.skipif(bool(MISSING), reason=f"no real Databricks workspace: set {', '.join(MISSING)}")]


def test_pipeline_on_a_real_workspace(monkeypatch):
    model = f"{os.environ['DATABRICKS_CATALOG']}.{os.environ['DATABRICKS_SCHEMA']}.sentiment_smoke_{secrets.token_hex(3)}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": "databricks"}
    spec = REPO / os.environ.get("DATABRICKS_CLUSTER_SPEC", "cluster_spec.json")
    command = [sys.executable, "-m", "pipeline.on_databricks.submit", str(REPO), "--backend", "databricks-jobs", "--backend-config", str(spec),
               "--experiment-name", os.environ["DATABRICKS_EXPERIMENT"], "--poll-seconds", "15",
               *params(epochs=1, registered_model_name=model, min_score=0, beat_baseline="false")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=5400, cwd=REPO)
    print(result.stdout)  # the run page and each step's status (pytest -s or -rA shows it)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Databricks run page: " in result.stdout and "register_model: FINISHED" in result.stdout
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "databricks")
    predictions = mlflow.pyfunc.load_model(f"models:/{model}@champion").predict(["A wonderful, moving film.", "Dull and far too long."])
    assert list(predictions.columns)[:2] == ["label", "probability"] and len(predictions) == 2  # a blend adds its parts
