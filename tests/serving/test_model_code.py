"""MLflow 3.18's MLFLOW_ALLOW_MODEL_CODE_EXECUTION=false: this project's model carries code (a model from code with
`code_paths`), which that setting forbids MLflow to load. The steps that would load one say so in one line, before
any work, and end their run FAILED."""

import mlflow
import pytest

from conftest import cli_runner
from pipeline import batch_inference, fine_tuning_model
from pipeline.contract import ERROR_TAG
from pipeline.errors import PipelineError
from pipeline.serving.model_logging import CODE_EXECUTION_VARIABLE, refuse_without_code_execution


@pytest.mark.parametrize("value", ["false", "False", "0", " FALSE "])
def test_forbidden_code_execution_is_one_line(monkeypatch, value):
    monkeypatch.setenv(CODE_EXECUTION_VARIABLE, value)
    with pytest.raises(PipelineError, match=r"^scoring: this project's model carries code .* MLFLOW_ALLOW_MODEL_CODE_EXECUTION=false forbids"):
        refuse_without_code_execution("scoring")


@pytest.mark.parametrize("value", [None, "true", "1"])
def test_allowed_code_execution_passes(monkeypatch, value):
    if value is None:
        monkeypatch.delenv(CODE_EXECUTION_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(CODE_EXECUTION_VARIABLE, value)
    refuse_without_code_execution("scoring")


@pytest.mark.parametrize(("step", "args", "action", "runs"), [
    (batch_inference.main, ["--model-uri", "models:/sentiment@champion"], "scoring with models:/sentiment@champion", 1),
    # checked with the step's other settings, before its run exists: nothing is trained for a model no one could load
    (fine_tuning_model.main, ["--foundation-model", "prajjwal1/bert-tiny", "--accelerator", "cpu"], "logging the fine-tuned model", 0),
])
def test_the_steps_that_load_the_model_refuse_before_any_work(tracking, monkeypatch, step, args, action, runs):
    monkeypatch.setenv(CODE_EXECUTION_VARIABLE, "false")
    result = cli_runner().invoke(step, args)
    line = result.stderr.strip().splitlines()[-1]
    assert result.exit_code == 1 and line.startswith(f"error: {action}: this project's model carries code"), result.stderr
    found = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert len(found) == runs and all(run.info.status == "FAILED" and run.data.tags[ERROR_TAG] == line.removeprefix("error: ")
                                      for run in found)
