"""Several machines with Spark's TorchDistributor: real Spark (`local-cluster[2,1,1024]`: a master and two worker
JVMs on this machine), two CPU training processes over gloo, one MLflow run and one model."""

import contextlib
import dataclasses
import math
import os
import signal
import subprocess
import sys

import mlflow
import psutil
import pytest
import torch

from conftest import REPO, cli_runner, client_env, easy_reviews, mlflow_run, params, runs_by_entry_point, stopping_after_first_epoch
from conftest import tracking_at, wait_for_stop, write_splits
from pipeline import download_data, fine_tuning_model
from pipeline.errors import PipelineError
from pipeline.training.launcher import job_for_run, refuse_what_cannot_run
from pipeline.training.multinode import paths_outside_shared_folders, shared_job
from pipeline.parameters import FineTuning

SPARK = "local-cluster[2,1,1024]"
DIGESTS = {"train": "1", "valid": "2", "test": "3"}


def test_several_machines_on_spark_connect_are_refused_before_any_run(monkeypatch):
    """TorchDistributor is started by the cluster's driver, which a Spark Connect client (SPARK_REMOTE) is not."""
    monkeypatch.setenv("SPARK_REMOTE", "sc://cluster:15002")
    with pytest.raises(PipelineError, match=r"^num_nodes > 1 trains on classic Spark, as the cluster's driver; "
                                            r"SPARK_REMOTE='sc://cluster:15002' asks for Spark Connect: unset it"):
        refuse_what_cannot_run(FineTuning(num_nodes=2))


def test_every_path_a_training_process_gets_lies_in_the_shared_folders(tmp_path, tiny_model, easy_data):
    """The workers see none of the driver's disk: the data and a local foundation model are copied into the
    shared run folder, and nothing in the job points elsewhere."""
    cache, checkpoints = tmp_path / "shared" / "cache", tmp_path / "shared" / "ckpt"
    config = FineTuning(foundation_model=str(tiny_model), cache_dir=str(cache), checkpoint_dir=str(checkpoints), num_nodes=2)
    work = cache / "runs" / "run-1"
    job = shared_job(job_for_run(config, easy_data, DIGESTS, run_id="run-1"), work)
    assert paths_outside_shared_folders(job) == []
    assert (job.world_size, job.mlflow_run_id) == (2, None)  # no credentials travel: rank 0 writes CSV for the driver
    assert job.data_dir == str(work / "data") and (work / "data" / "train.csv").is_file()
    assert job.config.foundation_model == str(work / "foundation_model") and (work / "foundation_model" / "config.json").is_file()
    assert config.foundation_model == str(tiny_model)  # the step's own parameters (its run identity) are unchanged
    hub = shared_job(job_for_run(dataclasses.replace(config, foundation_model="prajjwal1/bert-tiny"), easy_data, DIGESTS, "run-1"), work)
    assert hub.config.foundation_model == "prajjwal1/bert-tiny"  # a hub id: each node downloads it


def test_a_path_outside_the_shared_folders_is_refused(tmp_path, easy_data):
    config = FineTuning(cache_dir=str(tmp_path / "cache"), checkpoint_dir=str(tmp_path / "ckpt"), num_nodes=2)
    job = job_for_run(config, easy_data, DIGESTS, "r")
    with pytest.raises(PipelineError, match=rf"num_nodes > 1: data_dir={tmp_path / 'elsewhere'}/data, log_dir={tmp_path / 'elsewhere'}/logs would not be readable by the other nodes; "):
        shared_job(job, tmp_path / "elsewhere")


def test_one_machine_logs_live_into_the_steps_run(tmp_path, easy_data):
    """On one machine the job is one process with the step's credentials, logging into the step's run."""
    config = FineTuning(cache_dir=str(tmp_path / "cache"), checkpoint_dir=str(tmp_path / "ckpt"))
    job = job_for_run(config, easy_data, DIGESTS, "run-1")
    assert (job.world_size, job.mlflow_run_id, job.resume_from) == (1, "run-1", None)


