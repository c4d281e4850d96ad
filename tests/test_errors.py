"""pipeline.errors: one line per failure, never with the credentials a URL in a library's message carries."""

import click
import pytest

from conftest import cli_runner
from pipeline.errors import PipelineError, first_line, without_credentials
from pipeline.entry import reports_errors


def test_credentials_in_urls_are_removed_and_the_rest_kept():
    text = "API request to http://alice:hunter2@mlflow.example.com:5000/api failed; see https://bob@x.org/y and s3://bucket/k"
    assert without_credentials(text) == ("API request to http://mlflow.example.com:5000/api failed; "
                                          "see https://x.org/y and s3://bucket/k")
    assert without_credentials("no URL here: user@example.com") == "no URL here: user@example.com"  # an address is not a URL


def test_first_line_is_the_first_line_without_credentials_or_the_type():
    assert first_line(ValueError("  line one from http://u:p@host/x\nline two\n")) == "line one from http://host/x"
    assert first_line(KeyError()) == "KeyError"  # no message: say what it was


def test_a_pipeline_error_ends_the_command_in_one_line_and_other_errors_pass():
    @click.command()
    @click.argument("kind")
    @reports_errors
    def command(kind):
        if kind == "ours":
            raise PipelineError("data_path='x': no such folder")
        raise RuntimeError("a bug")

    result = cli_runner().invoke(command, ["ours"])
    assert (result.exit_code, result.stderr) == (1, "error: data_path='x': no such folder\n")
    result = cli_runner().invoke(command, ["bug"])
    assert isinstance(result.exception, RuntimeError)  # a bug keeps its traceback
    with pytest.raises(RuntimeError):
        command.main(["bug"], standalone_mode=False)


def test_a_failure_before_the_step_reaches_its_run_is_still_on_the_run(monkeypatch, tmp_path):
    """`mlflow run` creates the run and passes MLFLOW_RUN_ID; a check that fails before the step's code resumes it
    (a device the machine lacks, say) still leaves its reason on that run, where `main` reads it."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    run = client.create_run(client.create_experiment("e"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_RUN_ID", run.info.run_id)

    @click.command()
    @reports_errors
    def command():
        raise PipelineError("accelerator='cuda': no CUDA GPU is visible to this process (use accelerator=auto or cpu)")

    result = cli_runner().invoke(command, [])
    assert result.exit_code == 1
    assert client.get_run(run.info.run_id).data.tags["pipeline.error"] == (
        "accelerator='cuda': no CUDA GPU is visible to this process (use accelerator=auto or cpu)")
