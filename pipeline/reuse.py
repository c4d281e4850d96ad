"""Finding a FINISHED run of a step that already did what is asked: same parameters, code commit and input data.

MLflow's multistep example compares parameters as Python values against MLflow's stored strings and takes
the oldest match; this compares the strings MLflow stores, checks the commit and the data digests, and
takes the newest match.
"""

import subprocess
from pathlib import Path

import mlflow
from mlflow.entities import Run

from pipeline.tracking import STEP_TAG

COMMIT_TAG = "mlflow.source.git.commit"


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
    candidates = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string=f"tags.`{STEP_TAG}` = '{step}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        output_format="list",
    )
    for run in candidates:
        if run.data.tags.get(COMMIT_TAG) != commit:
            continue
        if any(run.data.params.get(key) != value for key, value in params.items()):
            continue
        if any(run.data.tags.get(key) != value for key, value in (extra_tags or {}).items()):
            continue
        if data_digests is not None and input_digests(run) != data_digests:
            continue
        return run
    return None
