"""pipeline/tracking/reuse.py: one definition of "the same run" for reuse and resume, downloads reused only while their source
is unchanged, and one-line errors for bad run ids."""

import dataclasses
import os
import time

import mlflow
import pytest

import main
from conftest import cli_runner, easy_reviews, write_splits, zip_folder
from pipeline import download_data, fine_tuning_model
from pipeline.errors import PipelineError
from pipeline.training.launcher import job_for_run
from pipeline.parameters import FineTuning
from pipeline.tracking.reuse import data_run_for, find_reusable_run, reusable_run, run_identity
from pipeline.tracking.runs import step_run_by_id
from pipeline.contract import SOURCE_TAG, STEP_TAG

PARAMS = {"epochs": "3", "learning_rate": "0.0001", "checkpoint_dir": "./checkpoints", "cache_dir": "~/.cache/x",
          "data_path": "runs:/abc/imdb"}
DIGESTS = {"train": "1", "valid": "2", "test": "3"}


def test_placement_hardware_and_data_reference_do_not_make_another_run(tmp_path):
    moved = PARAMS | {"checkpoint_dir": "/elsewhere", "cache_dir": "/tmp/cache", "data_path": "runs:/def/imdb",
                      "devices": "2", "accelerator": "cuda", "num_nodes": "2", "spark_master": "local[2]", "compile": "true"}
    assert run_identity(moved, DIGESTS) == run_identity(PARAMS, DIGESTS)
    assert run_identity(PARAMS | {"epochs": "4"}, DIGESTS) != run_identity(PARAMS, DIGESTS)
    assert run_identity(PARAMS, DIGESTS | {"test": "4"}) != run_identity(PARAMS, DIGESTS)
    assert run_identity(PARAMS | {"precision": "bf16-mixed"}, DIGESTS) != run_identity(PARAMS, DIGESTS)  # other numbers
    # Resume uses the same identity: re-downloaded identical data (another data_path), or the run killed on two
    # GPUs started again on one, finds the same checkpoints.
    config = FineTuning(checkpoint_dir=str(tmp_path), epochs=3)
    elsewhere = dataclasses.replace(config, cache_dir="/tmp/cache", data_path="runs:/def/imdb", devices="2",
                                    accelerator="cuda", num_nodes=2, spark_master="local[2]", compile="true")
    assert job_for_run(config, tmp_path, DIGESTS, "run-1").checkpoints == job_for_run(elsewhere, tmp_path, DIGESTS, "run-2").checkpoints
    assert job_for_run(config, tmp_path, DIGESTS, "run-1").checkpoints != job_for_run(
        dataclasses.replace(config, epochs=4), tmp_path, DIGESTS, "run-1").checkpoints


def test_unknown_or_wrong_run_ids_are_one_line(tracking):
    with mlflow.start_run() as run:
        mlflow.set_tag(STEP_TAG, "fine_tuning_model")
    with pytest.raises(PipelineError, match=r"^data_path='runs:/0123456789abcdef/imdb': no run '0123456789abcdef' in sqlite:"):
        data_run_for("runs:/0123456789abcdef/imdb", "0")
    with pytest.raises(PipelineError, match=rf"^data_path='runs:/{run.info.run_id}/imdb': run {run.info.run_id} is a "
                                            r"fine_tuning_model run, not a download_data run$"):
        data_run_for(f"runs:/{run.info.run_id}/imdb", "0")
    assert step_run_by_id(run.info.run_id, "fine_tuning_model", "x").info.run_id == run.info.run_id


@pytest.mark.parametrize("served", [True, False], ids=["http", "local file"])
def test_a_download_is_reused_only_while_its_source_is_unchanged(tracking, http_root, easy_data, tmp_path, served):
    folder, base = http_root
    name = f"changing-{tmp_path.name}.zip"
    archive = zip_folder(easy_data, (folder if served else tmp_path) / name)
    url = f"{base}/{name}" if served else str(archive)
    values = {"download_url": url, "local_folder": str(tmp_path / "data")}
    assert cli_runner().invoke(download_data.main, ["--download-url", url, "--local-folder", values["local_folder"]]).exit_code == 0
    declared = main.step_defaults()
    first = reusable_run("download_data", values, declared, "0", commit=None)
    assert first is not None and first.data.tags[SOURCE_TAG] != "unknown"

    (easy_data.parent / "changed").mkdir(exist_ok=True)
    changed = write_splits(easy_data.parent / "changed", {"train": easy_reviews(50, 7), "valid": easy_reviews(10, 8), "test": easy_reviews(10, 9)})
    zip_folder(changed, archive)
    os.utime(archive, ns=(time.time_ns(), time.time_ns() + 2_000_000_000))  # a new version, also where clocks are coarse
    assert reusable_run("download_data", values, declared, "0", commit=None) is None
    assert reusable_run("download_data", values | {"download_url": f"{base}/missing.zip"}, declared, "0", commit=None) is None


def test_values_mlflow_stored_shell_quoted_still_match(tracking):
    """`mlflow run` stores a parameter as the shell saw it: '' for an empty value, quotes around `[`, `?` or `&`."""
    with mlflow.start_run() as run:
        mlflow.set_tag(STEP_TAG, "download_data")
        mlflow.log_params({"local_folder": "''", "download_url": "'https://example.org/imdb.zip?v=2&x=1'"})
    wanted = {"local_folder": "", "download_url": "https://example.org/imdb.zip?v=2&x=1"}
    assert find_reusable_run("download_data", "0", wanted, commit=None).info.run_id == run.info.run_id
    assert find_reusable_run("download_data", "0", wanted | {"local_folder": "data[2]"}, commit=None) is None


def test_messages_show_no_tracking_credentials(monkeypatch):
    """A run-id error names the tracking server, never the user and password its URI may carry."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri("http://alice:hunter2@127.0.0.1:9")
    try:
        with pytest.raises(PipelineError, match=r"^data_path='runs:/0123456789abcdef/imdb': no run '0123456789abcdef' in "
                                                r"http://127\.0\.0\.1:9 ") as raised:
            data_run_for("runs:/0123456789abcdef/imdb", "0")
    finally:
        mlflow.set_tracking_uri(None)
    assert "hunter2" not in str(raised.value)
