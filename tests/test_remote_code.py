"""Remote code, local target: `mlflow run git://...#<subdir> -v <full sha>` from a real `git daemon`."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

BIN = Path(sys.executable).parent


def mlflow_run_git(uri: str, version: str, tracking_uri: str, workdir: Path, *params: str) -> subprocess.CompletedProcess:
    """`mlflow run <git uri> -v <sha> --env-manager local`, started outside any checkout of this repository."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "HF_HUB_OFFLINE": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for variable in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(variable, None)
    command = [sys.executable, "-m", "mlflow", "run", uri, "-v", version, "--env-manager", "local",
               "--experiment-name", "remote", *[item for param in params for item in ("-P", param)]]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=workdir)


def runs_of(tracking_uri: str) -> dict[str, mlflow.entities.Run]:
    mlflow.set_tracking_uri(tracking_uri)
    try:
        return {run.data.tags["mlflow.project.entryPoint"]: run
                for run in mlflow.search_runs(experiment_names=["remote"], output_format="list")}
    finally:
        mlflow.set_tracking_uri(None)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["root", "subdirectory"])
def test_git_uri_runs_the_pinned_commit(layout, git_remote, easy_zip_url, tmp_path):
    if layout == "root":
        uri, sha = f"{git_remote['url']}/sentiment.git", git_remote["pinned"]  # the branch head would fail
    else:
        uri, sha = f"{git_remote['url']}/monorepo.git#ml/sentiment", git_remote["nested"]
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = mlflow_run_git(uri, sha, tracking_uri, tmp_path, "pipeline_steps=download_data",
                            f"download_url={easy_zip_url}", f"local_folder={tmp_path / 'data'}")
    assert result.returncode == 0, result.stderr[-3000:]

    runs = runs_of(tracking_uri)
    assert set(runs) == {"main", "download_data"}
    parent, step = runs["main"], runs["download_data"]
    assert parent.info.status == step.info.status == "FINISHED"
    assert step.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert parent.data.tags["mlflow.source.name"] == uri
    assert parent.data.tags["mlflow.source.git.repoURL"] == uri.split("#")[0]
    for run in (parent, step):
        assert run.data.tags["mlflow.source.git.commit"] == sha
    assert (tmp_path / "data" / "imdb" / "train.csv").exists()

