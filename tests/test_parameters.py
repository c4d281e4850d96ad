"""pipeline/parameters.py: each step's parameters declared once; the command lines and MLproject follow."""

import dataclasses
import subprocess
import sys

import click
import pytest
from mlflow.projects._project_spec import load_project

import main
from conftest import REPO
from pipeline import batch_inference, download_data, fine_tuning_model, register_model
from pipeline.parameters import GATE_METRICS, STEP_PARAMETERS, FineTuning, MainParameters, RegisterModel, as_text, check_value
from pipeline.parameters import click_type, logged_params, mlproject_type, parameter
from pipeline.evaluation.metrics import split_scores

COMMANDS = {"download_data": download_data.main, "fine_tuning_model": fine_tuning_model.main,
            "register_model": register_model.main, "batch_inference": batch_inference.main}


def test_mlproject_is_what_tools_mlproject_writes():
    result = subprocess.run([sys.executable, "tools/mlproject.py", "check"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_mlflow_reads_the_declared_types_and_defaults():
    """MLflow's own loader sees in MLproject exactly the parameters, types and defaults declared here."""
    project = load_project(str(REPO))
    for step, config in STEP_PARAMETERS.items():
        declared = project.get_entry_point(step).parameters
        assert {name: (spec.type, spec.default) for name, spec in declared.items()} == {
            item.name: (mlproject_type(item), as_text(item.default) if item.type is bool else item.default)
            for item in dataclasses.fields(config)}, step
        assert set(main.step_defaults()[step]) <= set(project.get_entry_point("main").parameters)


def test_a_switch_is_a_bool_in_the_dataclass_and_true_or_false_outside():
    """`-P beat_baseline=false` reaches the step as False, and its run logs `false` as `mlflow run` does."""
    (item,) = [item for item in dataclasses.fields(RegisterModel) if item.name == "beat_baseline"]
    assert click_type(item).convert("false", None, None) is False
    assert logged_params(RegisterModel(beat_baseline=False))["beat_baseline"] == "false"
    assert main.step_defaults()["register_model"]["beat_baseline"] == "true"
    with pytest.raises(click.BadParameter):
        check_value("register_model", "beat_baseline", "maybe")


def test_each_step_command_takes_its_declared_parameters():
    for step, command in COMMANDS.items():
        options = {option.name: option.default for option in command.params}
        assert options == {item.name: item.default for item in dataclasses.fields(STEP_PARAMETERS[step])}, step


def test_the_tokenization_is_the_fields_that_shape_tokens():
    assert FineTuning(max_length=64).tokenization() == {"foundation_model": "prajjwal1/bert-tiny", "max_length": 64,
                                                       "truncation": "head_tail"}


def test_every_gate_metric_has_its_scorer():
    assert set(split_scores(["positive"], ["positive"])) == set(GATE_METRICS)  # the gate can score each one


def test_main_checks_values_without_loading_torch():
    code = "import sys, main; main.parse_parameters(('epochs=2', 'accelerator=cpu')); print(sorted({'torch', 'lightning', 'transformers', 'sklearn'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr


def test_the_readme_table_lists_every_parameter_with_its_default():
    rows, step = {}, None
    for line in (REPO / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].startswith("`"):
            step = cells[0] or step
            rows.setdefault(step, {})[cells[1].strip("`")] = cells[2].strip("`")
    expected = {"main": {item.name: as_text(item.default) for item in dataclasses.fields(MainParameters)}}
    expected |= {step: {item.name: as_text(item.default) for item in dataclasses.fields(config)} for step, config in STEP_PARAMETERS.items()}
    assert rows == expected


def test_a_parameter_two_steps_take_is_declared_alike(monkeypatch):
    """main forwards one value to every step that takes a name (spark_master): MLproject declares it once."""
    from tools import mlproject

    assert "      spark_master: *spark_master" in mlproject.entry_points()

    @dataclasses.dataclass(frozen=True)
    class Other:
        spark_master: str = parameter("local[*]")

    monkeypatch.setattr(mlproject, "STEP_PARAMETERS", STEP_PARAMETERS | {"other": Other})
    with pytest.raises(SystemExit, match=r"^error: other.spark_master is \{type: str, default: \"local\[\*\]\"\}, another step's"):
        mlproject.entry_points()
