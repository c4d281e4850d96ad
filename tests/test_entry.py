"""pipeline/entry.py: the project folder and the arguments, under `mlflow run` and in MLflow's Databricks wrapper."""

import pytest
from mlflow.projects._project_spec import load_project

from conftest import REPO
from pipeline.entry import command_arguments, project_dir
from pipeline.errors import PipelineError


def test_project_dir_is_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    assert project_dir() == REPO
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match=r": no MLproject here; run the entry points from the project folder"):
        project_dir()


def test_arguments_from_the_databricks_wrapper_are_unquoted(monkeypatch, tmp_path):
    """MLflow splits the computed command on spaces and passes the shell-quoted words to the Spark job as they are."""
    monkeypatch.chdir(REPO)
    values = {"cache_dir": "~/my cache", "data_path": "", "download_url": "https://example.org/a b.zip?x=1&y='2'"}
    command = load_project(str(REPO)).get_entry_point("main").compute_command(values, None)
    words = command.split(" ")  # what run_databricks_spark_job sends as spark_python_task.parameters
    wrapper = str(tmp_path / "0123abcd.py")  # MLflow's generated file, outside the project folder
    arguments = command_arguments([wrapper, *words[2:]])
    assert "cache_dir=~/my cache" in arguments and "data_path=" in arguments
    assert "download_url=https://example.org/a b.zip?x=1&y='2'" in arguments
    assert arguments[:4] == ["--pipeline-steps", "all", "--reuse-completed", "true"]


def test_arguments_from_a_shell_are_kept(monkeypatch):
    monkeypatch.chdir(REPO)
    assert command_arguments(["main.py", "cache_dir='quoted'", "a b"]) == ["cache_dir='quoted'", "a b"]
    assert command_arguments([str(REPO / "pipeline" / "download_data.py"), "--sha256", "none"]) == ["--sha256", "none"]
