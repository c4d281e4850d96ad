"""main.py: step selection and parameter checks, and the whole pipeline through real `mlflow run` subprocesses."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

import main
from pipeline.errors import PipelineError

REPO = Path(__file__).resolve().parents[1]


def test_parse_steps_keeps_pipeline_order():
    assert main.parse_steps("all") == ["download_data", "fine_tuning_model", "register_model"]
    assert main.parse_steps("register_model, fine_tuning_model") == ["fine_tuning_model", "register_model"]
    with pytest.raises(PipelineError, match=r"unknown step\(s\) \['train'\]; valid: all, or a comma list of download_data"):
        main.parse_steps("download_data,train")
    with pytest.raises(PipelineError, match="unknown step"):
        main.parse_steps(" , ")


def test_parameters_are_checked_against_mlproject():
    declared = main.step_parameters()
    assert "epochs" in declared["fine_tuning_model"] and "alias" in declared["register_model"]
    assert main.parse_parameters(("epochs=2", "learning_rate=1e-4", "data_path="), declared) == {
        "epochs": "2", "learning_rate": "1e-4", "data_path": ""}
    with pytest.raises(PipelineError, match=r"-P epochs='abc': expected a int \(entry point fine_tuning_model"):
        main.parse_parameters(("epochs=abc",), declared)
    with pytest.raises(PipelineError, match="'colour=red': not a parameter of any step"):
        main.parse_parameters(("colour=red",), declared)


def mlflow_run(tracking_uri: str, *args: str, experiment: str = "e2e") -> subprocess.CompletedProcess:
    """`mlflow run <this repo> --env-manager local` in a subprocess, with this venv's `python` first on PATH."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "HF_HUB_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for variable in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(variable, None)
    command = [sys.executable, "-m", "mlflow", "run", str(REPO), "--env-manager", "local", "--experiment-name", experiment, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, cwd=REPO)


def params(**values) -> list[str]:
    return [item for key, value in values.items() for item in ("-P", f"{key}={value}")]


def runs_by_entry_point(experiment: str = "e2e") -> dict[str, list]:
    """Runs of the experiment by MLproject entry point (the parent is `main`), oldest first."""
    found: dict[str, list] = {}
    for run in mlflow.search_runs(experiment_names=[experiment], output_format="list", order_by=["attributes.start_time ASC"]):
        found.setdefault(run.data.tags["mlflow.project.entryPoint"], []).append(run)
    return found


@pytest.fixture(scope="module")
def pipeline_store(tmp_path_factory, tiny_model, easy_zip_url):
    """A store in which `mlflow run .` ran the whole pipeline once, with local model and data."""
    folder = tmp_path_factory.mktemp("e2e")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    local = params(download_url=easy_zip_url, local_folder=folder / "data", foundation_model=tiny_model,
                   checkpoint_dir=folder / "checkpoints", epochs=3, batch_size=16, learning_rate=3e-3, max_length=32,
                   registered_model_name="e2e_sentiment")
    result = mlflow_run(uri, *local)
    mlflow.set_tracking_uri(uri)
    yield uri, local, result
    mlflow.set_tracking_uri(None)


@pytest.mark.slow
def test_full_pipeline(pipeline_store):
    uri, _, result = pipeline_store
    assert result.returncode == 0, result.stderr[-3000:]
    runs = runs_by_entry_point()
    (parent,) = runs["main"]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["mlflow.project.entryPoint"] == "main"
    for step in main.STEPS:
        (child,) = runs[step]
        assert child.info.status == "FINISHED", step
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["mlflow.project.entryPoint"] == step
        assert parent.data.tags[f"pipeline.{step}.run_id"] == child.info.run_id
    download, tuned, registered = (runs[step][0] for step in main.STEPS)
    assert tuned.data.params["data_path"] == f"runs:/{download.info.run_id}/imdb"  # handed over by reference
    assert tuned.data.params["epochs"] == "3" and tuned.data.params["foundation_model"].endswith("tiny-bert0")
    assert tuned.data.metrics["test_accuracy"] >= 0.85
    assert registered.data.params["mlflow_run_id"] == tuned.info.run_id

    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("e2e_sentiment", "champion")
    assert version.run_id == tuned.info.run_id
    model = mlflow.pyfunc.load_model("models:/e2e_sentiment@champion")
    answer = model.predict(pd.DataFrame({"review": ["the acting was superb and the film felt wonderful",
                                                    "the script was dreadful and the music felt dull"]}))
    assert answer["label"].tolist() == ["positive", "negative"]


@pytest.mark.slow
def test_single_steps_take_the_latest_outputs(pipeline_store):
    uri, local, first = pipeline_store
    assert first.returncode == 0
    before = runs_by_entry_point()
    result = mlflow_run(uri, *local, *params(pipeline_steps="fine_tuning_model"))
    assert result.returncode == 0, result.stderr[-3000:]
    new_tuning = runs_by_entry_point()["fine_tuning_model"][-1]
    assert new_tuning.data.tags["pipeline.data_run_id"] == before["download_data"][0].info.run_id
    assert len(runs_by_entry_point()["download_data"]) == 1  # not downloaded again

    result = mlflow_run(uri, *params(pipeline_steps="register_model", registered_model_name="e2e_sentiment"))
    assert result.returncode == 0, result.stderr[-3000:]
    version = mlflow.MlflowClient().get_model_version_by_alias("e2e_sentiment", "champion")
    assert str(version.version) == "2" and version.run_id == new_tuning.info.run_id


@pytest.mark.slow
def test_unknown_step_fails_before_any_step_runs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = mlflow_run(uri, *params(pipeline_steps="download_data,train"))
    assert result.returncode != 0
    assert ("error: pipeline_steps='download_data,train': unknown step(s) ['train']; "
            "valid: all, or a comma list of download_data, fine_tuning_model, register_model") in result.stderr
    mlflow.set_tracking_uri(uri)
    runs = runs_by_entry_point()
    assert list(runs) == ["main"] and runs["main"][0].info.status == "FAILED"


@pytest.mark.slow
def test_failing_step_fails_the_parent(tmp_path, http_root):
    _, base = http_root
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = mlflow_run(uri, *params(download_url=f"{base}/missing.zip", local_folder=tmp_path / "data"))
    assert result.returncode != 0
    mlflow.set_tracking_uri(uri)
    runs = runs_by_entry_point()
    assert set(runs) == {"main", "download_data"}  # nothing ran after the failed step
    (download,) = runs["download_data"]
    assert download.info.status == "FAILED" and runs["main"][0].info.status == "FAILED"
    assert (f"error: step download_data failed (run {download.info.run_id}): "
            f"{base}/missing.zip: HTTP 404 File not found") in result.stderr
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())
