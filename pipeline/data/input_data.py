"""The fine-tuning step's input data: where `data_path` points (a folder, an artifact, the latest download), the
splits logged as the run's inputs, and the digests that say whether two runs read the same data."""

from pathlib import Path

import mlflow
import pandas as pd
from mlflow.data.digest_utils import compute_pandas_digest
from mlflow.entities import Run

from pipeline.contract import DATA_RUN_TAG, DOWNLOAD, LATEST, data_uri, latest_finished_run
from pipeline.data.reviews import LABEL_COLUMN
from pipeline.errors import PipelineError
from pipeline.tracking.runs import download_artifacts, is_artifact_uri, run_id_in, step_run_by_id


def resolve_data(data_path: str, experiment_id: str, scratch: Path) -> tuple[Path, str | None]:
    """A local folder of CSVs for `data_path` (itself, a downloaded artifact, or the latest download_data run's
    data) and the download_data run it came from, if any."""
    if data_path in ("", LATEST):
        data_path = data_uri(latest_finished_run(DOWNLOAD, experiment_id).info.run_id)
    if is_artifact_uri(data_path):
        run_id = run_id_in(data_path)
        if run_id is not None:  # one line for an unknown run or another step's run, before downloading anything
            step_run_by_id(run_id, DOWNLOAD, f"data_path={data_path!r}")
        return download_artifacts(data_path, scratch / "data"), run_id
    folder = Path(data_path.removeprefix("file://"))
    if not folder.is_dir():
        raise PipelineError(f"data_path={data_path!r}: no such folder (expected train.csv, valid.csv, test.csv in it)")
    return folder, None


def log_data_inputs(frames: dict[str, pd.DataFrame], data_dir: Path, data_run_id: str | None) -> None:
    """The splits as the run's inputs, named and sourced as the download step logged them, so MLflow shows one
    data set feeding both runs."""
    location = mlflow.get_run(data_run_id).data.params.get("download_url", str(data_dir)) if data_run_id else str(data_dir)
    source = dataset_source(location)
    for split, frame in frames.items():
        mlflow.log_input(mlflow.data.from_pandas(frame, source=source, name=f"imdb-{split}", targets=LABEL_COLUMN), context=split)
    if data_run_id:
        mlflow.set_tag(DATA_RUN_TAG, data_run_id)


def dataset_source(location: str):
    """MLflow's dataset source for `location`, chosen among the candidates that read it: MLflow registers its local
    file source twice (once for each scheme of its local artifact repository, the same class), and a plain string
    then warns that it "can be interpreted in multiple ways" on every `log_input`."""
    from mlflow.data.dataset_source_registry import get_registered_sources, resolve_dataset_source

    candidates = [source for source in get_registered_sources() if source._can_resolve(location)]
    return resolve_dataset_source(location, candidate_sources=candidates[-1:] or None)


def data_digests(frames: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Each split's digest as `mlflow.log_input` records it, from the data alone."""
    return {split: compute_pandas_digest(frame) for split, frame in frames.items()}


def input_digests(run: Run) -> dict[str, str]:
    """{context: digest} of the data sets a run logged as inputs (train/valid/test)."""
    digests = {}
    for dataset_input in run.inputs.dataset_inputs:
        context = next((tag.value for tag in dataset_input.tags if tag.key == "mlflow.data.context"), None)
        if context:
            digests[context] = dataset_input.dataset.digest
    return digests

