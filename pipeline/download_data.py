"""Entry point `download_data`: fetch the review archive, check it, and record it in MLflow.

The checked CSVs are logged as the run's `imdb/` artifact; later steps read them from there
(`runs:/<this run>/imdb`), so they work even where this step ran on another machine.
"""

import os
import sys

if __name__ == "__main__":  # the project folder, also where Databricks runs this source from MLflow's wrapper
    sys.path.insert(0, os.getcwd())

import tempfile
from pathlib import Path

import click
import mlflow

from pipeline.on_databricks.cluster import local_path
from pipeline.contract import DATA_ARTIFACT, DOWNLOAD, SHA256_TAG, SOURCE_TAG, validators_tag
from pipeline.data.reviews import LABEL_COLUMN, SPLITS, read_dataset
from pipeline.entry import reports_errors, run_entry_point
from pipeline.errors import PipelineError
from pipeline.data.fetch import extract_zip, fetch, sha256_of, source_validators
from pipeline.data.input_data import dataset_source
from pipeline.parameters import DownloadData, command_line, logged_params
from pipeline.tracking.runs import log_new_params, step_run


@click.command(help=__doc__)
@command_line(DownloadData)
@reports_errors
def main(**values) -> None:
    download_dataset(DownloadData(**values))


def download_dataset(config: DownloadData) -> None:
    download_url, local_folder, sha256 = config.download_url, config.local_folder, config.sha256
    with step_run(DOWNLOAD):
        log_new_params(logged_params(config))
        target = writable_folder(local_path(local_folder)) / DATA_ARTIFACT
        with tempfile.TemporaryDirectory(prefix="download-") as scratch:
            validators = source_validators(download_url)  # before the body: a change during the download shows later
            archive = fetch(download_url, Path(scratch) / "archive.zip")
            actual_sha256 = sha256_of(archive)
            if sha256.lower() not in ("", "none") and sha256.lower() != actual_sha256:
                raise PipelineError(f"{download_url}: SHA-256 is {actual_sha256}, expected {sha256}")
            frames = extract_zip(archive, target, download_url, check=read_dataset)
        mlflow.set_tags({SHA256_TAG: actual_sha256, SOURCE_TAG: validators_tag(validators)})
        for split in SPLITS:
            frame = frames[split]
            dataset = mlflow.data.from_pandas(frame, source=dataset_source(download_url), name=f"imdb-{split}", targets=LABEL_COLUMN)
            mlflow.log_input(dataset, context=split)
            mlflow.log_metric(f"{split}_rows", len(frame))
            mlflow.log_metric(f"{split}_positive_fraction", float((frame[LABEL_COLUMN] == "positive").mean()))
        mlflow.log_artifacts(str(target), artifact_path=DATA_ARTIFACT)
        click.echo(f"data checked and logged: {target} ({', '.join(f'{s}={len(frames[s])}' for s in SPLITS)} rows)")


def writable_folder(folder: Path) -> Path:
    """`folder`, created if missing, checked before anything is downloaded into it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        raise PipelineError(f"local_folder={str(folder)!r}: cannot write there ({error.strerror or type(error).__name__})") from None
    return folder


if __name__ == "__main__":
    run_entry_point(main)
