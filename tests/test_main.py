"""main.py: step selection and parameter checks, and the whole pipeline through real `mlflow run` subprocesses."""

import os
import signal
import subprocess
import sys

import mlflow
import pandas as pd
import psutil
import pytest

import main
from conftest import REPO, SECRETS, cli_runner, client_env, mlflow_run, params, pipeline_runs, runs_by_entry_point, tracking_at
from conftest import ctrl_c_while_stopped, kill_tree, stopping_at, wait_for_stop
from pipeline.contract import REGISTERING_RUN_TAG, STEPS
from pipeline.errors import PipelineError
from pipeline.evaluation.reports import epoch_points



def test_parse_steps_keeps_pipeline_order():
    assert main.parse_steps("all") == ["download_data", "fine_tuning_model", "register_model"]
    assert main.parse_steps("register_model, fine_tuning_model") == ["fine_tuning_model", "register_model"]
    assert main.parse_steps("batch_inference,register_model") == ["register_model", "batch_inference"]  # only when named
    assert main.parse_steps("all,batch_inference") == [*STEPS, "batch_inference"]
    with pytest.raises(PipelineError, match=r"unknown step\(s\) \['train'\]; valid: all, or a comma list of download_data"):
        main.parse_steps("download_data,train")
    with pytest.raises(PipelineError, match="unknown step"):
        main.parse_steps(" , ")


def workspace_at(host: str, monkeypatch, home) -> None:
    """databricks-sdk's default credentials name `host`, a real workspace's form. Offline, the SDK's probe of the host
    (`/.well-known/databricks-config`) goes to a closed local port and gives up after a second, as it may."""
    for variable in ("DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CLOUD", "DATABRICKS_HOST", "DATABRICKS_TOKEN", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(variable, raising=False)
    (home / ".databrickscfg").write_text(f"[DEFAULT]\nhost = {host}\ntoken = dapi-test\nretry_timeout_seconds = 1\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")


@pytest.mark.parametrize(("host", "suffix"), [("https://dbc-a1b2c3d4-e5f6.cloud.databricks.com", ""),
                                            ("https://adb-1234567890123456.7.azuredatabricks.net", ".azure"),
                                            ("https://1234567890123456.7.gcp.databricks.com", ".gcp")])
def test_steps_that_use_spark_on_databricks_go_as_their_own_job_on_their_clouds_spec(monkeypatch, tmp_path, host, suffix):
    """A Databricks driver's child processes get no Spark: batch_inference and multi-node training are submitted, to
    the specs of the workspace's cloud (databricks-sdk's reading of the host), checked before the first step."""
    workspace_at(host, monkeypatch, tmp_path)
    steps = [*STEPS, "batch_inference"]
    assert main.job_specs(REPO, steps, {"num_nodes": "2"}) == {}  # off a cluster every step runs beside main
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "18.0")
    assert main.job_specs(REPO, steps, {"num_nodes": "2"}) == {
        "batch_inference": str(REPO / f"cluster_spec{suffix}.json"), "fine_tuning_model": str(REPO / f"training_cluster_spec{suffix}.json")}
    assert main.job_specs(REPO, steps, {}) == {"batch_inference": str(REPO / f"cluster_spec{suffix}.json")}
    assert main.job_specs(REPO, list(STEPS), {}) == {}


def test_a_spec_for_another_cloud_is_one_line_before_any_step(monkeypatch, tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "cluster_spec.azure.json").write_text((REPO / "cluster_spec.json").read_text())  # AWS node types
    workspace_at("https://adb-1234567890123456.7.azuredatabricks.net", monkeypatch, tmp_path)
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "18.0")
    with pytest.raises(PipelineError, match=r"^cluster_spec.azure.json: node_type_id 'g4dn.xlarge' is no AZURE node type"):
        main.job_specs(folder, ["batch_inference"], {})
    with pytest.raises(PipelineError, match=r"^training_cluster_spec.azure.json: missing"):
        main.job_specs(folder, ["fine_tuning_model"], {"num_nodes": "3"})


