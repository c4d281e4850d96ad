"""The one way the step trains: `launch(job)` runs `pipeline/training/process.py <job.json>` in processes of its own and
hands back one `Outcome`, or raises the one line that says why there is none.

`num_nodes` picks the launcher: on one machine, one child process here (Lightning's DDP launcher starts it again
for each further device), logging live into the step's run; with `num_nodes > 1`, Spark's TorchDistributor across
the cluster (`pipeline.training.multinode`), whose metric rows come back in the outcome for the step to log.
"""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow

from pipeline.on_databricks.cluster import local_path
from pipeline.training.hardware import training_process_hardware
from pipeline.training.multinode import launch_on_spark, refuse_spark_connect
from pipeline.parameters import FineTuning, logged_params
from pipeline.tracking.reuse import run_identity
from pipeline.training.job import Outcome, TrainingJob, read_outcome

TRAINING_SCRIPT = Path(__file__).with_name("process.py")


def refuse_what_cannot_run(config: FineTuning) -> None:
    """Say before any run starts what cannot train: on one machine, a device `config` asks for that is not here
    (several machines' devices are the Spark cluster's, which only its processes see); on several, a Spark Connect
    session (`pipeline.training.multinode.refuse_spark_connect`)."""
    if config.num_nodes == 1:
        training_process_hardware(config, world_size=1)
    else:
        refuse_spark_connect()


def job_for_run(config: FineTuning, data_dir: Path, data_digests: dict[str, str], run_id: str) -> TrainingJob:
    """The job of the step's run: its checkpoints are those of its run identity (`pipeline.tracking.reuse.run_identity`), so it
    resumes from `last.ckpt` where an interrupted run of the same identity left one."""
    identity = run_identity(logged_params(config), data_digests)
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    checkpoints = local_path(config.checkpoint_dir) / key
    resume_from = checkpoints / "last.ckpt"
    return TrainingJob(config=config, data_dir=str(data_dir), checkpoints=str(checkpoints),
                       resume_from=str(resume_from) if resume_from.exists() else None, mlflow_run_id=run_id)


def launch(job: TrainingJob) -> Outcome:
    """Run the job to its end on one machine or several; global rank 0's outcome."""
    if job.config.num_nodes > 1:
        return launch_on_spark(job, str(TRAINING_SCRIPT.relative_to(TRAINING_SCRIPT.parents[1])))  # within `pipeline/`
    return launch_here(job)


def launch_here(job: TrainingJob) -> Outcome:
    """One child process with the step's tracking URI (and its credentials), which dies with the step
    (`pipeline.training.process.die_with_launcher`)."""
    with tempfile.TemporaryDirectory(prefix="training-") as scratch:
        job = dataclasses.replace(job, log_dir=str(Path(scratch) / "logs"), world_size=1)
        Path(job.log_dir).mkdir()
        job_file = job.write(Path(scratch) / "job.json")
        env = os.environ | {"MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
        returncode = subprocess.run([sys.executable, str(TRAINING_SCRIPT), str(job_file)], env=env, check=False).returncode
        return read_outcome(job, returncode)
