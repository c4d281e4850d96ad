"""The fine_tuning_model step, in process on CPU: what it logs, that it learns, and how it fails."""

from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch

from conftest import cli_runner, mlflow_run, params, tracking_at
from pipeline import fine_tuning_model
from pipeline.data.reviews import read_dataset
from pipeline.data.input_data import data_digests, input_digests
from pipeline.contract import DATA_ARTIFACT, MONITOR, STEP_TAG, baseline_metric, lift_metric, served_metric
from pipeline.parameters import GATE_METRICS
from pipeline.serving.inference import auto_order, native_cpu_bf16

FAST = ["--epochs", "3", "--batch-size", "16", "--learning-rate", "3e-3", "--max-length", "32"]


def fine_tune(*args):
    return cli_runner().invoke(fine_tuning_model.main, [*FAST, *args])


@pytest.fixture(scope="module")
def module_run(tiny_model, easy_data, tmp_path_factory):
    """One fine-tuning run in its own store, shared by the tests that only read it."""
    folder = tmp_path_factory.mktemp("fine-tuned")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        patch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.1")  # the run lasts about a second, not minutes
        mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
        result = fine_tune("--foundation-model", str(tiny_model), "--data-path", str(easy_data),
                           "--checkpoint-dir", str(folder / "checkpoints"))
        assert result.exit_code == 0, result.output
        (folder / "output.txt").write_text(result.output)
        (run,) = mlflow.search_runs(experiment_names=["Default"], output_format="list")
        yield run, folder
    mlflow.set_tracking_uri(None)


@pytest.fixture
def finished_run(module_run, monkeypatch):
    """The module's run, with its store as this test's tracking URI (other tests reset the URI when they end)."""
    run, folder = module_run
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    yield run, folder
    mlflow.set_tracking_uri(None)


def test_logs_params_metrics_and_data(finished_run, easy_data):
    run, folder = finished_run
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["fine_tuning_strategy"] == "no_freeze" and params["epochs"] == "3"
    # A CPU with native bf16 (AVX512-BF16 or AMX) trains in bf16 mixed precision, others in fp32.
    assert (params["resolved_accelerator"], params["resolved_precision"]) == ("cpu", "bf16-mixed" if native_cpu_bf16() else "32-true")
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_macro_f1")
    assert [point.step for point in history] == [0, 1, 2]  # one per epoch, at step = epoch
    for name in ("train_loss", "train_accuracy", "train_macro_f1", "val_loss", "val_accuracy", "test_loss", "test_macro_f1"):
        assert name in run.data.metrics
    assert {d.dataset.name for d in run.inputs.dataset_inputs} == {"imdb-train", "imdb-valid", "imdb-test"}
    # Checkpoints are keyed by the digests reuse compares, computed from the data alone on every DDP rank.
    assert data_digests(read_dataset(easy_data)) == input_digests(run)
    assert list((folder / "checkpoints").iterdir()) == []  # finished runs leave no checkpoints behind


def test_learns_far_above_chance(finished_run):
    """On held-out easy reviews a working pipeline scores far above chance (0.5); a broken one does not."""
    run, _ = finished_run
    assert run.data.metrics["test_accuracy"] >= 0.85
    assert run.data.metrics["test_macro_f1"] >= 0.85


def test_logged_model_predicts_from_raw_text(finished_run):
    run, folder = finished_run
    model = mlflow.pyfunc.load_model(run.data.tags["pipeline.model_uri"])
    reviews = ["the film was wonderful and the cast felt superb", "the plot was awful and the ending felt boring"]
    predictions = model.predict(pd.DataFrame({"review": reviews}))
    assert predictions["label"].tolist() == ["positive", "negative"]
    assert predictions["probability"].between(0.5, 1.0).all()
    # What a user reaches for first works too: a list, a Series, one string.
    for given in (reviews, pd.Series(reviews)):
        assert model.predict(given).equals(predictions)
    assert model.predict(reviews[0])["label"].tolist() == ["positive"]
    with pytest.raises(mlflow.exceptions.MlflowException, match="Incompatible input types"):
        model.predict(pd.DataFrame({"review": [1, 2]}))  # not text


