"""pipeline/preflight.py, which `make run` runs before `mlflow run .`."""

import subprocess
import sys

from conftest import REPO, client_env


def test_an_unreachable_server_is_one_line_without_credentials():
    env = client_env("http://alice:hunter2@127.0.0.1:9")
    result = subprocess.run([sys.executable, "-m", "pipeline.preflight"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: tracking server http://127.0.0.1:9 does not answer (ConnectionError); check MLFLOW_TRACKING_URI"
    assert "hunter2" not in result.stdout + result.stderr


def test_a_local_store_needs_no_check(tmp_path):
    env = client_env(f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = subprocess.run([sys.executable, "-m", "pipeline.preflight"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
