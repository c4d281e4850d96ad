"""Finding a FINISHED run of a step that already did what is asked: same parameters, code commit and input data.

MLflow's multistep example compares parameters as Python values against MLflow's stored strings and takes
the oldest match; this compares the strings MLflow stores, checks the commit and the data digests, and
takes the newest match.
"""

import shlex
import subprocess
from pathlib import Path

import mlflow
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from pipeline.contract import BATCH, COMMIT_TAG, DOWNLOAD, FINE_TUNING, LATEST, REGISTER, SOURCE_RUN_TAG, SOURCE_TAG, STEP_TAG
from pipeline.contract import finished_runs, latest_finished_run, validators_tag
from pipeline.errors import PipelineError, first_line
from pipeline.fetch import source_validators
from pipeline.parameters import OUTSIDE_IDENTITY
from pipeline.tracking import run_id_in, shown_tracking_uri

DATA_REFERENCE = "data_path"  # compared by content (the input data's digests), not by the reference that names it


def run_identity(params: dict, data_digests: dict[str, str] | None = None) -> dict:
    """What makes two runs of a step "the same run", for reuse (finished) and resume (interrupted) alike: the
    parameters declared part of it (`pipeline.parameters`, `identity`), plus the digests of the data read."""
    identity = {key: str(value) for key, value in params.items() if key not in OUTSIDE_IDENTITY}
    return identity | ({"data": data_digests} if data_digests is not None else {})


def git_commit(folder: Path) -> str | None:
    """The commit the code in `folder` comes from, or None outside a git checkout."""
    try:
        result = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def input_digests(run: Run) -> dict[str, str]:
    """{context: digest} of the data sets a run logged as inputs (train/valid/test)."""
    digests = {}
    for dataset_input in run.inputs.dataset_inputs:
        context = next((tag.value for tag in dataset_input.tags if tag.key == "mlflow.data.context"), None)
        if context:
            digests[context] = dataset_input.dataset.digest
    return digests


def find_reusable_run(step: str, experiment_id: str, params: dict[str, str], commit: str | None,
                      data_digests: dict[str, str] | None = None, extra_tags: dict[str, str] | None = None) -> Run | None:
    """The newest FINISHED run of `step` whose stored params equal `params`, whose commit is `commit`,
    whose input data digests equal `data_digests` (when given) and whose tags include `extra_tags`."""
    wanted = run_identity(params)
    for run in finished_runs(step, experiment_id):
        if run.data.tags.get(COMMIT_TAG) != commit:
            continue
        if any(run.data.params.get(key) not in (value, shlex.quote(value)) for key, value in wanted.items()):
            continue  # `mlflow run` stores a value shell-quoted where a shell would need the quotes ('' for empty)
        if any(run.data.tags.get(key) != value for key, value in (extra_tags or {}).items()):
            continue
        if data_digests is not None and input_digests(run) != data_digests:
            continue
        return run
    return None


def reusable_run(step: str, values: dict[str, str], declared: dict, experiment_id: str, commit: str | None):
    """A finished run that already did `step` with these inputs, or None.

    `values` are the KEY=VALUE strings `main` passes; `declared` holds each step's parameter defaults, which
    MLflow stores (as strings) when a value is not passed."""
    if step == BATCH:  # its output lies outside MLflow and an alias moves to other models: always scored anew
        return None
    params = {key: values.get(key, "" if default is None else str(default)) for key, default in declared[step].items()}
    if step == FINE_TUNING:  # compare the data itself, not the reference to it
        data_run = data_run_for(params[DATA_REFERENCE], experiment_id)
        if data_run is None:
            return None
        return find_reusable_run(step, experiment_id, params, commit, data_digests=input_digests(data_run))
    if step == REGISTER:  # compare the model registered, not how it was named
        source = params.pop("mlflow_run_id")
        if source == LATEST:
            latest = latest_run_or_none(FINE_TUNING, experiment_id)
            source = latest.info.run_id if latest else None
        return find_reusable_run(step, experiment_id, params, commit, extra_tags={SOURCE_RUN_TAG: source}) if source else None
    # download_data: the same URL may serve another file now; reuse only what its source still says it serves.
    validators = source_validators(params["download_url"])
    if validators is None:
        return None
    return find_reusable_run(step, experiment_id, params, commit, extra_tags={SOURCE_TAG: validators_tag(validators)})


def data_run_for(data_path: str, experiment_id: str):
    """The download_data run that `data_path` points at (`runs:/<id>/imdb` or `latest`), else None."""
    if data_path == LATEST:
        return latest_run_or_none(DOWNLOAD, experiment_id)
    run_id = run_id_in(data_path)
    return step_run_by_id(run_id, DOWNLOAD, f"data_path={data_path!r}") if run_id is not None else None


def step_run_by_id(run_id: str, step: str, given: str) -> Run:
    """The run `run_id`, which must exist and be a run of `step`; `given` names what the user passed."""
    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except MlflowException as error:
        raise PipelineError(f"{given}: no run {run_id!r} in {shown_tracking_uri()} ({first_line(error)})") from None
    found = run.data.tags.get(STEP_TAG)
    if found != step:
        raise PipelineError(f"{given}: run {run_id} is a {found or 'non-pipeline'} run, not a {step} run")
    return run


def latest_run_or_none(step: str, experiment_id: str):
    """The latest finished run of `step`, or None when there is none."""
    try:
        return latest_finished_run(step, experiment_id)
    except PipelineError:
        return None
