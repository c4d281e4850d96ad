"""Entry point `register_model`: register a fine-tuning run's model and give it the serving alias if it earns it.

Every model gets a registry version. The quality gate (`pipeline.quality_gate`) decides the alias: `alias`
(e.g. champion) when the model reaches `min_score`, beats its run's TF-IDF baseline (`beat_baseline`) and is not
worse than the current holder on the same test data, `challenger_alias` otherwise; the step prints why either way.
"""

import os
import sys

if __name__ == "__main__":  # the project folder, also where Databricks runs this source from MLflow's wrapper
    sys.path.insert(0, os.getcwd())


import click
import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.contract import DIGEST_TAG, FINE_TUNING, GATE_REASON_TAG, GATE_RESULT_TAG, GATE_TAG, LATEST, METRIC_TAG
from pipeline.contract import MODEL_URI_TAG, REGISTER, REGISTERED_NAME_TAG, REGISTERED_VERSION_TAG, SCORE_TAG
from pipeline.contract import REGISTERING_RUN_TAG, SOURCE_RUN_TAG, STEP_TAG, latest_finished_run
from pipeline.entry import reports_errors, run_entry_point
from pipeline.errors import PipelineError, first_line
from pipeline.tracking.mlflow_internals import check_registry_names
from pipeline.parameters import RegisterModel, command_line, logged_params
from pipeline.evaluation.quality_gate import judge, promote
from pipeline.data.input_data import input_digests
from pipeline.tracking.runs import check_model_name, log_new_params, shown_tracking_uri, step_run


@click.command(help=__doc__)
@command_line(RegisterModel)
@reports_errors
def main(**values) -> None:
    register(RegisterModel(**values))


def register(config: RegisterModel) -> None:
    mlflow_run_id, registered_model_name, alias = config.mlflow_run_id, config.registered_model_name, config.alias
    challenger_alias, gate_metric = config.challenger_alias, config.gate_metric
    with step_run(REGISTER) as run:
        log_new_params(logged_params(config))
        check_names(registered_model_name, (alias, challenger_alias))
        client = MlflowClient()
        source = find_source_run(client, mlflow_run_id, run.info.experiment_id)
        verdict = judge(client, registered_model_name, alias, source, gate_metric, config.min_score, config.beat_baseline)
        test_digest = input_digests(source).get("test", "")
        gate = "passed" if verdict.passed else "failed"
        tags = {SOURCE_RUN_TAG: source.info.run_id, GATE_TAG: gate, METRIC_TAG: gate_metric, SCORE_TAG: str(verdict.score),
                DIGEST_TAG: test_digest, REGISTERING_RUN_TAG: run.info.run_id}
        version = (interrupted_registration(client, registered_model_name, source.info.run_id, tags)
                   or mlflow.register_model(source.data.tags[MODEL_URI_TAG], registered_model_name, tags=tags))
        if verdict.passed:
            holder = promote(client, registered_model_name, alias, gate_metric, test_digest)
            outcome = f"@{alias} -> version {holder}"
        else:
            client.set_registered_model_alias(registered_model_name, challenger_alias, version.version)
            outcome = f"@{challenger_alias} -> version {version.version} (not promoted)"
        mlflow.set_tags({REGISTERED_NAME_TAG: registered_model_name, REGISTERED_VERSION_TAG: version.version,
                         SOURCE_RUN_TAG: source.info.run_id, GATE_RESULT_TAG: gate, GATE_REASON_TAG: verdict.reason})
        click.echo(f"registered {registered_model_name} version {version.version}; {outcome}: {verdict.reason}")


def interrupted_registration(client: MlflowClient, name: str, source_run_id: str, tags: dict[str, str]):
    """The version of the source run's model that a register_model run made and never finished (killed, or
    interrupted before its alias), now with this run's tags: a rerun completes that registration instead of adding
    a second version. A registration that finished leaves its version alone: registering again makes a new one."""
    for found in client.search_model_versions(f"run_id = '{source_run_id}'"):  # Unity Catalog: by name or by run id
        if found.name != name:
            continue
        version = client.get_model_version(name, found.version)  # Unity Catalog's search leaves out the tags
        if unfinished(client, version.tags.get(REGISTERING_RUN_TAG)):
            for key, value in tags.items():
                client.set_model_version_tag(name, version.version, key, value)
            return version
    return None


def unfinished(client: MlflowClient, run_id: str | None) -> bool:
    try:
        return bool(run_id) and client.get_run(run_id).info.status != "FINISHED"
    except MlflowException:  # deleted since: nobody's registration to complete
        return False


def check_names(name: str, aliases: tuple[str, ...]) -> None:
    """The model and alias names, as the registry will check them, before anything is registered."""
    try:
        check_registry_names(name, aliases)
    except MlflowException as error:
        raise PipelineError(first_line(error)) from None
    if len(set(aliases)) != len(aliases):
        raise PipelineError(f"alias and challenger_alias are both {aliases[0]!r}: give the challenger another name")
    check_model_name(name)


def find_source_run(client: MlflowClient, run_id: str, experiment_id: str):
    """The fine-tuning run to register: the given id (checked) or the latest finished one."""
    if run_id in ("", LATEST):
        return latest_finished_run(FINE_TUNING, experiment_id)
    try:
        source = client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise PipelineError(f"mlflow_run_id={run_id!r}: no such run in {shown_tracking_uri()}") from None
    if source.info.status != "FINISHED":
        raise PipelineError(f"mlflow_run_id={run_id!r}: the run is {source.info.status}, not FINISHED")
    if source.data.tags.get(STEP_TAG, FINE_TUNING) != FINE_TUNING:
        raise PipelineError(f"mlflow_run_id={run_id!r}: that is a {source.data.tags[STEP_TAG]!r} run, not a fine_tuning_model run")
    if MODEL_URI_TAG not in source.data.tags:
        raise PipelineError(f"mlflow_run_id={run_id!r}: the run logged no model (no {MODEL_URI_TAG!r} tag)")
    return source


if __name__ == "__main__":
    run_entry_point(main)
