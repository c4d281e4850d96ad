"""Finding a FINISHED run of a step that already did what is asked: same parameters, code commit and input data.

MLflow's multistep example compares parameters as Python values against MLflow's stored strings and takes
the oldest match; this compares the strings MLflow stores, checks the commit and the data digests, and
takes the newest match. `run_identity` is also what an interrupted run resumes by (`pipeline.training.launcher`).
"""

import shlex
import subprocess
from pathlib import Path

from mlflow.entities import Run

from pipeline.contract import BATCH, COMMIT_TAG, DOWNLOAD, FINE_TUNING, LATEST, REGISTER, SOURCE_RUN_TAG, SOURCE_TAG
from pipeline.contract import finished_runs, validators_tag
from pipeline.data.fetch import source_validators
from pipeline.data.input_data import input_digests
from pipeline.parameters import OUTSIDE_IDENTITY
from pipeline.tracking.runs import latest_run_or_none, run_id_in, step_run_by_id

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
