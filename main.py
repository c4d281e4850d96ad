"""Entry point `main`: run the pipeline's steps in order, each as a nested MLflow run under one parent run.

    mlflow run . -P pipeline_steps=download_data,fine_tuning_model -P epochs=1

Every KEY=VALUE goes to the steps whose entry point in MLproject declares KEY. Outputs pass between
steps as MLflow references (the data as `runs:/<download run>/imdb`, the model as the fine-tuning run
id), never as paths on one disk, so the same code works wherever the backend runs it.
"""

import os
import sys

if __name__ == "__main__":  # the project folder, also where Databricks runs this source from MLflow's wrapper
    sys.path.insert(0, os.getcwd())

import dataclasses
import importlib.metadata
import platform
from pathlib import Path

import click
import mlflow
from mlflow import MlflowClient
from mlflow.projects.backend.local import LocalBackend
from mlflow.projects.utils import PROJECT_BUILD_IMAGE, PROJECT_DOCKER_ARGS, PROJECT_DOCKER_AUTH, PROJECT_ENV_MANAGER
from mlflow.projects.utils import PROJECT_STORAGE_DIR, PROJECT_SYNCHRONOUS
from mlflow.utils.mlflow_tags import MLFLOW_PROJECT_BACKEND, MLFLOW_RUN_NAME

from pipeline.contract import COMMIT_TAG, DOWNLOAD, ERROR_TAG, FINE_TUNING, REUSED_TAG, STEPS_TAG
from pipeline.contract import BATCH, LATEST, REGISTER, data_uri, serving_uri, step_run_id_tag
from pipeline.on_databricks.cloud import job_specs
from pipeline.on_databricks.cluster import on_databricks
from pipeline.on_databricks.credentials import credentials_for_children
from pipeline.on_databricks.jobs import NAME as DATABRICKS_JOBS
from pipeline.on_databricks.jobs import submit_project
from pipeline.entry import INTERRUPTED, project_dir, reports_errors, run_entry_point
from pipeline.errors import PipelineError
from pipeline.logs import LOGGER
from pipeline.tracking.mlflow_internals import step_environment
from pipeline.parameters import STEP_PARAMETERS, MainParameters, as_text, check_value, command_line, declaring_steps
from pipeline.parameters import parse_steps
from pipeline.tracking.reuse import git_commit, reusable_run
from pipeline.tracking.runs import check_model_name, check_tracking_server, end_unfinished_run

def step_defaults() -> dict[str, dict[str, str]]:
    """Each step's parameters and their defaults as MLproject declares them and MLflow logs them (`pipeline.parameters`)."""
    return {step: {item.name: as_text(item.default) for item in dataclasses.fields(config)} for step, config in STEP_PARAMETERS.items()}


def parse_parameters(pairs: tuple[str, ...]) -> dict[str, str]:
    """KEY=VALUE pairs, checked before any step starts: each names a step parameter and is a value that step
    takes (type, range, choices)."""
    values = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        steps = declaring_steps(key)
        if not separator or not steps:
            raise PipelineError(f"{pair!r}: not a parameter of any step (expected KEY=VALUE)")
        for step in steps:
            try:
                check_value(step, key, value)
            except click.BadParameter as error:
                raise PipelineError(f"-P {key}={value!r}: {error.message} (entry point {step})") from None
        values[key] = value
    return values


def run_step(folder: Path, step: str, parameters: dict[str, str], experiment_id: str, commit: str | None,
             cluster_spec: str | None) -> str:
    """Run one entry point as a child of the active run: in this environment, or, given a `cluster_spec`
    (`pipeline.on_databricks.cloud.job_specs`), as its own Databricks job; return its run id."""
    backend = DATABRICKS_JOBS if cluster_spec else "local"
    if cluster_spec:  # called directly: the cluster has this project's code, not its installed plugin
        submitted = submit_project(str(folder), step, parameters, None, cluster_spec, mlflow.get_tracking_uri(), experiment_id)
    elif on_databricks():
        submitted = started_here(folder, step, parameters, experiment_id)
    else:
        submitted = mlflow.projects.run(str(folder), entry_point=step, parameters=parameters, experiment_id=experiment_id,
                                        run_name=step, synchronous=False, backend=backend, env_manager="local")
    for tag, value in {MLFLOW_PROJECT_BACKEND: backend, MLFLOW_RUN_NAME: step, COMMIT_TAG: commit}.items():
        if value:  # MLflow finds no commit where the code came without .git; reuse compares it
            MlflowClient().set_tag(submitted.run_id, tag, value)
    mlflow.set_tag(step_run_id_tag(step), submitted.run_id)
    LOGGER.info(f"{step}: run {submitted.run_id}")
    try:
        succeeded = submitted.wait()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (`pipeline.entry.interrupted`): the step has a session of its own
        submitted.cancel()  # SIGTERM to the step and the processes it started
        end_unfinished_run(submitted.run_id, "FAILED", INTERRUPTED)
        raise
    end_unfinished_run(submitted.run_id, "FINISHED" if succeeded else "FAILED", "see the step's output above")

    if not succeeded:
        reason = MlflowClient().get_run(submitted.run_id).data.tags.get(ERROR_TAG, "see the step's output above")
        raise PipelineError(f"step {step} failed (run {submitted.run_id}): {reason}")
    return submitted.run_id