def test_batch_inference_scores_with_the_alias_of_the_name_given_unless_told_another_model():
    declared = main.step_defaults()
    assert main.batch_model_uri({}, declared) == "models:/dl_finetuned_model@champion"
    # `mlflow run` passes every default along: the default model_uri follows registered_model_name and alias
    given = {"model_uri": "models:/dl_finetuned_model@champion", "registered_model_name": "main.ml.m", "alias": "serving"}
    assert main.batch_model_uri(given, declared) == "models:/main.ml.m@serving"
    assert main.batch_model_uri(given | {"model_uri": "runs:/abc/model"}, declared) == "runs:/abc/model"


def test_parameters_are_checked_before_any_step():
    assert main.parse_parameters(("epochs=2", "learning_rate=1e-4", "data_path=")) == {
        "epochs": "2", "learning_rate": "1e-4", "data_path": ""}
    with pytest.raises(PipelineError, match=r"^-P epochs='abc': 'abc' is not a whole number of at least 1 \(entry point fine_tuning_model\)$"):
        main.parse_parameters(("epochs=abc",))
    refused = {"epochs=0": "'0' is not a whole number of at least 1", "learning_rate=0": "'0' is not a number greater than 0",
               "fine_tuning_strategy=all": "'all' is not one of 'no_freeze', 'freeze', 'freeze_unfreeze'.",
               "min_score=1.5": "'1.5' is not a number from 0 to 1", "accelerator=tpu": "'tpu' is not one of",
               "batch_size=1.5": "'1.5' is not a whole number of at least 1", "beat_baseline=maybe": "'maybe' is neither true nor false"}
    for pair, reason in refused.items():
        with pytest.raises(PipelineError, match=f"^-P {pair.replace('=', '=.')}.: {reason}"):
            main.parse_parameters((pair,))
    with pytest.raises(PipelineError, match="'colour=red': not a parameter of any step"):
        main.parse_parameters(("colour=red",))


