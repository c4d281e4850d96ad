"""The register_model step, in process: versions, aliases, and refusing what is not a fine-tuned model."""

import mlflow
import pytest
from click.testing import CliRunner

from pipeline import download_data, fine_tuning_model, register_model


@pytest.fixture
def store(tracking, tiny_model, easy_data, easy_zip_url, tmp_path):
    """A store with one download run and one (1-epoch) fine-tuning run."""
    runner = CliRunner()
    assert runner.invoke(download_data.main, ["--download-url", easy_zip_url, "--local-folder", str(tmp_path)]).exit_code == 0
    result = runner.invoke(fine_tuning_model.main, ["--foundation-model", str(tiny_model), "--epochs", "1", "--max-length", "16",
                                                    "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert result.exit_code == 0, result.output
    runs = {run.data.tags["pipeline.step"]: run for run in mlflow.search_runs(experiment_names=["Default"], output_format="list")}
    return runs


def register(*args):
    return CliRunner().invoke(register_model.main, list(args))


def test_registers_latest_fine_tuning_run_with_alias(store):
    result = register("--registered-model-name", "sentiment", "--alias", "champion")
    assert result.exit_code == 0, result.output
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("sentiment", "champion")
    assert str(version.version) == "1"
    assert version.run_id == store["fine_tuning_model"].info.run_id
    assert version.tags["source_run_id"] == store["fine_tuning_model"].info.run_id
    registered = [r for r in mlflow.search_runs(experiment_names=["Default"], output_format="list")
                  if r.data.tags["pipeline.step"] == "register_model"]
    assert registered[0].data.tags["registered_model_version"] == "1"

    result = register("--registered-model-name", "sentiment", "--mlflow-run-id", store["fine_tuning_model"].info.run_id)
    assert result.exit_code == 0
    assert str(client.get_model_version_by_alias("sentiment", "champion").version) == "2"  # the alias moves


def test_refuses_runs_that_are_not_fine_tuning(store):
    result = register("--mlflow-run-id", store["download_data"].info.run_id)
    assert result.exit_code == 1
    assert "that is a 'download_data' run, not a fine_tuning_model run" in result.stderr
    result = register("--mlflow-run-id", "0123456789abcdef0123456789abcdef")
    assert result.exit_code == 1
    assert "mlflow_run_id='0123456789abcdef0123456789abcdef': no such run" in result.stderr


def test_nothing_to_register(tracking):
    result = register()
    assert result.exit_code == 1
    assert "no finished 'fine_tuning_model' run in experiment" in result.stderr
