"""pipeline/logs.py: status lines at a level the user picks with PIPELINE_LOG_LEVEL."""

import logging
import os
import subprocess
import sys

import pytest

from conftest import REPO
from pipeline import logs

SAY = "from pipeline.logs import LOGGER, configure; configure(); LOGGER.info('status'); LOGGER.warning('warned')"


def run_with(level: str | None) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "PIPELINE_LOG_LEVEL"} | ({"PIPELINE_LOG_LEVEL": level} if level else {})
    return subprocess.run([sys.executable, "-c", SAY], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("level", "shown"), [(None, ["status", "warned"]), ("warning", ["warned"]), ("ERROR", [])])
def test_the_level_picks_the_lines(level, shown):
    result = run_with(level)
    assert result.returncode == 0 and result.stdout.splitlines() == shown, result.stderr


def test_an_unknown_level_is_one_line():
    result = run_with("loud")
    assert result.returncode == 1 and result.stderr.strip() == "error: PIPELINE_LOG_LEVEL='LOUD': expected one of DEBUG, INFO, WARNING, ERROR"


@pytest.fixture
def configured_here():
    """`logs.configure()` in this process, undone afterwards: its handler would keep this test's captured stdout."""
    import mlflow  # noqa: F401 - MLflow sets up its logger's handler when imported

    saved = logs.LOGGER.handlers[:], logs.LOGGER.level, logs.LOGGER.propagate
    mlflow_handlers = {handler: handler.filters[:] for handler in logging.getLogger("mlflow").handlers}
    yield
    logs.LOGGER.handlers[:], (level, propagate) = saved[0], saved[1:]
    logs.LOGGER.setLevel(level)
    logs.LOGGER.propagate = propagate
    for handler, filters in mlflow_handlers.items():
        handler.filters[:] = filters


def test_mlflow_log_lines_lose_credentials(configured_here, capfd):
    """MLflow's warnings repeat the tracking URI as given, password included."""
    logs.configure()
    logs.configure()  # once more: still one filter
    logging.getLogger("mlflow.system_metrics.system_metrics_monitor").warning(
        "Failed to get mlflow run: API request to %s failed", "http://alice:hunter2@127.0.0.1:5000/api/2.0/mlflow/runs/get")
    written = capfd.readouterr()
    assert "Failed to get mlflow run: API request to http://127.0.0.1:5000/api/2.0/mlflow/runs/get failed" in written.err
    assert "hunter2" not in written.err + written.out
    assert all(len([f for f in handler.filters if isinstance(f, logs.WithoutCredentials)]) == 1
               for handler in logging.getLogger("mlflow").handlers)