@pytest.mark.slow
def test_two_processes_train_one_model_end_to_end(tiny_model, easy_data, easy_zip_url, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = mlflow_run(uri, *params(download_url=easy_zip_url, local_folder=tmp_path / "data", foundation_model=tiny_model,
                                     num_nodes=2, spark_master=SPARK, epochs=5, batch_size=16, learning_rate=3e-3, max_length=32,
                                     checkpoint_dir=tmp_path / "shared" / "ckpt", cache_dir=tmp_path / "shared" / "cache",
                                     registered_model_name="multinode", beat_baseline="false", min_score=0), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = runs_by_entry_point(uri)
    (tuned,) = runs["fine_tuning_model"]
    assert tuned.info.status == "FINISHED" and runs["main"][0].info.status == "FINISHED"
    params_logged = tuned.data.params
    assert (params_logged["num_nodes"], params_logged["resolved_num_nodes"], params_logged["resolved_devices"]) == ("2", "2", "1")
    assert params_logged["resolved_strategy"] == "ddp" and params_logged["resolved_accelerator"] == "cpu"
    # Each process got its own half of the 400 training reviews (DistributedSampler): half the batches of one process.
    assert int(params_logged["train_batches_per_epoch"]) == math.ceil(400 / 2 / 16)
    client = mlflow.MlflowClient(uri)
    history = client.get_metric_history(tuned.info.run_id, "val_macro_f1")  # rank 0's metrics reached the run
    assert history and [point.step for point in history] == list(range(len(history)))  # at step = epoch
    assert tuned.data.metrics["test_accuracy"] >= 0.85
    with tracking_at(uri):
        assert len(mlflow.search_logged_models(experiment_ids=[tuned.info.experiment_id], output_format="list")) == 1
        model = mlflow.pyfunc.load_model("models:/multinode@champion")
    answer = model.predict(["the acting was superb and the film felt wonderful", "the script was dreadful and the music felt dull"])
    assert answer["label"].tolist() == ["positive", "negative"]
    assert not list((tmp_path / "shared" / "ckpt").glob("*/*.ckpt"))  # finished: checkpoints removed


@pytest.mark.slow
def test_killed_multi_node_training_resumes_from_the_shared_checkpoint(tiny_model, tmp_path):
    data = write_splits(tmp_path / "data", {"train": easy_reviews(1200, 21), "valid": easy_reviews(100, 22),
                                            "test": easy_reviews(100, 23)})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", "fine_tuning_model", "--experiment-name", "resume",
               *params(foundation_model=tiny_model, data_path=data, num_nodes=2, spark_master=SPARK, epochs=3, batch_size=8,
                       max_length=32, learning_rate=3e-3, checkpoint_dir=tmp_path / "ckpt", cache_dir=tmp_path / "cache")]
    marker = tmp_path / "stopped"
    first = subprocess.Popen(command, env=stopping_after_first_epoch(client_env(uri), marker), cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for_stop(marker, first)
    children = psutil.Process(first.pid).children(recursive=True)  # the driver, Spark's JVMs, the training processes
    os.killpg(first.pid, signal.SIGKILL)
    for child in children:  # also those in sessions of their own, as a lost cluster would lose them
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    first.wait()
    (last,) = (tmp_path / "ckpt").glob("*/last.ckpt")
    finished_epochs = torch.load(last, map_location="cpu", weights_only=False)["epoch"] + 1
    assert finished_epochs == 1

    second = subprocess.run(command, env=client_env(uri), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    killed, resumed = runs_by_entry_point(uri, "resume")["fine_tuning_model"]
    assert killed.info.status == "RUNNING" and resumed.info.status == "FINISHED"
    assert resumed.data.tags["pipeline.resumed"] == "true"
    epochs = {int(point.value) for point in mlflow.MlflowClient(uri).get_metric_history(resumed.info.run_id, "epoch")}
    assert min(epochs) == finished_epochs  # it trained only the epochs after the shared checkpoint


@pytest.mark.slow
def test_an_unreachable_spark_is_one_line_and_leaves_no_shared_run_folder(tracking, tiny_model, easy_zip_url, tmp_path):
    """The driver downloads the data into the shared run folder first; a failure afterwards removes that copy."""
    assert cli_runner().invoke(download_data.main, ["--download-url", easy_zip_url, "--local-folder", str(tmp_path)]).exit_code == 0
    result = cli_runner().invoke(fine_tuning_model.main, [
        "--foundation-model", str(tiny_model), "--num-nodes", "2", "--spark-master", "bogus://x", "--max-length", "32",
        "--cache-dir", str(tmp_path / "cache"), "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert result.exit_code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: spark_master='bogus://x': cannot start or reach Spark (")
    (run,) = mlflow.search_runs(experiment_names=["Default"], filter_string="attributes.status = 'FAILED'", output_format="list")
    assert run.data.tags["pipeline.error"] == line.removeprefix("error: ")
    assert (tmp_path / "cache" / "runs").is_dir() and not list((tmp_path / "cache" / "runs").iterdir())
