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
    """`logs.configure()` in this process, undone afterwards: its handler would keep this test's captured stdout, and
    its quiet libraries and variables would reach later tests (and the `mlflow run`s they start)."""
    import mlflow  # noqa: F401 - MLflow sets up its logger's handler when imported
    from transformers.utils import logging as transformers_logging

    environment = {name: os.environ.pop(name, None) for name in logs.QUIET_ENVIRONMENT}  # put back as it was, set or not
    saved = logs.LOGGER.handlers[:], logs.LOGGER.level, logs.LOGGER.propagate
    mlflow_handlers = {handler: handler.filters[:] for handler in logging.getLogger("mlflow").handlers}
    levels = {name: logging.getLogger(name).level for name in logs.CHATTY_LOGGERS}
    root_filters = logging.getLogger().filters[:]
    bars = transformers_logging.is_progress_bar_enabled()
    yield
    logs.LOGGER.handlers[:], (level, propagate) = saved[0], saved[1:]
    logs.LOGGER.setLevel(level)
    logs.LOGGER.propagate = propagate
    for handler, filters in mlflow_handlers.items():
        handler.filters[:] = filters
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    logging.getLogger().filters[:] = root_filters
    for name, value in environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if bars:
        transformers_logging.enable_progress_bar()


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


LIBRARIES = ("import logging, os, lightning, mlflow, transformers; from pipeline.logs import configure; configure();"
             "logging.getLogger('mlflow.projects').info('mlflow says'); logging.getLogger('lightning.pytorch.utilities.rank_zero')"
             ".info('lightning says'); from transformers.utils import logging as hf; print('bars', hf.is_progress_bar_enabled(),"
             "*(os.environ.get(name) for name in ('MLFLOW_LOGGING_LEVEL', 'MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR',"
             "'MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT', 'HF_HUB_DISABLE_PROGRESS_BARS')))")


@pytest.mark.parametrize(("level", "user_set", "spoken", "bars"), [
    (None, {}, [], "bars False WARNING false true 1"),
    ("DEBUG", {}, ["mlflow says", "lightning says"], "bars True None None None None"),
    (None, {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "true"}, [], "bars False WARNING true true 1"),
])
def test_libraries_keep_to_their_warnings_and_bars_go_unless_debug(level, user_set, spoken, bars):
    """MLflow's and Lightning's INFO lines and the download and loading bars buried each step's few lines; the
    variables reach the processes a step starts (its training processes, Spark's workers); a user's own setting wins."""
    env = {key: value for key, value in os.environ.items() if key not in {"PIPELINE_LOG_LEVEL", *logs.QUIET_ENVIRONMENT}}
    env |= user_set | ({"PIPELINE_LOG_LEVEL": level} if level else {})
    result = subprocess.run([sys.executable, "-c", LIBRARIES], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == bars
    assert [said for said in ("mlflow says", "lightning says") if said in result.stderr] == spoken