def test_bad_values_fail_before_any_run(tracking, monkeypatch):
    monkeypatch.chdir(REPO)  # main.py runs in the project folder
    result = cli_runner().invoke(main.main, ["--pipeline-steps", "all", "epochs=0"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: -P epochs='0': '0' is not a whole number of at least 1 (entry point fine_tuning_model)"
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []


def test_unreachable_tracking_server_is_one_line(monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://alice:hunter2@127.0.0.1:9")
    mlflow.set_tracking_uri("http://alice:hunter2@127.0.0.1:9")
    try:
        result = cli_runner().invoke(main.main, ["--pipeline-steps", "download_data"])
    finally:
        mlflow.set_tracking_uri(None)
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: tracking server http://127.0.0.1:9 does not answer (ConnectionError); "
                                     "check MLFLOW_TRACKING_URI")


@pytest.mark.slow
def test_full_pipeline(served_pipeline, tmp_path):
    uri, _, result = served_pipeline
    assert result.returncode == 0, result.stderr[-3000:]
    runs = pipeline_runs(uri, result)
    (parent,) = runs["main"]
    assert parent.info.status == "FINISHED"
    for step in STEPS:
        (child,) = runs[step]
        assert child.info.status == "FINISHED", step
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["mlflow.project.entryPoint"] == step
        assert parent.data.tags[f"pipeline.{step}.run_id"] == child.info.run_id
    download, tuned, registered = (runs[step][0] for step in STEPS)
    assert tuned.data.params["data_path"] == f"runs:/{download.info.run_id}/imdb"  # handed over by reference
    assert tuned.data.params["epochs"] == "3" and tuned.data.params["foundation_model"].endswith("tiny-bert0")
    assert tuned.data.metrics["test_accuracy"] >= 0.85
    assert registered.data.params["mlflow_run_id"] == tuned.info.run_id
    assert registered.data.tags["pipeline.quality_gate"] == "passed"

    version = mlflow.MlflowClient(uri).get_model_version("e2e_sentiment", registered.data.tags["registered_model_version"])
    assert version.run_id == tuned.info.run_id and f"@champion -> version {version.version}" in result.stdout + result.stderr
    with tracking_at(uri):
        model = mlflow.pyfunc.load_model(f"models:/e2e_sentiment/{version.version}", dst_path=str(tmp_path))
    answer = model.predict(pd.DataFrame({"review": ["the acting was superb and the film felt wonderful",
                                                    "the script was dreadful and the music felt dull"]}))
    assert answer["label"].tolist() == ["positive", "negative"]


@pytest.mark.slow
def test_single_steps_take_the_latest_outputs(served_pipeline, tmp_path):
    uri, local, first = served_pipeline
    assert first.returncode == 0
    before = runs_by_entry_point(uri)
    result = mlflow_run(uri, *params(**local | {"pipeline_steps": "fine_tuning_model", "epochs": 2}), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (new_tuning,) = pipeline_runs(uri, result)["fine_tuning_model"]
    assert new_tuning.data.params["epochs"] == "2"
    assert new_tuning.data.tags["pipeline.data_run_id"] == before["download_data"][-1].info.run_id  # the latest download
    assert len(runs_by_entry_point(uri)["download_data"]) == len(before["download_data"])  # not downloaded again

    client = mlflow.MlflowClient(uri)
    champion = client.get_model_version_by_alias("e2e_sentiment", "champion")
    result = mlflow_run(uri, *params(pipeline_steps="register_model", registered_model_name="e2e_sentiment", beat_baseline="false"),
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (registered,) = pipeline_runs(uri, result)["register_model"]
    version = client.get_model_version("e2e_sentiment", registered.data.tags["registered_model_version"])
    assert version.run_id == new_tuning.info.run_id  # the latest fine-tuning run
    # The quality gate: the new version serves only if it is at least as good as the champion on the same test data.
    old = client.get_run(champion.run_id).data.metrics["served_test_macro_f1"]  # the gate judges the served models
    expected_alias = "champion" if new_tuning.data.metrics["served_test_macro_f1"] >= old else "challenger"
    assert client.get_model_version_by_alias("e2e_sentiment", expected_alias).version == version.version


@pytest.mark.slow
def test_rerun_reuses_finished_steps(served_pipeline, tmp_path):
    uri, local, first = served_pipeline
    assert first.returncode == 0
    before = runs_by_entry_point(uri)
    result = mlflow_run(uri, *params(**local), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    after = runs_by_entry_point(uri)
    parent = after["main"][-1]
    assert parent.data.tags["pipeline.reused"] == "download_data,fine_tuning_model,register_model"
    for step in STEPS:
        assert len(after[step]) == len(before[step]), step  # nothing ran again
        assert parent.data.tags[f"pipeline.{step}.run_id"] == pipeline_runs(uri, first)[step][0].info.run_id  # the fixture's
    assert "reusing finished fine_tuning_model run" in result.stdout + result.stderr

    result = mlflow_run(uri, *params(**local | {"pipeline_steps": "download_data", "reuse_completed": "false"}), cwd=tmp_path)
    assert result.returncode == 0
    assert len(runs_by_entry_point(uri)["download_data"]) == len(before["download_data"]) + 1


@pytest.mark.slow
def test_secrets_never_reach_the_store(served_pipeline, mlflow_server_folder):
    """Secrets were in every `mlflow run`'s environment: no param, tag, metric, artifact or log line holds them."""
    _, _, first = served_pipeline
    stored = [path for path in mlflow_server_folder.rglob("*") if path.is_file()]
    assert any(path.suffix == ".db" for path in stored) and any(path.name == "MLmodel" for path in stored)
    for secret in SECRETS.values():
        assert secret not in first.stdout + first.stderr
        for path in stored:
            assert secret.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_unknown_step_fails_before_any_step_runs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = mlflow_run(uri, *params(pipeline_steps="download_data,train"))
    assert result.returncode != 0
    assert ("error: pipeline_steps='download_data,train': unknown step(s) ['train']; "
            "valid: all, or a comma list of download_data, fine_tuning_model, register_model") in result.stderr
    runs = runs_by_entry_point(uri)
    assert list(runs) == ["main"] and runs["main"][0].info.status == "FAILED"


@pytest.mark.slow
def test_failing_step_fails_the_parent(tmp_path, http_root):
    _, base = http_root
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = mlflow_run(uri, *params(download_url=f"{base}/missing.zip", local_folder=tmp_path / "data"))
    assert result.returncode != 0
    runs = runs_by_entry_point(uri)
    assert set(runs) == {"main", "download_data"}  # nothing ran after the failed step
    (download,) = runs["download_data"]
    assert download.info.status == "FAILED" and runs["main"][0].info.status == "FAILED"
    assert (f"error: step download_data failed (run {download.info.run_id}): "
            f"{base}/missing.zip: HTTP 404 File not found") in result.stderr
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


@pytest.mark.slow
def test_a_step_refusing_a_value_says_it_in_one_line_and_on_its_run(tracking):
    """`mlflow run . -e fine_tuning_model -P epochs=0`: the step's own check, one line, the reason on the FAILED run."""
    result = mlflow_run(tracking, "-e", "fine_tuning_model", *params(epochs=0), experiment="steps")
    assert result.returncode != 0
    assert "error: Invalid value for '--epochs': '0' is not a whole number of at least 1" in result.stderr.splitlines()
    assert "Usage:" not in result.stderr and "Traceback" not in result.stderr
    (run,) = runs_by_entry_point(tracking, "steps")["fine_tuning_model"]
    assert run.info.status == "FAILED"
    assert run.data.tags["pipeline.error"] == "Invalid value for '--epochs': '0' is not a whole number of at least 1"


@pytest.mark.slow
@pytest.mark.parametrize(("values", "reason"), [
    ({"accelerator": "cuda"}, "accelerator='cuda': no CUDA GPU is visible to this process (use accelerator=auto or cpu)"),
    ({"accelerator": "cpu", "devices": "64"}, "devices=64: this machine has"),
    ({"accelerator": "cpu", "precision": "16-mixed"}, "precision='16-mixed': float16 training needs a GPU"),
])
def test_a_step_failing_before_its_run_starts_is_on_its_run_and_in_main_s_line(tmp_path, easy_data, values, reason):
    """A hardware check fails before the step's code reaches its run: the FAILED run still says why, and so does
    `main`'s last line (not "see the step's output above")."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = mlflow_run(uri, *params(pipeline_steps="fine_tuning_model", data_path=easy_data, **values))
    assert result.returncode != 0
    (step,) = runs_by_entry_point(uri)["fine_tuning_model"]
    assert step.info.status == "FAILED" and step.data.tags["pipeline.error"].startswith(reason)
    (last,) = [line for line in result.stderr.splitlines() if line.startswith("error: step ")]
    assert last.startswith(f"error: step fine_tuning_model failed (run {step.info.run_id}): {reason}")


@pytest.mark.slow
def test_ctrl_c_stops_every_process_and_the_same_command_resumes(served_pipeline, tmp_path):
    """Ctrl-C as a terminal sends it (SIGINT to `mlflow run`'s process group) in the middle of an epoch: every process
    of the pipeline ends within seconds, also the step and its training, which MLflow started in a session of their
    own; their runs end FAILED with the reason `interrupted`; the same command again reuses the download and
    resumes training from its last checkpoint: only the missing epochs, curves counted on from there, and it ends
    with the figures of the same values run through (`served_pipeline`)."""
    reference_uri, values, whole = served_pipeline
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    values = values | dict(local_folder=tmp_path / "data", checkpoint_dir=tmp_path / "ckpt", cache_dir=tmp_path / "cache",
                           registered_model_name="interrupted_sentiment")
    command = [sys.executable, "-m", "mlflow", "run", str(REPO), "--experiment-name", "e2e", *params(**values)]
    marker = tmp_path / "stopped"
    process = subprocess.Popen(command, env=stopping_at("mid_epoch", client_env(uri), marker), cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for_stop(marker, process)  # the training process stopped itself in its second epoch
    tree = [process.pid, *(child.pid for child in psutil.Process(process.pid).children(recursive=True))]
    os.killpg(process.pid, signal.SIGINT)  # the terminal's Ctrl-C: the foreground process group
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0 and "error: interrupted" in stderr, stderr[-3000:]
    _, alive = psutil.wait_procs([psutil.Process(pid) for pid in tree if psutil.pid_exists(pid)], timeout=30)
    assert not [proc for proc in alive if proc.status() != psutil.STATUS_ZOMBIE], "processes outlived Ctrl-C"

    runs = runs_by_entry_point(uri)
    (tuning,) = runs["fine_tuning_model"]
    assert runs["download_data"][0].info.status == "FINISHED"
    assert tuning.info.status == "FAILED" and tuning.data.tags["pipeline.error"] == "interrupted"
    assert runs["main"][0].info.status in ("FAILED", "KILLED")
    assert runs["main"][0].data.tags.get("pipeline.error") == "interrupted", stderr[-3000:]
    assert list((tmp_path / "ckpt").glob("*/last.ckpt"))  # kept for the next run

    again = subprocess.run(command, env=client_env(uri), cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    runs = runs_by_entry_point(uri)
    resumed = runs["fine_tuning_model"][-1]
    assert len(runs["download_data"]) == 1 and resumed.data.tags["pipeline.resumed"] == "true"
    assert resumed.info.status == "FINISHED" and runs["register_model"][-1].info.status == "FINISHED"
    client = mlflow.MlflowClient(uri)
    finished_epochs = len(client.get_metric_history(tuning.info.run_id, "val_macro_f1"))  # before Ctrl-C: the first
    epochs = {int(point.value) for point in client.get_metric_history(resumed.info.run_id, "epoch")}
    assert finished_epochs == 1 and min(epochs) == finished_epochs  # the first epoch it trained is the one after it
    plotted = [epoch for epoch, _ in epoch_points(client, resumed.info.run_id, "val_macro_f1")]
    assert plotted == list(range(finished_epochs + 1, 4))  # only the epochs that were missing, counted from 1
    assert not list((tmp_path / "ckpt").glob("*/*.ckpt"))  # finished: checkpoints removed
    reference = pipeline_runs(reference_uri, whole)["fine_tuning_model"][0]
    for metric in ("test_loss", "test_accuracy", "test_macro_f1", "served_test_accuracy", "served_test_macro_f1"):
        assert resumed.data.metrics[metric] == pytest.approx(reference.data.metrics[metric]), metric


@pytest.mark.slow
def test_interrupted_in_any_phase_the_same_command_ends_as_an_uninterrupted_run(served_pipeline, tmp_path):
    """SIGKILL to every process during the test, then Ctrl-C during the model's logging, then during registration,
    the same command after each: the pipeline ends with what an uninterrupted run (`served_pipeline`, the same
    values) gives, the same figures and one registered version, having re-done only what had not finished: one
    download, every epoch trained once."""
    uri, values, whole = served_pipeline
    values = values | dict(local_folder=tmp_path / "data", checkpoint_dir=tmp_path / "ckpt", cache_dir=tmp_path / "cache",
                           registered_model_name="e2e_interrupted")
    command = [sys.executable, "-m", "mlflow", "run", str(REPO), "--experiment-name", "interrupted", *params(**values)]
    for point in ("testing", "logging", "alias"):
        marker, log = tmp_path / f"stopped-{point}", tmp_path / f"{point}.log"
        with log.open("w") as output:
            process = subprocess.Popen(command, env=stopping_at(point, client_env(uri), marker), cwd=tmp_path, stdout=output,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            wait_for_stop(marker, process)
            if point == "testing":
                kill_tree(process)
            else:
                assert ctrl_c_while_stopped(process) != 0 and "error: interrupted" in log.read_text(), log.read_text()[-3000:]
    again = subprocess.run(command, env=client_env(uri), cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]

    runs, reference = runs_by_entry_point(uri, "interrupted"), pipeline_runs(uri, whole)["fine_tuning_model"][0]
    assert [run.info.status for run in runs["download_data"]] == ["FINISHED"]
    tuning = runs["fine_tuning_model"]
    assert [run.info.status for run in tuning] == ["RUNNING", "FAILED", "FINISHED"]  # killed, interrupted, done
    client = mlflow.MlflowClient(uri)
    assert [len(client.get_metric_history(run.info.run_id, "val_macro_f1")) for run in tuning] == [3, 0, 0]
    for metric in ("test_loss", "test_accuracy", "test_macro_f1", "served_test_accuracy", "served_test_macro_f1"):
        assert tuning[-1].data.metrics[metric] == pytest.approx(reference.data.metrics[metric]), metric
    registering = runs["register_model"]
    assert [run.info.status for run in registering] == ["FAILED", "FINISHED"]
    (version,) = client.search_model_versions("name = 'e2e_interrupted'")  # the interrupted registration, completed
    assert client.get_model_version_by_alias("e2e_interrupted", "champion").version == version.version
    assert version.run_id == tuning[-1].info.run_id and version.tags[REGISTERING_RUN_TAG] == registering[-1].info.run_id
