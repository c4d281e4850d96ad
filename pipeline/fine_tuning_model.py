"""Entry point `fine_tuning_model`: fine-tune a Hugging Face backbone on the reviews and log the model to MLflow.

This step runs once, in one process: it resolves and logs the data, tokenizes it into `cache_dir`, starts the
training job (`pipeline.launcher`: one machine or several, CPU or GPUs, it chooses its own device and precision
through `pipeline.hardware`), then logs what came back: the metrics, the reports, the TF-IDF baseline
(`pipeline.baseline`), what is served (the transformer, or its blend with the baseline:
`pipeline.serving_choice`) and how far each beats the baseline, and the served model. Lightning keeps the best checkpoint (by
validation macro-F1) and resumes an interrupted run of the same identity from its last checkpoint.
"""

import os
import sys

if __name__ == "__main__":  # the project folder, also where Databricks runs this source from MLflow's wrapper
    sys.path.insert(0, os.getcwd())

import contextlib
import dataclasses
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import click
import mlflow
import pandas as pd
import torch
from mlflow.data.digest_utils import compute_pandas_digest

from pipeline.baseline import NAME as BASELINE_NAME
from pipeline.baseline import Baseline, fit_baseline
from pipeline.classifier import SentimentClassifier, check_backbone, load_tokenizer
from pipeline.cluster import local_path
from pipeline.contract import BEST_CHECKPOINT_TAG, DATA_RUN_TAG, DOWNLOAD, FINE_TUNING, LATEST, MODEL_URI_TAG
from pipeline.contract import MONITOR, RESUMED_TAG, TEST_METRICS, TOKENS_CACHED_TAG, baseline_metric, data_uri
from pipeline.contract import latest_finished_run, lift_metric, served_metric
from pipeline.data import LABEL_COLUMN, LABELS, TEXT_COLUMN
from pipeline.datamodule import ReviewsDataModule
from pipeline.entry import run_entry_point
from pipeline.errors import PipelineError, reports_errors
from pipeline.hardware import training_process_hardware
from pipeline.launcher import launch, training_job
from pipeline.metrics import split_scores
from pipeline.model_logging import log_sentiment_model
from pipeline.multinode import logged_metrics, shared_copy
from pipeline.parameters import FineTuning, command_line
from pipeline.reports import log_model_vs_baseline, log_test_report, log_training_curves
from pipeline.reuse import run_identity, step_run_by_id
from pipeline.scoring import class_probabilities, labels_of
from pipeline.serving_choice import ServingChoice, choose
from pipeline.tracking import download, is_artifact_uri, log_new_params, run_id_in, step_run


@click.command(help=__doc__)
@command_line(FineTuning)
@reports_errors
def main(**values) -> None:
    fine_tune(FineTuning(**values))


def fine_tune(config: FineTuning) -> None:
    params = dataclasses.asdict(config)  # as logged, and as reuse and resume compare them
    if config.num_nodes == 1:  # this machine trains: refuse a device it lacks before any run starts
        training_process_hardware(config, world_size=1)

    with step_run(FINE_TUNING, log_system_metrics=True) as run, \
            tempfile.TemporaryDirectory(prefix="fine-tuning-") as scratch, contextlib.ExitStack() as cleanup:
        work = Path(scratch)
        if config.num_nodes > 1:  # several machines read the data and write their logs in a folder they share
            work = local_path(config.cache_dir) / "runs" / run.info.run_id
            cleanup.callback(shutil.rmtree, work, ignore_errors=True)  # finished or failed: nothing left behind
        data_dir, data_run_id = resolve_data(config.data_path, run.info.experiment_id, work)
        if config.num_nodes > 1:  # the other nodes cannot read this machine's disk
            data_dir = shared_copy(data_dir, work / "data")

        tokenizer = load_tokenizer(config.foundation_model)
        check_backbone(config.foundation_model, tokenizer, config.max_length)
        datamodule = ReviewsDataModule.for_config(config, data_dir, tokenizer)
        checkpoints = checkpoint_folder(params, data_digests(datamodule.frames))
        job = training_job(config, data_dir, checkpoints, work, run.info.run_id)
        log_new_params(params)
        log_data_inputs(datamodule.frames, data_dir, data_run_id)
        mlflow.set_tags({RESUMED_TAG: str(job.resume_from is not None).lower(),
                         TOKENS_CACHED_TAG: str(datamodule.tokens_cached()).lower()})
        datamodule.prepare_data()  # the tokens, once, where every training process reads them

        outcome = launch(job, work)
        if job.mlflow_run_id is None:  # several machines: rank 0 wrote its metrics to the shared folder
            for step, values in logged_metrics(Path(job.log_dir)):
                mlflow.log_metrics(values, step=step)
        model = SentimentClassifier.load_from_checkpoint(outcome.best_model_path, map_location="cpu", compile=False)
        mlflow.log_params(outcome.resolved | {"model_parameters": sum(p.numel() for p in model.parameters()),
                                              "train_batches_per_epoch": outcome.train_batches_per_epoch})
        mlflow.log_metrics({f"best_{MONITOR}": outcome.best_model_score, "fit_seconds": outcome.fit_seconds})
        mlflow.set_tag(BEST_CHECKPOINT_TAG, Path(outcome.best_model_path).name)
        log_training_curves(run.info.run_id)
        log_test_report(torch.tensor(outcome.confusion))
        choice, baseline = choose_served_model(config, datamodule.frames, model.model, tokenizer, run.info.run_id)
        model_info = log_sentiment_model(model.model, tokenizer, config.tokenization(),
                                         **({"baseline": baseline.pipeline, "blend_weight": choice.weight}
                                            if choice.served == "blend" else {}))
        mlflow.set_tag(MODEL_URI_TAG, model_info.model_uri)
        shutil.rmtree(checkpoints, ignore_errors=True)  # finished: the model lives in MLflow now