def started_here(folder: Path, step: str, parameters: dict[str, str], experiment_id: str):
    """The entry point started from this process by MLflow's local backend (its synchronous mode, whose wait is
    ours): its environment is this process's, where `step_environment` hands over the served credentials. MLflow's
    asynchronous mode starts `mlflow run` in between, a process that would resolve Databricks credentials itself
    and, on a cluster, find none to copy."""
    options = {PROJECT_ENV_MANAGER: "local", PROJECT_SYNCHRONOUS: True, PROJECT_DOCKER_ARGS: None, PROJECT_STORAGE_DIR: None,
               PROJECT_BUILD_IMAGE: False, PROJECT_DOCKER_AUTH: None}
    return LocalBackend().run(str(folder), step, parameters, None, options, mlflow.get_tracking_uri(), experiment_id)


def environment_line() -> str:
    """The Python and key packages this process and its steps run on (on Databricks: the runtime's, with the job's
    libraries)."""
    versions = ", ".join(f"{name} {importlib.metadata.version(name)}" for name in ("torch", "pandas", "mlflow", "transformers", "lightning"))
    return f"environment: Python {platform.python_version()} ({sys.executable}, also the steps'); {versions}"


def steps_use_this_python() -> None:
    """Steps start as `python <file>` from PATH: this interpreter's folder goes first, so they run on what `main` runs
    on (on a cluster, whether a child finds the job's libraries before the runtime's is not documented)."""
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def check_before_steps(steps: list[str], values: dict[str, str], declared: dict[str, dict[str, object]]) -> None:
    """What a step would only find after the others ran: a model name the registry refuses (Unity Catalog)."""
    if REGISTER in steps:
        check_model_name(values.get("registered_model_name", str(declared[REGISTER]["registered_model_name"])))


def batch_model_uri(values: dict[str, str], declared: dict[str, dict[str, object]]) -> str:
    """batch_inference's model: `model_uri` where it was given, else the alias register_model serves under the
    `registered_model_name` and `alias` given (`mlflow run` passes main every parameter: a default is "not given")."""
    default = str(declared[BATCH]["model_uri"])
    if values.get("model_uri", default) != default:
        return values["model_uri"]
    return serving_uri(*(values.get(key, str(declared[REGISTER][key])) for key in ("registered_model_name", "alias")))


@click.command(help=__doc__)
@command_line(MainParameters)
@click.argument("parameters", nargs=-1)
@reports_errors
def main(pipeline_steps: str, reuse_completed: bool, parameters: tuple[str, ...]) -> None:
    steps = parse_steps(pipeline_steps)
    folder = project_dir()
    declared = step_defaults()
    values = parse_parameters(parameters)
    check_before_steps(steps, values, declared)
    # On Databricks the steps that use Spark run as jobs of their own (Runtime 13+ gives child processes of the driver
    # no Spark): multi-node fine_tuning_model on the multi-node spec, batch_inference on the single-node one.
    specs = job_specs(folder, steps, values)
    if BATCH in steps:
        values["model_uri"] = batch_model_uri(values, declared)
    steps_use_this_python()
    LOGGER.info(environment_line())
    check_tracking_server()
    # On a Databricks cluster only this process holds credentials: it serves fresh ones to the steps while they run.
    with credentials_for_children() as variables, step_environment(variables), mlflow.start_run(run_name="pipeline") as parent:
        mlflow.set_tag(STEPS_TAG, ",".join(steps))
        experiment_id = parent.info.experiment_id
        # Databricks unpacks the code without .git: there, the commit is the one MLflow recorded at submission.
        commit = git_commit(folder) or parent.data.tags.get(COMMIT_TAG)
        reuse = reuse_completed and bool(commit)
        if reuse_completed and not reuse:
            LOGGER.info("not reusing finished steps: the code comes from no git commit, so they may have run other code")
        reused = []
        for step in steps:
            step_values = {key: value for key, value in values.items() if key in declared[step]}
            previous = reusable_run(step, step_values, declared, experiment_id, commit) if reuse else None
            if previous:
                run_id = previous.info.run_id
                reused.append(step)
                mlflow.set_tags({step_run_id_tag(step): run_id, REUSED_TAG: ",".join(reused)})
                LOGGER.info(f"reusing finished {step} run {run_id}: same parameters, commit and input data")
            else:
                run_id = run_step(folder, step, step_values, experiment_id, commit, specs.get(step))
            if step == DOWNLOAD:
                values["data_path"] = data_uri(run_id)
                if values.get("input_path", LATEST) == LATEST:  # batch_inference's latest download: this one
                    values["input_path"] = data_uri(run_id, "test")
            elif step == FINE_TUNING:
                values["mlflow_run_id"] = run_id
        LOGGER.info(f"pipeline finished: {', '.join(steps)} (parent run {parent.info.run_id})")


if __name__ == "__main__":
    run_entry_point(main)