def test_unreachable_hub_is_a_clear_error(tracking, easy_data, tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # as HF_HUB_OFFLINE=1 does at import
    result = fine_tune("--foundation-model", "prajjwal1/bert-tiny-not-cached", "--data-path", str(easy_data),
                       "--checkpoint-dir", str(tmp_path))
    assert result.exit_code == 1
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: foundation_model='prajjwal1/bert-tiny-not-cached': cannot load it")
    assert "-P foundation_model=/path/to/folder" in message
    (run,) = mlflow.search_runs(experiment_names=["Default"], output_format="list")
    assert run.info.status == "FAILED"


def test_missing_data_is_a_clear_error(tracking, tiny_model, tmp_path):
    result = fine_tune("--foundation-model", str(tiny_model), "--data-path", str(tmp_path / "nothing"))
    assert result.exit_code == 1
    assert "data_path=" in result.stderr and "no such folder" in result.stderr
    result = fine_tune("--foundation-model", str(tiny_model))  # 'latest', but nothing was downloaded
    assert result.exit_code == 1
    assert "no finished 'download_data' run in experiment" in result.stderr


def test_bad_parameter_types_are_rejected(tracking):
    result = cli_runner().invoke(fine_tuning_model.main, ["--epochs", "abc"])
    assert result.exit_code == 2 and "'abc' is not a whole number of at least 1" in result.stderr
    result = cli_runner().invoke(fine_tuning_model.main, ["--fine-tuning-strategy", "partial"])
    assert result.exit_code == 2 and "'partial' is not one of 'no_freeze', 'freeze', 'freeze_unfreeze'" in result.stderr


def test_logs_the_baseline_the_served_model_and_the_lifts(finished_run):
    """Every run trains the TF-IDF baseline on its splits and logs it beside the transformer and the served model,
    with the lifts over the baseline, the served model's weight, and a verdict line that names what is served."""
    run, folder = finished_run
    metrics, params = run.data.metrics, run.data.params
    assert 0.5 < metrics["baseline_test_macro_f1"] <= 1 and 0.5 < metrics["baseline_test_accuracy"] <= 1  # easy data
    for name in ("test_accuracy", "test_macro_f1"):
        assert metrics[f"lift_{name}"] == pytest.approx(metrics[name] - metrics[f"baseline_{name}"])
        assert metrics[f"lift_served_{name}"] == pytest.approx(metrics[f"served_{name}"] - metrics[f"baseline_{name}"])
    assert 0 < metrics["baseline_fit_seconds"] < 60 and float(params["baseline_c"]) > 0
    assert params["serve"] == "auto" and params["served_model"] in ("transformer", "blend")
    assert 0 <= float(params["blend_weight"]) <= 1 and (params["served_model"] == "blend" or params["blend_weight"] == "1.0")
    side_by_side = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/reports/model_vs_baseline.json")
    assert side_by_side["test_macro_f1"] == {"transformer": metrics["test_macro_f1"], "baseline": metrics["baseline_test_macro_f1"],
                                             "served": metrics["served_test_macro_f1"]}
    assert side_by_side["served_model"] == params["served_model"]
    table = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/reports/model_vs_baseline.md")
    assert (f"| test_macro_f1 | {metrics['test_macro_f1']:.4f} | {metrics['baseline_test_macro_f1']:.4f} | "
            f"{metrics['served_test_macro_f1']:.4f} |") in table
    verdict = (folder / "output.txt").read_text()
    assert f"served {metrics['served_test_macro_f1']:.4f}" in verdict and f"serving the {params['served_model']}: " in verdict


def test_the_served_metrics_are_the_logged_models_own(finished_run, easy_data):
    """The test metrics logged as served_* are what the logged model itself answers on the test split."""
    run, folder = finished_run
    test = pd.read_csv(easy_data / "test.csv")
    answer = mlflow.pyfunc.load_model(run.data.tags["pipeline.model_uri"]).predict(test[["review"]])
    accuracy = float((answer["label"] == test["sentiment"]).mean())
    assert accuracy == pytest.approx(run.data.metrics["served_test_accuracy"])
    blended = run.data.params["served_model"] == "blend"
    assert ("baseline_positive_probability" in answer.columns) == blended


def test_serve_blend_logs_a_blend_and_serve_transformer_the_transformer(tracking, tiny_model, easy_data, tmp_path):
    common = ["--foundation-model", str(tiny_model), "--data-path", str(easy_data), "--epochs", "1",
              "--checkpoint-dir", str(tmp_path / "ckpt"), "--cache-dir", str(tmp_path / "cache"),
              "--precision", "32-true", "--serve-precision", "fp32"]  # what Lightning's test computes
    for serve in ("blend", "transformer"):
        result = fine_tune(*common, "--serve", serve)
        assert result.exit_code == 0, result.output
        run = mlflow.search_runs(experiment_names=["Default"], output_format="list", order_by=["attributes.start_time DESC"])[0]
        assert run.data.params["served_model"] == serve and f"serving the {serve}: serve={serve}" in result.output
        columns = mlflow.pyfunc.load_model(run.data.tags["pipeline.model_uri"]).metadata.signature.outputs.input_names()
        assert ("baseline_positive_probability" in columns) == (serve == "blend")
    # The transformer served alone scores the test split as Lightning's test of the same checkpoint did.
    assert run.data.metrics["served_test_accuracy"] == pytest.approx(run.data.metrics["test_accuracy"])


def test_the_served_precision_is_checked_on_validation_and_served(finished_run):
    """Each precision this CPU runs at speed scored validation; the model serves the fastest safe one, and the
    served test metrics are its own (test_the_served_metrics_are_the_logged_models_own)."""
    run, folder = finished_run
    metrics, params = run.data.metrics, run.data.params
    checked = ["fp32", "int8"] + (["bf16"] if native_cpu_bf16() else [])
    for figure in ("accuracy", "changed"):
        assert sorted(name for name in metrics if name.startswith(f"valid_{figure}_")) == sorted(f"valid_{figure}_{p}" for p in checked)
    model = mlflow.pyfunc.load_model(run.data.tags["pipeline.model_uri"])
    config = model.model_config
    assert config["serve_precision"] == "auto" and config["precision_valid_accuracy"] == pytest.approx(
        {name: metrics[f"valid_accuracy_{name}"] for name in checked})
    assert config["precision_valid_changed"] == pytest.approx({name: metrics[f"valid_changed_{name}"] for name in checked})
    assert config["safe_precisions"] == [p for p in checked if metrics[f"valid_changed_{p}"] <= 0.005]
    assert params["served_precision"] == model.unwrap_python_model().precision
    assert params["served_precision"] == next(p for p in auto_order() if p in config["safe_precisions"])
    assert f"its transformer in {params['served_precision']} here" in (folder / "output.txt").read_text()


def test_a_precision_this_machine_cannot_check_stops_before_training(tracking, tiny_model, easy_data, tmp_path):
    if not torch.cuda.is_available() and native_cpu_bf16():
        pytest.skip("this CPU checks every precision (tests/evaluation/test_precision_choice.py fakes one that cannot)")
    asked = "int8" if torch.cuda.is_available() else "bf16"
    result = fine_tune("--foundation-model", str(tiny_model), "--data-path", str(easy_data), "--serve-precision", asked,
                       "--checkpoint-dir", str(tmp_path))
    assert result.exit_code == 1 and result.stderr.strip().splitlines()[-1].startswith(f"error: serve_precision='{asked}': ")
    assert mlflow.search_runs(experiment_names=["Default"], output_format="list") == []


def test_the_run_logs_every_metric_the_gate_reads(finished_run):
    """The step and the gate spell these names through `pipeline.contract` only: renaming one side fails here."""
    run, _ = finished_run
    for metric in GATE_METRICS:
        for name in (metric, served_metric(metric), baseline_metric(metric), lift_metric(metric, served=False),
                     lift_metric(metric, served=True)):
            assert name in run.data.metrics, name
    assert f"best_{MONITOR}" in run.data.metrics


def test_logs_reports_and_system_metrics(finished_run):
    run, folder = finished_run
    client = mlflow.MlflowClient()
    reports = sorted(a.path for a in client.list_artifacts(run.info.run_id, "reports"))
    assert reports == ["reports/classification_report.txt", "reports/confusion_matrix.json", "reports/confusion_matrix.png",
                       "reports/model_vs_baseline.json", "reports/model_vs_baseline.md", "reports/training_curves.png"]
    matrix = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/reports/confusion_matrix.json")["rows_true_columns_predicted"]
    assert sum(map(sum, matrix)) == 100  # every test review counted once
    assert (matrix[0][0] + matrix[1][1]) / 100 == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-6)
    report = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/reports/classification_report.txt")
    assert "negative" in report and "positive" in report and "macro avg" in report
    assert any(name.startswith("system/cpu_utilization_percentage") for name in run.data.metrics), sorted(run.data.metrics)