def choose_served_model(config: FineTuning, frames: dict[str, pd.DataFrame], network, tokenizer,
                        run_id: str) -> tuple[ServingChoice, Baseline]:
    """Train the TF-IDF baseline on the same splits, score both models on validation and test as the served model
    scores, choose what to serve on validation (`pipeline.serving_choice`), log the test metrics of all three and
    the lifts over the baseline, and say what is served and why."""
    baseline = fit_baseline(frames)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    transformer = {split: class_probabilities(tokenizer, network.to(device), frames[split][TEXT_COLUMN].tolist(),
                                              config.max_length, config.truncation)[:, 1] for split in ("valid", "test")}
    network.cpu()
    choice = choose(config.serve, frames["valid"][LABEL_COLUMN], transformer["valid"], baseline.positive["valid"])
    truth = frames["test"][LABEL_COLUMN]
    tested = {"model": {name: value for name, value in mlflow.get_run(run_id).data.metrics.items() if name in TEST_METRICS},
              "baseline": split_scores(truth, labels_of(baseline.positive["test"], LABELS)),
              "served": split_scores(truth, labels_of(choice.positive(transformer["test"], baseline.positive["test"]), LABELS))}
    mlflow.log_metrics({baseline_metric(name): tested["baseline"][name] for name in TEST_METRICS}
                       | {served_metric(name): tested["served"][name] for name in TEST_METRICS}
                       | {lift_metric(name, served=False): tested["model"][name] - tested["baseline"][name] for name in TEST_METRICS}
                       | {lift_metric(name, served=True): tested["served"][name] - tested["baseline"][name] for name in TEST_METRICS}
                       | {"baseline_fit_seconds": baseline.fit_seconds})
    mlflow.log_params({"baseline_c": baseline.regularisation_c, "served_model": choice.served, "blend_weight": choice.weight})
    log_model_vs_baseline(tested, choice, baseline.fit_seconds)
    f1 = {part: tested[part]["test_macro_f1"] for part in tested}
    click.echo(f"test macro-F1: transformer {f1['model']:.4f}, {BASELINE_NAME} baseline {f1['baseline']:.4f} (fit in "
               f"{baseline.fit_seconds:.1f} s), served {f1['served']:.4f} (lift {f1['served'] - f1['baseline']:+.4f}); "
               f"serving the {choice.served}: {choice.reason}")
    return choice, baseline


def resolve_data(data_path: str, experiment_id: str, scratch: Path) -> tuple[Path, str | None]:
    """A local folder of CSVs for `data_path`: itself, a downloaded artifact, or the latest download_data run's data."""
    if data_path in ("", LATEST):
        data_path = data_uri(latest_finished_run(DOWNLOAD, experiment_id).info.run_id)
    if is_artifact_uri(data_path):
        run_id = run_id_in(data_path)
        if run_id is not None:  # one line for an unknown run or another step's run, before downloading anything
            step_run_by_id(run_id, DOWNLOAD, f"data_path={data_path!r}")
        return download(data_path, scratch / "data"), run_id
    folder = Path(data_path.removeprefix("file://"))
    if not folder.is_dir():
        raise PipelineError(f"data_path={data_path!r}: no such folder (expected train.csv, valid.csv, test.csv in it)")
    return folder, None


def log_data_inputs(frames: dict[str, pd.DataFrame], data_dir: Path, data_run_id: str | None) -> None:
    """The splits as the run's inputs, named and sourced as the download step logged them, so MLflow shows one
    data set feeding both runs."""
    source = mlflow.get_run(data_run_id).data.params.get("download_url", str(data_dir)) if data_run_id else str(data_dir)
    for split, frame in frames.items():
        mlflow.log_input(mlflow.data.from_pandas(frame, source=source, name=f"imdb-{split}", targets=LABEL_COLUMN), context=split)
    if data_run_id:
        mlflow.set_tag(DATA_RUN_TAG, data_run_id)


def data_digests(frames: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Each split's digest as `mlflow.log_input` records it, from the data alone."""
    return {split: compute_pandas_digest(frame) for split, frame in frames.items()}


def checkpoint_folder(params: dict, data_digests: dict) -> Path:
    """Checkpoints of one run identity (`pipeline.reuse.run_identity`, as reuse uses): a rerun of it resumes from here."""
    key = hashlib.sha256(json.dumps(run_identity(params, data_digests), sort_keys=True).encode()).hexdigest()[:16]
    return local_path(params["checkpoint_dir"]) / key


if __name__ == "__main__":
    run_entry_point(main)
