"""The one way the step starts training: `pipeline/training.py <job.json>` in processes of its own.

On one machine it is one child process, which Lightning's DDP launcher starts again for each further device;
with `num_nodes > 1`, Spark's TorchDistributor starts one per device across the cluster (`pipeline.multinode`).
Either way the step waits, and reads back one `Outcome` or the one line that says why there is none.
"""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow

from pipeline.errors import PipelineError
from pipeline.hardware import spark_processes, spark_uses_gpus
from pipeline.multinode import run_on_spark, shared_job
from pipeline.parameters import FineTuning
from pipeline.training import ERROR_FILE, OUTCOME_FILE, Outcome, TrainingJob

TRAINING_SCRIPT = Path(__file__).with_name("training.py")


def training_job(config: FineTuning, data_dir: Path, checkpoints: Path, work: Path, run_id: str) -> TrainingJob:
    """The job for `config`: it resumes from `checkpoints/last.ckpt` where an interrupted run left one. One machine
    logs live into the step's run; several write CSV in the shared folder `work`, which the step then logs."""
    resume_from = checkpoints / "last.ckpt"
    job = TrainingJob(params=dataclasses.asdict(config), data_dir=str(data_dir), checkpoints=str(checkpoints),
                      resume_from=str(resume_from) if resume_from.exists() else None, log_dir=str(work / "logs"),
                      world_size=1, mlflow_run_id=run_id)
    if config.num_nodes == 1:
        return job
    return shared_job(dataclasses.replace(job, world_size=spark_processes(config), mlflow_run_id=None), work)


def launch(job: TrainingJob, work: Path) -> Outcome:
    """Run the job to its end and return global rank 0's outcome."""
    Path(job.log_dir).mkdir(parents=True, exist_ok=True)
    job_file = job.write(work / "job.json")
    config = FineTuning(**job.params)
    if job.world_size == 1:
        # The child logs to the step's run with the step's tracking URI, and dies with the step (`training.main`).
        env = os.environ | {"MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
        returncode = subprocess.run([sys.executable, str(TRAINING_SCRIPT), str(job_file)], env=env, check=False).returncode
    else:
        run_on_spark(job, job_file, spark_uses_gpus(config.accelerator), config.spark_master, work)
        returncode = 0
    return outcome_of(job, returncode)


def outcome_of(job: TrainingJob, returncode: int) -> Outcome:
    """Rank 0's outcome, or a PipelineError with the training process's own one-line reason."""
    log_dir = Path(job.log_dir)
    if (log_dir / ERROR_FILE).is_file():
        raise PipelineError(f"training failed: {(log_dir / ERROR_FILE).read_text().strip()}")
    if returncode != 0 or not (log_dir / OUTCOME_FILE).is_file():
        raise PipelineError(f"training ended without a result (exit code {returncode}); its output above says why")
    return Outcome(**json.loads((log_dir / OUTCOME_FILE).read_text()))
