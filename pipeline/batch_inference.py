"""Entry point `batch_inference`: score a table of reviews with a logged model on Spark.

Every input row keeps its columns and gains the model's `label` and `probability`. The model is the registered
model's serving alias unless `model_uri` names another (`models:/`, `runs:/` or a local folder); the input a CSV or
Parquet file or folder, an MLflow artifact, or on Databricks a Unity Catalog table or volume path. The output
replaces a previous output of this step only once it is complete (`pipeline.serving.batch_scoring.write_output`). The run
logs the model and its registry version, the input and output as datasets, the throughput, the fraction scored
positive, and, where the input has a `sentiment` column, accuracy and macro-F1 against it (`pipeline.evaluation.metrics`, as
the quality gate scores).
"""

import os
import sys

if __name__ == "__main__":  # the project folder, also where Databricks runs this source from MLflow's wrapper
    sys.path.insert(0, os.getcwd())

import tempfile
import time
from pathlib import Path

import click
import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.serving import batch_scoring
from pipeline.serving.model_logging import refuse_without_code_execution
from pipeline.contract import BATCH, DOWNLOAD, LATEST, MODEL_URI_TAG, MODEL_VERSION_TAG, data_uri, latest_finished_run
from pipeline.data.reviews import LABEL_COLUMN, LABELS
from pipeline.entry import reports_errors, run_entry_point
from pipeline.errors import PipelineError, first_line
from pipeline.evaluation.metrics import label_scores
from pipeline.parameters import BatchInference, command_line, logged_params
from pipeline.tracking.runs import download_artifacts, is_artifact_uri, log_new_params, step_run


@click.command(help=__doc__)
@command_line(BatchInference)
@reports_errors
def main(**values) -> None:
    batch_inference(BatchInference(**values))


def batch_inference(config: BatchInference) -> None:
    with step_run(BATCH) as run, tempfile.TemporaryDirectory() as scratch:
        log_new_params(logged_params(config))
        refuse_without_code_execution(f"scoring with {config.model_uri}")
        model_path = fetch_model(config.model_uri, Path(scratch) / "model")
        input_location = input_of(config.input_path, run.info.experiment_id)
        spark = batch_scoring.open_session(config.spark_master, config.rows_per_batch)
        frame = read(spark, input_location, Path(scratch) / "input")
        rows = batch_scoring.check_texts(frame, config.text_column, input_location)
        batch_scoring.check_output(spark, config.output_path)
        mlflow.log_input(dataset(frame, input_location), context="input")

        started = time.perf_counter()
        marker = {"run_id": run.info.run_id, "model_uri": config.model_uri, "input_path": input_location}
        batch_scoring.write_output(batch_scoring.scored(spark, frame, model_path, config.text_column), config.output_path, marker)
        seconds = time.perf_counter() - started

        output = batch_scoring.read_output(spark, config.output_path)
        mlflow.log_input(dataset(output, config.output_path), context="output")
        metrics = {"rows": rows, "seconds": seconds, "rows_per_second": rows / seconds}
        metrics |= output_scores(batch_scoring.pair_counts(output, LABEL_COLUMN if LABEL_COLUMN in frame.columns else None))
        mlflow.log_metrics(metrics)
        click.echo(f"scored {rows} rows of {input_location} with {config.model_uri} into {config.output_path} "
                   f"in {seconds:.1f} s ({rows / seconds:.0f} rows/s)")


def fetch_model(model_uri: str, destination: Path) -> str:
    """The model downloaded once on the driver (a URI that does not resolve fails here, before Spark starts); a
    models:/ URI's registry version goes on the run."""
    if not is_artifact_uri(model_uri) and not Path(model_uri).expanduser().exists():
        raise PipelineError(f"model_uri={model_uri!r}: no such model folder")
    try:
        version = registry_version(model_uri)
        path = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(destination))
    except MlflowException as error:
        raise PipelineError(f"model_uri={model_uri!r}: {first_line(error)}") from None
    if not (Path(path) / "MLmodel").is_file():
        raise PipelineError(f"model_uri={model_uri!r}: not an MLflow model (no MLmodel file)")
    mlflow.set_tag(MODEL_URI_TAG, model_uri)
    if version:
        mlflow.set_tag(MODEL_VERSION_TAG, version)
    return path


def registry_version(model_uri: str) -> str | None:
    """The registry version `models:/<name>@<alias>` or `models:/<name>/<version>` names; None for other URIs."""
    if not model_uri.startswith("models:/"):
        return None
    name, at, alias = model_uri.removeprefix("models:/").partition("@")
    if at:
        return MlflowClient().get_model_version_by_alias(name, alias).version
    name, _, version = name.rpartition("/")
    return MlflowClient().get_model_version(name, version).version if version.isdigit() else None


def input_of(input_path: str, experiment_id: str) -> str:
    """`input_path`, or for `latest` the test split of the latest finished download_data run."""
    if input_path != LATEST:
        return input_path
    return data_uri(latest_finished_run(DOWNLOAD, experiment_id).info.run_id, "test")


def read(spark, location: str, scratch: Path):
    """The input as a Spark DataFrame; an MLflow artifact (`runs:/...`) is downloaded to the driver first."""
    if not is_artifact_uri(location):
        return batch_scoring.read_input(spark, location)
    frame = batch_scoring.read_local_download(download_artifacts(location, scratch))
    return spark.createDataFrame(frame.astype(object).where(frame.notna(), None))  # pandas' missing values as Spark's null


def dataset(frame, location: str):
    """`frame` as an MLflow dataset named after where it lies (a table by name, else its path or URI)."""
    table = batch_scoring.is_table(location)
    return mlflow.data.from_spark(frame, table_name=location if table else None, path=None if table else location,
                                  name=location.rstrip("/").rpartition("/")[2])


def output_scores(pairs: list[tuple[str, str, int]]) -> dict[str, float]:
    """The fraction scored positive, and accuracy and macro-F1 against the truth where the input had it."""
    total = sum(count for _, _, count in pairs)
    scores = {"fraction_positive": sum(count for _, label, count in pairs if label == LABELS[1]) / total}
    if any(truth for truth, _, _ in pairs):
        truth, predicted, counts = zip(*pairs)
        scores |= label_scores(list(truth), list(predicted), list(counts))
    return scores


if __name__ == "__main__":
    run_entry_point(main)
