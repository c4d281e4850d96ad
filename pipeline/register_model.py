"""Entry point `register_model`: register a fine-tuning run's model in the MLflow Model Registry and point an alias at it."""

import click
import mlflow
from mlflow import MlflowClient

from pipeline.errors import PipelineError, reports_errors
from pipeline.model_logging import MODEL_URI_TAG
from pipeline.tracking import LATEST, STEP_TAG, latest_finished_run, step_run


@click.command(help=__doc__)
@click.option("--mlflow-run-id", default=LATEST, show_default=True, help="Fine-tuning run whose model to register; 'latest': the latest finished one.")
@click.option("--registered-model-name", default="dl_finetuned_model", show_default=True)
@click.option("--alias", default="champion", show_default=True, help="Alias set on the new version (models:/<name>@<alias>).")
@reports_errors
def main(mlflow_run_id: str, registered_model_name: str, alias: str) -> None:
    with step_run("register_model") as run:
        client = MlflowClient()
        source = find_source_run(client, mlflow_run_id, run.info.experiment_id)
        version = mlflow.register_model(
            source.data.tags[MODEL_URI_TAG],
            registered_model_name,
            tags={"source_run_id": source.info.run_id},
        )
        if alias:
            client.set_registered_model_alias(registered_model_name, alias, version.version)
        mlflow.set_tags({"registered_model_name": registered_model_name,
                         "registered_model_version": version.version,
                         "source_run_id": source.info.run_id})
        target = f"models:/{registered_model_name}@{alias}" if alias else f"models:/{registered_model_name}/{version.version}"
        click.echo(f"registered {registered_model_name} version {version.version}: {target}")


def find_source_run(client: MlflowClient, run_id: str, experiment_id: str):
    """The fine-tuning run to register: the given id (checked) or the latest finished one."""
    if run_id in ("", LATEST):
        return latest_finished_run("fine_tuning_model", experiment_id)
    try:
        source = client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise PipelineError(f"mlflow_run_id={run_id!r}: no such run in {mlflow.get_tracking_uri()}") from None
    if source.info.status != "FINISHED":
        raise PipelineError(f"mlflow_run_id={run_id!r}: the run is {source.info.status}, not FINISHED")
    if source.data.tags.get(STEP_TAG, "fine_tuning_model") != "fine_tuning_model":
        raise PipelineError(f"mlflow_run_id={run_id!r}: that is a {source.data.tags[STEP_TAG]!r} run, not a fine_tuning_model run")
    if MODEL_URI_TAG not in source.data.tags:
        raise PipelineError(f"mlflow_run_id={run_id!r}: the run logged no model (no {MODEL_URI_TAG!r} tag)")
    return source


if __name__ == "__main__":
    main()
