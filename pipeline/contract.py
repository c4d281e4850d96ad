"""The contract between the steps: their names, what one step leaves in MLflow for the next (tags, artifacts),
and the one query that finds a step's finished runs. Every other module names these through here."""

import json

from pipeline.errors import PipelineError

DOWNLOAD, FINE_TUNING, REGISTER = STEPS = ("download_data", "fine_tuning_model", "register_model")  # `all`
BATCH = "batch_inference"
OPTIONAL_STEPS = (BATCH,)  # run only when `pipeline_steps` names them, after the steps of `all`
LATEST = "latest"  # parameter value: take the output of the latest finished run of the step before

# Tags on every step's run
STEP_TAG = "pipeline.step"  # which step made the run
ERROR_TAG = "pipeline.error"  # the one-line reason a step failed, which `main` repeats
COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own: the code's commit (reuse compares it)

# download_data
DATA_ARTIFACT = "imdb"  # the artifact folder of train.csv, valid.csv, test.csv
SOURCE_TAG = "pipeline.source_validators"  # what the archive's source said about its version; reuse compares it
SHA256_TAG = "archive_sha256"

# fine_tuning_model
DATA_RUN_TAG = "pipeline.data_run_id"  # the download_data run whose data it trained on
MODEL_ARTIFACT = "model"
MODEL_URI_TAG = "pipeline.model_uri"  # where its logged model lives
RESUMED_TAG = "pipeline.resumed"
TOKENS_CACHED_TAG = "pipeline.tokenized_cache_hit"
BEST_CHECKPOINT_TAG = "pipeline.best_checkpoint"

# register_model (on its run, and SOURCE_RUN_TAG and the gate's tags on the model version too)
SOURCE_RUN_TAG = "source_run_id"  # the fine-tuning run whose model it registered
REGISTERING_RUN_TAG = "registering_run_id"  # on the version: the register_model run that made it
REGISTERED_NAME_TAG, REGISTERED_VERSION_TAG = "registered_model_name", "registered_model_version"
GATE_RESULT_TAG, GATE_REASON_TAG = "pipeline.quality_gate", "pipeline.quality_gate_reason"
GATE_TAG, METRIC_TAG, SCORE_TAG, DIGEST_TAG = "quality_gate", "gate_metric", "gate_score", "test_data_digest"

# batch_inference
OUTPUT_MARKER = "_BATCH_INFERENCE"  # the file (JSON, the run id) that marks a folder as this step's output
MODEL_VERSION_TAG = "pipeline.model_version"  # the registry version a models:/ URI resolved to

# main (the parent run)
STEPS_TAG, REUSED_TAG = "pipeline.steps", "pipeline.reused"

# Metrics that cross steps: fine_tuning_model logs them on its run, register_model's quality gate reads them.
MONITOR = "val_macro_f1"  # what checkpoints, early stopping and the blend's weight follow
TEST_METRICS = ("test_accuracy", "test_macro_f1")  # the fine-tuned transformer's (Lightning's test of the best epoch)


def served_metric(test_metric: str) -> str:
    """The test metric of what the logged model serves (the transformer, or its blend with the baseline)."""
    return f"served_{test_metric}"


def baseline_metric(test_metric: str) -> str:
    """The test metric of the run's TF-IDF + logistic regression baseline."""
    return f"baseline_{test_metric}"


def lift_metric(test_metric: str, served: bool) -> str:
    """The served model's (or the transformer's) test metric minus the baseline's."""
    return f"lift_served_{test_metric}" if served else f"lift_{test_metric}"


def validators_tag(validators: dict[str, str] | None) -> str:
    """SOURCE_TAG's value for what a source said of its version; "unknown" never matches, so such a download is
    never reused."""
    return json.dumps(validators, sort_keys=True) if validators else "unknown"


def step_run_id_tag(step: str) -> str:
    """The parent run's tag naming the run that did `step`."""
    return f"pipeline.{step}.run_id"


def data_uri(run_id: str, split: str | None = None) -> str:
    """The data a download_data run logged (`runs:/<id>/imdb`), or one split's CSV of it."""
    return f"runs:/{run_id}/{DATA_ARTIFACT}" + (f"/{split}.csv" if split else "")


def serving_uri(registered_model_name: str, alias: str) -> str:
    """The model register_model serves: its alias of the registered model."""
    return f"models:/{registered_model_name}@{alias}"


def finished_runs(step: str, experiment_id: str, max_results: int | None = None) -> list:
    """The FINISHED runs (`mlflow.entities.Run`) of `step` in the experiment, newest first."""
    import mlflow  # here, not at the top: the training processes read this module's names and never talk to MLflow

    return mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string=f"tags.`{STEP_TAG}` = '{step}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        output_format="list",
        **({"max_results": max_results} if max_results else {}),
    )


def latest_finished_run(step: str, experiment_id: str):
    """The most recently started FINISHED run of `step`."""
    runs = finished_runs(step, experiment_id, max_results=1)
    if not runs:
        raise PipelineError(f"no finished '{step}' run in experiment {experiment_id}: run that step first or pass its output explicitly")
    return runs[0]
