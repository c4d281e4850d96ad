"""A real tracking server: the pipeline over HTTP, the registered model loaded back, served by `mlflow models serve`,
and a server that dies while a step runs."""

import http.server
import json
import re
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import mlflow
import pandas as pd
import psutil
import pytest
import requests
import torch

from conftest import REPO, client_env, easy_reviews, pipeline_runs, stopping_after_first_epoch, stopping_at, tracking_at
from conftest import wait_for_stop
from conftest import leftovers, write_splits, zip_folder
from pipeline.data.reviews import read_dataset
from servers import free_port, mlflow_server, server_process

BIN = Path(sys.executable).parent
MODEL = "e2e_sentiment"  # registered by the session fixture `served_pipeline`
REVIEWS = ["the acting was superb and the film felt wonderful", "the script was dreadful and the music felt dull"]
pytestmark = pytest.mark.slow


def test_pipeline_tracks_into_the_server(served_pipeline, mlflow_server, tmp_path):
    _, _, result = served_pipeline
    assert result.returncode == 0, result.stderr[-3000:]
    runs = [run for step_runs in pipeline_runs(mlflow_server, result).values() for run in step_runs]
    assert sorted(run.data.tags["mlflow.project.entryPoint"] for run in runs) == ["download_data", "fine_tuning_model", "main",
                                                                                  "register_model"]
    assert all(run.info.status == "FINISHED" for run in runs)
    assert all(run.info.artifact_uri.startswith("mlflow-artifacts:/") for run in runs)  # proxied: the server stores them
    (registered,) = [run for run in runs if run.data.tags["mlflow.project.entryPoint"] == "register_model"]
    version = mlflow.MlflowClient(mlflow_server).get_model_version(MODEL, registered.data.tags["registered_model_version"])
    with tracking_at(mlflow_server):
        model = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version.version}", dst_path=str(tmp_path))
    assert model.metadata.run_id == version.run_id
    assert model.predict(pd.DataFrame({"review": REVIEWS}))["label"].tolist() == ["positive", "negative"]


