"""pipeline/logs.py: status lines at a level the user picks with PIPELINE_LOG_LEVEL."""

import os
import subprocess
import sys

import pytest

from conftest import REPO

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
