"""Entry point `fine_tuning_model`: fine-tune a Hugging Face backbone on the reviews and log the model to MLflow.

The recipe: resolve and log the data (`pipeline.data.input_data`), tokenize it once into `cache_dir`, train
(`pipeline.training.launcher`: one machine or several, each process choosing its device and precision in
`pipeline.training.hardware`), log what training handed back, evaluate the transformer against the TF-IDF baseline and
choose what to serve (`pipeline.evaluation.comparison`), and log the served model (`pipeline.serving.model_logging`). Lightning keeps
the best checkpoint (by validation macro-F1) and resumes an interrupted run of the same identity from its last one.
"""

import os
import sys

if __name__ == "__main__":  # the project folder, also where Databricks runs this source from MLflow's wrapper
    sys.path.insert(0, os.getcwd())

import shutil
import tempfile
from pathlib import Path

import click
import mlflow
import torch

from pipeline.training.classifier import SentimentClassifier, check_backbone, load_tokenizer
from pipeline.contract import BEST_CHECKPOINT_TAG, FINE_TUNING, MODEL_URI_TAG, MONITOR, RESUMED_TAG, TEST_METRICS
from pipeline.contract import TOKENS_CACHED_TAG
from pipeline.training.datamodule import ReviewsDataModule
from pipeline.entry import reports_errors, run_entry_point
from pipeline.evaluation.comparison import evaluate, log_evaluation
from pipeline.evaluation.precision_choice import refuse_unchecked_precision
from pipeline.training.hardware import Capabilities, scoring_device
from pipeline.data.input_data import data_digests, log_data_inputs, resolve_data
from pipeline.training.launcher import job_for_run, launch, refuse_what_cannot_run
from pipeline.serving.model_logging import log_sentiment_model, refuse_without_code_execution
from pipeline.parameters import FineTuning, command_line, logged_params
from pipeline.evaluation.reports import log_test_report, log_training_curves
from pipeline.tracking.runs import log_new_params, step_run


@click.command(help=__doc__)
@command_line(FineTuning)
@reports_errors
def main(**values) -> None:
    fine_tune(FineTuning(**values))


def fine_tune(config: FineTuning) -> None:
    refuse_what_cannot_run(config)
    capabilities = Capabilities.detect()
    device = scoring_device(config.accelerator, capabilities)
    bf16 = capabilities.cuda_bf16 if device == "cuda" else capabilities.cpu_bf16 if device == "cpu" else False
    refuse_unchecked_precision(config.serve_precision, device, bf16)
    refuse_without_code_execution("logging the fine-tuned model")
    with step_run(FINE_TUNING, log_system_metrics=True) as run, tempfile.TemporaryDirectory(prefix="fine-tuning-") as scratch:
        data_dir, data_run_id = resolve_data(config.data_path, run.info.experiment_id, Path(scratch))
        tokenizer = load_tokenizer(config.foundation_model)
        check_backbone(config.foundation_model, tokenizer, config.max_length)
        datamodule = ReviewsDataModule.for_config(config, data_dir, tokenizer)
        job = job_for_run(config, data_dir, data_digests(datamodule.frames), run.info.run_id)
        log_new_params(logged_params(config))
        log_data_inputs(datamodule.frames, data_dir, data_run_id)
        mlflow.set_tags({RESUMED_TAG: str(job.resume_from is not None).lower(),
                         TOKENS_CACHED_TAG: str(datamodule.tokens_cached()).lower()})
        datamodule.prepare_data()  # the tokens, once, where every training process reads them

        outcome = launch(job)
        for step, values in outcome.metric_rows:  # what training processes could not log themselves
            mlflow.log_metrics(values, step=step)
        # The backbone as this machine reads it: several machines trained from a copy that is gone with their folder.
        model = SentimentClassifier.load_from_checkpoint(outcome.best_model_path, map_location="cpu", compile=False,
                                                         foundation_model=config.foundation_model)
        mlflow.log_params(outcome.resolved | {"model_parameters": sum(p.numel() for p in model.parameters()),
                                              "train_batches_per_epoch": outcome.train_batches_per_epoch})
        mlflow.log_metrics({f"best_{MONITOR}": outcome.best_model_score, "fit_seconds": outcome.fit_seconds})
        mlflow.set_tag(BEST_CHECKPOINT_TAG, Path(outcome.best_model_path).name)
        log_training_curves(run.info.run_id)
        log_test_report(torch.tensor(outcome.confusion))

        transformer_test = {name: mlflow.get_run(run.info.run_id).data.metrics[name] for name in TEST_METRICS}
        evaluation = evaluate(config.serve, config.serve_precision, datamodule.frames, model.model, tokenizer,
                              config.tokenization(), device, bf16, transformer_test)
        log_evaluation(evaluation)
        blend = {"baseline": evaluation.baseline.pipeline, "blend_weight": evaluation.choice.weight}
        model_info = log_sentiment_model(model.model, tokenizer, config.tokenization(), evaluation.precision.model_config(),
                                         **(blend if evaluation.choice.served == "blend" else {}))
        mlflow.set_tag(MODEL_URI_TAG, model_info.model_uri)
        shutil.rmtree(job.checkpoints, ignore_errors=True)  # finished: the model lives in MLflow now


if __name__ == "__main__":
    run_entry_point(main)
