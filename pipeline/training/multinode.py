"""Fine-tuning on several machines: Spark's TorchDistributor starts one training process per device across a
Spark cluster; Lightning's DDP (`devices=1`, `num_nodes=<processes>`, as TorchDistributor asks) does the rest.

The step's own process is the Spark driver. The training processes run on other machines, which see none of
the driver's disk: everything they get lies in the two folders every node must read, `cache_dir` and
`checkpoint_dir` (on Databricks: a Unity Catalog volume, `/Volumes/...`, or `/dbfs/...`). This launcher copies the
data, a local foundation model and the `pipeline` package into `<cache_dir>/runs/<run id>`, which it removes when
training ends. The training processes never talk to MLflow: global rank 0 writes its metrics with Lightning's
CSVLogger into that folder and they come back in the outcome for the step to log, so no credentials travel to
the workers.
"""

import dataclasses
import shutil
from pathlib import Path

import pandas as pd

import pipeline
from pipeline.on_databricks.cluster import local_path
from pipeline.contract import FINE_TUNING
from pipeline.errors import PipelineError
from pipeline.spark import connect_url, python_error_in, spark_session
from pipeline.training.hardware import spark_processes, spark_uses_gpus
from pipeline.training.job import METRICS_FILE, Outcome, TrainingJob, read_outcome

SHARED_HINT = ("with num_nodes > 1, cache_dir and checkpoint_dir must be folders every node reads "
               "(on Databricks: under /dbfs/ or /Volumes/)")


def refuse_spark_connect() -> None:
    """Several machines need classic Spark: this process must be the cluster's driver, writing the shared folders
    the training processes read and starting them with TorchDistributor. A Spark Connect client (SPARK_REMOTE) is
    not the driver, and Databricks' Spark Connect compute (standard, serverless) runs no ML runtime."""
    remote = connect_url()
    if remote:
        raise PipelineError(f"num_nodes > 1 trains on classic Spark, as the cluster's driver; SPARK_REMOTE={remote!r} "
                            "asks for Spark Connect: unset it (on Databricks: a dedicated ML cluster), or give num_nodes=1")


def shared_copy(source: Path, destination: Path) -> Path:
    """`source` copied to `destination` in the shared folder (the workers cannot read the driver's disk)."""
    if source.resolve().is_relative_to(destination.resolve()):
        return source
    shutil.rmtree(destination, ignore_errors=True)
    shutil.copytree(source, destination)
    return destination


def launch_on_spark(job: TrainingJob, script: str) -> Outcome:
    """Run `pipeline/<script> <job.json>` as one process per device across the Spark cluster, in the shared run
    folder `<cache_dir>/runs/<run id>`, gone afterwards whether training finished or failed."""
    work = local_path(job.config.cache_dir) / "runs" / job.mlflow_run_id
    try:
        job = shared_job(job, work)
        Path(job.log_dir).mkdir(parents=True, exist_ok=True)
        run_on_spark(job, job.write(work / "job.json"), script, work)
        return dataclasses.replace(read_outcome(job, 0), metric_rows=logged_metrics(Path(job.log_dir)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def shared_job(job: TrainingJob, work: Path) -> TrainingJob:
    """`job` as the training processes on other machines get it: the data and a local foundation model copied into
    the shared folder `work`, metrics as CSV there (no run id: no credentials travel), and every path checked to lie
    under `cache_dir` or `checkpoint_dir`, the folders every node reads."""
    job = dataclasses.replace(job, data_dir=str(shared_copy(Path(job.data_dir), work / "data")), log_dir=str(work / "logs"),
                              world_size=spark_processes(job.config), mlflow_run_id=None)
    model = Path(job.config.foundation_model).expanduser()
    if model.is_dir():
        job = dataclasses.replace(job, config=dataclasses.replace(
            job.config, foundation_model=str(shared_copy(model, work / "foundation_model"))))
    outside = paths_outside_shared_folders(job)
    if outside:
        raise PipelineError(f"num_nodes > 1: {', '.join(outside)} would not be readable by the other nodes; {SHARED_HINT}")
    return job


def shared_folders(config) -> tuple[Path, Path]:
    return local_path(config.cache_dir), local_path(config.checkpoint_dir)


def paths_outside_shared_folders(job: TrainingJob) -> list[str]:
    """The paths of a training job that lie outside `cache_dir` and `checkpoint_dir` (`key=path` each)."""
    roots = shared_folders(job.config)
    candidates = {key: getattr(job, key) for key in ("data_dir", "checkpoints", "log_dir", "resume_from") if getattr(job, key)}
    model = job.config.foundation_model
    if Path(model).expanduser().exists():  # a hub id is no path: each node downloads it
        candidates["foundation_model"] = model
    return [f"{key}={value}" for key, value in candidates.items()
            if not any(Path(value).expanduser().resolve().is_relative_to(root) for root in roots)]


def run_on_spark(job: TrainingJob, job_file: Path, script: str, work: Path) -> None:
    """Run `pipeline/<script> job_file` as `job.world_size` training processes across the Spark cluster. The
    workers do not have this project: the `pipeline` package goes to the shared folder `work` first, and each
    process runs that copy (TorchDistributor's file mode)."""
    spark_session(job.config.spark_master, FINE_TUNING, "num_nodes > 1")  # first: it says in one line when pyspark is missing
    from pyspark.ml.torch.distributor import TorchDistributor

    code = work / "code" / "pipeline"
    shutil.rmtree(code, ignore_errors=True)
    shutil.copytree(Path(pipeline.__file__).parent, code, ignore=shutil.ignore_patterns("__pycache__"))
    try:
        TorchDistributor(num_processes=job.world_size, local_mode=False, use_gpu=spark_uses_gpus(job.config.accelerator)).run(
            str(code / script), str(job_file))
    except Exception as error:  # noqa: BLE001 - a failed Spark task arrives as py4j/Spark errors
        raise PipelineError(f"distributed training failed: {python_error_in(error)}; {SHARED_HINT}") from None


def logged_metrics(log_dir: Path) -> list[tuple[int, dict[str, float]]]:
    """(step, metrics) of each row rank 0's CSVLogger wrote, in order, without the empty cells; the step is the
    row's epoch where it has one (as `pipeline.training.process.EpochMLFlowLogger` logs on one machine)."""
    frame = pd.read_csv(log_dir / METRICS_FILE)
    rows = []
    for _, row in frame.iterrows():
        values = {key: float(value) for key, value in row.items() if key != "step" and pd.notna(value)}
        if values:
            rows.append((int(values["epoch"]) if "epoch" in values else int(row["step"]), values))
    return rows