def test_second_run_reuses_tokenized_data(tracking, tiny_model, easy_data, tmp_path):
    args = ["--foundation-model", str(tiny_model), "--data-path", str(easy_data), "--epochs", "1", "--max-length", "16",
            "--checkpoint-dir", str(tmp_path / "ckpt"), "--cache-dir", str(tmp_path / "cache")]
    for _ in range(2):
        assert cli_runner().invoke(fine_tuning_model.main, args).exit_code == 0
    first, second = mlflow.search_runs(experiment_names=["Default"], output_format="list", order_by=["attributes.start_time ASC"])
    assert first.data.tags["pipeline.tokenized_cache_hit"] == "false"
    assert second.data.tags["pipeline.tokenized_cache_hit"] == "true"
    assert first.data.metrics["test_loss"] == pytest.approx(second.data.metrics["test_loss"])  # same tokens, same seed
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1


def logged_data_run(tracking_uri: str, data: Path, experiment: str) -> str:
    """A finished download_data run in a new experiment with `data` as its artifact, as the download step leaves it."""
    with tracking_at(tracking_uri):
        client = mlflow.MlflowClient()
        run = client.create_run(client.create_experiment(experiment), tags={STEP_TAG: "download_data"})
        client.log_artifacts(run.info.run_id, str(data), DATA_ARTIFACT)
        client.set_terminated(run.info.run_id)
    return run.info.run_id