def readme_serving_commands(port: int) -> tuple[str, str]:
    """The README's `mlflow models serve` (without its `&`) and `curl` lines, for this test's model on `port`."""
    block = re.search(r"```bash\n(mlflow models serve .*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    serve, curl = block.replace("dl_finetuned_model", MODEL).replace("5001", str(port)).splitlines()
    return serve.removesuffix(" &"), curl


def test_models_serve_answers_raw_text_with_the_blend(served_pipeline, mlflow_server, tmp_path):
    _, _, result = served_pipeline
    assert result.returncode == 0
    env = client_env(mlflow_server)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve, curl = readme_serving_commands(port)  # as the README writes them, on a free port and this test's model
    command = [str(BIN / "mlflow"), *shlex.split(serve)[1:], "--host", "127.0.0.1", "--workers", "1"]
    with server_process(command, tmp_path / "serve.log", lambda: requests.get(f"{url}/ping", timeout=2).ok, "mlflow models serve", env):
        fetched = subprocess.run(curl, shell=True, capture_output=True, text=True, timeout=60)
        assert fetched.returncode == 0 and json.loads(fetched.stdout)["predictions"][0]["label"] == "positive", fetched
        answer = requests.post(f"{url}/invocations", json={"dataframe_records": [{"review": text} for text in REVIEWS]}, timeout=60)
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert [row["label"] for row in predictions] == ["positive", "negative"]
        assert all(0.5 <= row["probability"] <= 1.0 for row in predictions)
        assert all({"transformer_positive_probability", "baseline_positive_probability"} <= set(row) for row in predictions)
        listed = requests.post(f"{url}/invocations", json={"inputs": REVIEWS}, timeout=60)
        assert listed.status_code == 200 and listed.json()["predictions"] == predictions
        refused = requests.post(f"{url}/invocations", json={"reviews": REVIEWS}, timeout=60)  # not a format MLflow serves
        assert refused.status_code == 400 and "dataframe_records" in refused.text  # the answer names the formats it takes


def test_concurrent_registrations_leave_the_alias_on_the_better_model(served_pipeline, mlflow_server, tmp_path):
    """Two register_model processes at once, into one model on the server: two versions, @champion on the better."""
    _, values, result = served_pipeline
    assert result.returncode == 0
    client = mlflow.MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("e2e").experiment_id
    strong = client.search_runs([experiment], "tags.`pipeline.step` = 'fine_tuning_model' and params.epochs = '3'")[0]
    env = client_env(mlflow_server, MLFLOW_EXPERIMENT_NAME="e2e")
    weak_training = subprocess.run(
        [sys.executable, "-m", "pipeline.fine_tuning_model", "--foundation-model", str(values["foundation_model"]),
         "--data-path", strong.data.params["data_path"], "--epochs", "1", "--learning-rate", "1e-5", "--max-length", "32",
         "--serve", "transformer",
         "--checkpoint-dir", str(tmp_path / "ckpt"), "--cache-dir", str(values["cache_dir"])],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert weak_training.returncode == 0, weak_training.stderr[-2000:]
    weak = client.search_runs([experiment], "tags.`pipeline.step` = 'fine_tuning_model'", order_by=["attributes.start_time DESC"])[0]
    assert weak.data.metrics["served_test_macro_f1"] < strong.data.metrics["served_test_macro_f1"]

    registrations = [subprocess.Popen([sys.executable, "-m", "pipeline.register_model", "--mlflow-run-id", run.info.run_id,
                                       "--registered-model-name", "concurrent", "--min-score", "0", "--beat-baseline", "false"],
                                      env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                     for run in (weak, strong)]
    outputs = [process.communicate(timeout=300)[0] for process in registrations]
    assert [process.returncode for process in registrations] == [0, 0], outputs
    versions = client.search_model_versions("name = 'concurrent'")
    assert sorted(version.run_id for version in versions) == sorted([weak.info.run_id, strong.info.run_id])
    assert client.get_model_version_by_alias("concurrent", "champion").run_id == strong.info.run_id



def test_a_server_that_dies_mid_training_is_one_line_and_the_rerun_resumes(tiny_model, tmp_path):
    """The server goes away after the first epoch's checkpoint: the step ends in one line naming the server (no
    traceback, no credentials), the checkpoints stay, and the same command, once the server is back, resumes from
    the last finished epoch and finishes the run."""
    data = write_splits(tmp_path / "data", {"train": easy_reviews(600, 31), "valid": easy_reviews(100, 32),
                                            "test": easy_reviews(100, 33)})
    store, port = tmp_path / "server", free_port()
    store.mkdir()
    command = [sys.executable, "-m", "pipeline.fine_tuning_model", "--foundation-model", str(tiny_model), "--data-path", str(data),
               "--epochs", "3", "--batch-size", "8", "--max-length", "32", "--learning-rate", "3e-3",
               "--checkpoint-dir", str(tmp_path / "ckpt"), "--cache-dir", str(tmp_path / "cache")]
    env = client_env(f"http://alice:hunter2@127.0.0.1:{port}", MLFLOW_HTTP_REQUEST_MAX_RETRIES="1",
                     MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1", MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    marker = tmp_path / "stopped"
    with mlflow_server(store, port=port):
        step = subprocess.Popen(command, env=stopping_after_first_epoch(env, marker), cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        wait_for_stop(marker, step)
    for process in psutil.Process(step.pid).children(recursive=True):  # the server is gone: training goes on
        process.resume()
    stdout, stderr = step.communicate(timeout=600)

    assert step.returncode == 1, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].startswith(f"error: tracking store http://127.0.0.1:{port} failed during fine_tuning_model (")
    assert "Traceback" not in stderr and "hunter2" not in stdout + stderr
    (last,) = (tmp_path / "ckpt").glob("*/last.ckpt")  # kept for the rerun
    finished_epochs = torch.load(last, map_location="cpu", weights_only=False)["epoch"] + 1

    with mlflow_server(store, port=port) as uri:
        rerun = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        client = mlflow.MlflowClient(uri)
        interrupted, resumed = client.search_runs(["0"], order_by=["attributes.start_time ASC"])
        epochs = {int(point.value) for point in client.get_metric_history(resumed.info.run_id, "epoch")}
        validated = client.get_metric_history(resumed.info.run_id, "val_macro_f1")
    assert interrupted.info.status == "RUNNING"  # nobody could reach the server to close it
    assert resumed.info.status == "FINISHED" and resumed.data.tags["pipeline.resumed"] == "true"
    assert min(epochs) == finished_epochs and len(validated) == 3 - finished_epochs  # only the epochs left


def test_a_server_that_dies_while_registering_leaves_the_alias_where_it_was(tiny_model, easy_data, tmp_path):
    """The server goes away right before register_model moves @champion: one line naming the server, and once it
    is back the registry holds complete versions only (the new one with its gate tags) and @champion unmoved."""
    store, port = tmp_path / "server", free_port()
    store.mkdir()
    env = client_env(f"http://127.0.0.1:{port}", MLFLOW_HTTP_REQUEST_MAX_RETRIES="1", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1",
                     MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    step = [sys.executable, "-m"]
    register = [*step, "pipeline.register_model", "--registered-model-name", "dying", "--min-score", "0", "--beat-baseline", "false"]
    marker = tmp_path / "stopped"
    with mlflow_server(store, port=port):
        trained = subprocess.run([*step, "pipeline.fine_tuning_model", "--foundation-model", str(tiny_model), "--data-path",
                                  str(easy_data), "--epochs", "1", "--max-length", "16", "--checkpoint-dir", str(tmp_path / "ckpt"),
                                  "--cache-dir", str(tmp_path / "cache")], env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert trained.returncode == 0, trained.stderr[-3000:]
        first = subprocess.run(register, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert first.returncode == 0 and "@champion -> version 1" in first.stdout, first.stderr[-3000:]
        second = subprocess.Popen(register, env=stopping_at("alias", env, marker), cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        wait_for_stop(marker, second)
    second.send_signal(signal.SIGCONT)  # the server is gone: it goes on to move the alias
    _, stderr = second.communicate(timeout=600)
    assert second.returncode == 1
    assert stderr.strip().splitlines()[-1].startswith(f"error: tracking store http://127.0.0.1:{port} failed during register_model (")
    assert "Traceback" not in stderr

    with mlflow_server(store, port=port) as uri:
        client = mlflow.MlflowClient(uri)
        versions = {int(version.version): version for version in client.search_model_versions("name = 'dying'")}
        champion = client.get_model_version_by_alias("dying", "champion")
    assert sorted(versions) == [1, 2] and all(version.status == "READY" for version in versions.values())
    assert versions[2].tags["quality_gate"] == "passed"  # complete: registered with its gate tags in one call
    assert champion.version == "1"  # unmoved


def test_a_server_that_dies_during_a_download_is_one_line_and_the_data_stay_whole(easy_data, tmp_path):
    """The tracking server goes away while the archive downloads (the data server holds the answer until then):
    one line naming the tracking server, a data folder that is the old data or the new, checked, never a mix, and
    a rerun that succeeds once the server is back."""
    archive = zip_folder(easy_data, tmp_path / "imdb.zip").read_bytes()
    requested, release = threading.Event(), threading.Event()

    class HeldAnswer(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(archive)))
            self.end_headers()

        def do_GET(self):
            requested.set()
            release.wait(timeout=300)
            self.do_HEAD()
            self.wfile.write(archive)

        def log_message(self, *args):
            pass

    data_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HeldAnswer)
    threading.Thread(target=data_server.serve_forever, daemon=True).start()
    store, port = tmp_path / "server", free_port()
    store.mkdir()
    env = client_env(f"http://127.0.0.1:{port}", MLFLOW_HTTP_REQUEST_MAX_RETRIES="1", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1",
                     MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    command = [sys.executable, "-m", "pipeline.download_data", "--download-url", f"http://127.0.0.1:{data_server.server_port}/imdb.zip",
               "--local-folder", str(tmp_path / "data")]
    try:
        with mlflow_server(store, port=port):
            step = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert requested.wait(timeout=300), "the download never started"
        release.set()  # the tracking server is gone: the archive arrives
        _, stderr = step.communicate(timeout=600)
        assert step.returncode == 1
        assert stderr.strip().splitlines()[-1].startswith(f"error: tracking store http://127.0.0.1:{port} failed during download_data (")
        assert "Traceback" not in stderr
        assert set(read_dataset(tmp_path / "data" / "imdb")) == {"train", "valid", "test"} and leftovers(tmp_path / "data") == []

        with mlflow_server(store, port=port):
            rerun = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
    finally:
        data_server.shutdown()
        data_server.server_close()
