"""pipeline.training.process, pipeline.training.job and pipeline.training.launcher: the training job as its own process, its outcome or
its one line."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from conftest import stopping_at, wait_for_stop
from pipeline.errors import PipelineError
from pipeline.training.launcher import TRAINING_SCRIPT, job_for_run
from pipeline.training.multinode import logged_metrics
from pipeline.parameters import FineTuning
from pipeline.training.process import EpochMLFlowLogger
from pipeline.training.job import ERROR_FILE, OUTCOME_FILE, TrainingJob, read_outcome


def job_for(tmp_path, data, **fields) -> TrainingJob:
    """A job that writes CSV metrics into `<tmp_path>/work/logs`, as a launcher without a run id places it."""
    config = FineTuning(**dict(data_path=str(data), epochs=1, batch_size=16, max_length=16, cache_dir=str(tmp_path / "cache"),
                               checkpoint_dir=str(tmp_path / "ckpt")) | fields)
    job = dataclasses.replace(job_for_run(config, data, {"train": "1"}, "unused"), mlflow_run_id=None,
                              log_dir=str(tmp_path / "work" / "logs"))
    (tmp_path / "work" / "logs").mkdir(parents=True)
    return job


def run_job(job: TrainingJob, tmp_path) -> subprocess.CompletedProcess:
    """`python pipeline/training/process.py <job.json>`, as the launcher starts it on one machine."""
    job_file = job.write(tmp_path / "job.json")
    return subprocess.run([sys.executable, str(TRAINING_SCRIPT), str(job_file)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)


def test_a_job_travels_as_json_unchanged(tmp_path, easy_data):
    job = job_for(tmp_path, easy_data)
    assert TrainingJob.read(job.write(tmp_path / "job.json")) == job
    assert json.loads((tmp_path / "job.json").read_text())["config"]["epochs"] == 1
    assert isinstance(TrainingJob.read(tmp_path / "job.json").config, FineTuning)  # the dataclass, not a dict


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])  # bf16-mixed: auto's choice on CPUs with native bf16
def test_a_training_process_writes_its_outcome_and_metrics(tmp_path, easy_data, tiny_model, precision):
    """Also in bf16 mixed precision, with the gradient clipping every run uses (emulated bf16 on other CPUs)."""
    job = job_for(tmp_path, easy_data, foundation_model=str(tiny_model), precision=precision)
    result = run_job(job, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = read_outcome(job, result.returncode)
    assert outcome.best_model_path.endswith(".ckpt") and sum(map(sum, outcome.confusion)) == 100  # the 100 test reviews
    assert (outcome.resolved["resolved_accelerator"], outcome.resolved["resolved_precision"]) == ("cpu", precision)
    assert outcome.train_batches_per_epoch == 25
    assert "val_macro_f1" in (tmp_path / "work" / "logs" / "metrics.csv").read_text()  # no run id: CSV for the step


@pytest.mark.slow
def test_a_fit_killed_mid_epoch_and_resumed_trains_as_the_uninterrupted_one(tmp_path, easy_data, tiny_model):
    """SIGKILL in the second epoch, then the job again from the `last.ckpt` the first left: the epochs it trains
    again score as those of the same job run through, and so do the best epoch and the test counts (the generators
    are not in the checkpoint: `EpochShuffle` and `EpochSeed` make each epoch's order and dropout the same anyway)."""
    fields = dict(foundation_model=str(tiny_model), epochs=3, learning_rate=3e-3)
    whole, cut = job_for(tmp_path / "whole", easy_data, **fields), job_for(tmp_path / "cut", easy_data, **fields)
    assert run_job(whole, tmp_path / "whole").returncode == 0
    marker = tmp_path / "stopped"
    process = subprocess.Popen([sys.executable, str(TRAINING_SCRIPT), str(cut.write(tmp_path / "cut" / "job.json"))],
                               cwd=tmp_path, env=stopping_at("mid_epoch", dict(os.environ), marker))
    wait_for_stop(marker, process)
    process.kill()
    process.wait()
    resumed = dataclasses.replace(cut, resume_from=str(Path(cut.checkpoints) / "last.ckpt"))
    assert run_job(resumed, tmp_path / "cut").returncode == 0

    def scores(name: str) -> dict[int, dict[str, float]]:
        """Each epoch's validation scores, as the CSV logger wrote them (read as the step reads them)."""
        return {epoch: {key: value for key, value in values.items() if key.startswith("val_")}
                for epoch, values in logged_metrics(tmp_path / name / "work" / "logs") if "val_macro_f1" in values}

    through, again = scores("whole"), scores("cut")
    assert sorted(through) == [0, 1, 2] and {1, 2} <= set(again)
    assert {epoch: again[epoch] for epoch in (1, 2)} == {epoch: through[epoch] for epoch in (1, 2)}
    outcomes = [json.loads((tmp_path / name / "work" / "logs" / OUTCOME_FILE).read_text()) for name in ("whole", "cut")]
    assert len({(Path(o["best_model_path"]).name, o["best_model_score"], str(o["confusion"])) for o in outcomes}) == 1, outcomes


def test_a_failed_training_process_hands_back_its_one_line(tmp_path, easy_data):
    job = job_for(tmp_path, easy_data, foundation_model=str(tmp_path / "no-model"))
    result = run_job(job, tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr  # a PipelineError: its line, no traceback
    line = (tmp_path / "work" / "logs" / ERROR_FILE).read_text()
    assert line.startswith(f"foundation_model={str(tmp_path / 'no-model')!r}: no such folder")
    with pytest.raises(PipelineError, match=r"^training failed: foundation_model="):
        read_outcome(job, result.returncode)


def test_a_training_process_that_dies_without_a_word_is_still_one_line(tmp_path, easy_data):
    job = job_for(tmp_path, easy_data)
    with pytest.raises(PipelineError, match=r"^training ended without a result \(exit code -9\)"):
        read_outcome(job, -9)
    (tmp_path / "work" / "logs" / OUTCOME_FILE).write_text("{}")
    with pytest.raises(PipelineError, match=r"exit code 1\)"):
        read_outcome(job, 1)  # an outcome from an earlier attempt does not count when the process failed


def test_the_epoch_logger_logs_at_the_epoch_and_leaves_the_run_open(tracking):
    """Lightning's own MLflow logger ends the run when training ends; the step still has the model to log."""
    with mlflow.start_run() as run:
        logger = EpochMLFlowLogger(run_id=run.info.run_id, tracking_uri=tracking)
        logger.log_metrics({"val_macro_f1": 0.5, "epoch": 2.0}, step=99)
        logger.log_metrics({"lr-AdamW": 0.001}, step=99)
        logger.finalize("success")
        assert mlflow.get_run(run.info.run_id).info.status == "RUNNING"
    client = mlflow.MlflowClient()
    assert [point.step for point in client.get_metric_history(run.info.run_id, "val_macro_f1")] == [2]
    assert [point.step for point in client.get_metric_history(run.info.run_id, "lr-AdamW")] == [99]