@pytest.mark.slow
def test_ddp_under_mlflow_run_prepares_and_logs_on_rank_zero_only(mlflow_server, mlflow_server_folder, tmp_path,
                                                                  tiny_model, easy_data):
    """Two DDP processes (gloo on CPU: the GPU code path without GPUs), started by `mlflow run` against a tracking
    server: one run, logged once; rank 0 alone downloads and tokenizes the data, the other rank reads what it prepared."""
    data_run_id = logged_data_run(mlflow_server, easy_data, experiment="ddp")
    server_log = mlflow_server_folder / "server.log"
    logged_before = server_log.stat().st_size
    result = mlflow_run(mlflow_server, "-e", "fine_tuning_model", *params(
        foundation_model=tiny_model, data_path="latest", accelerator="cpu", devices=2, epochs=3, batch_size=8,
        learning_rate=3e-3, max_length=32, checkpoint_dir=tmp_path / "ckpt", cache_dir=tmp_path / "cache"),
        experiment="ddp", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    served = server_log.read_bytes()[logged_before:].decode().splitlines()
    with tracking_at(mlflow_server):
        (run,) = mlflow.search_runs(experiment_names=["ddp"], filter_string=f"tags.`{STEP_TAG}` = 'fine_tuning_model'",
                                    output_format="list")
        history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_macro_f1")
    assert run.info.status == "FINISHED"
    assert (run.data.params["resolved_strategy"], run.data.params["resolved_devices"]) == ("ddp", "2")
    assert not [line for line in served if "/runs/log-batch " in line and '" 200 ' not in line]  # no param logged twice
    assert len(history) == 3  # once per epoch, not once per rank
    assert run.data.metrics["test_accuracy"] >= 0.8
    assert "pipeline.model_uri" in run.data.tags
    # The data: fetched by one process, tokenized once into one cache entry, which the other rank read.
    assert run.data.tags["pipeline.data_run_id"] == data_run_id
    assert len([line for line in served if "GET /api/2.0/mlflow-artifacts/artifacts/" in line
                and f"/{data_run_id}/artifacts/{DATA_ARTIFACT}/train.csv " in line]) == 1
    assert run.data.tags["pipeline.tokenized_cache_hit"] == "false"
    assert [path.suffix for path in (tmp_path / "cache").iterdir()] == [".pt"]


@pytest.mark.slow
def test_a_decoder_backbone_fine_tunes_and_serves(tracking, tiny_decoder, easy_data, tmp_path):
    """GPT-2 style (no pad token): the step trains it, padding with its EOS token, and the logged model predicts."""
    result = fine_tune("--foundation-model", str(tiny_decoder), "--data-path", str(easy_data), "--serve", "transformer",
                       "--checkpoint-dir", str(tmp_path / "ckpt"), "--cache-dir", str(tmp_path / "cache"))
    assert result.exit_code == 0, result.output[-3000:]
    (run,) = mlflow.search_runs(experiment_names=["Default"], output_format="list")
    assert run.info.status == "FINISHED"
    model = mlflow.pyfunc.load_model(run.data.tags["pipeline.model_uri"])
    predictions = model.predict(["A wonderful film.", "A dull, tedious mess that goes on and on."])
    assert list(predictions["label"].map(type)) == [str, str] and predictions["probability"].between(0.5, 1).all()


def test_max_length_beyond_the_model_is_one_line_before_training(tracking, tiny_model, easy_data, tmp_path):
    """The tiny BERT has 128 positions: max_length=256 would end mid-epoch in a tensor-shape error."""
    result = fine_tune("--foundation-model", str(tiny_model), "--data-path", str(easy_data), "--max-length", "256",
                       "--checkpoint-dir", str(tmp_path / "ckpt"), "--cache-dir", str(tmp_path / "cache"))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: max_length=256: {str(tiny_model)!r} takes at most 128 tokens; pass -P max_length=128 or less")
    (run,) = mlflow.search_runs(experiment_names=["Default"], output_format="list")
    assert run.info.status == "FAILED" and run.data.tags["pipeline.error"].startswith("max_length=256")
