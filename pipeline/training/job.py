"""What the step and its training processes say to each other: the `TrainingJob` one process reads as JSON, and
the `Outcome` (or the one line of error) global rank 0 writes back into the job's `log_dir`.

Training processes import this; it imports nothing that talks to MLflow.
"""

import dataclasses
import json
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.parameters import FineTuning

OUTCOME_FILE, ERROR_FILE, METRICS_FILE = "outcome.json", "error.txt", "metrics.csv"


@dataclasses.dataclass(frozen=True)
class TrainingJob:
    """One fine-tuning configuration and where its files are. A launcher places it (`log_dir`, `world_size`, and
    with several machines every path in a folder all nodes read: `pipeline.training.multinode`)."""

    config: FineTuning
    data_dir: str
    checkpoints: str
    resume_from: str | None  # an interrupted run's last checkpoint
    mlflow_run_id: str | None  # log live into the step's run (one machine: it has the credentials); None: CSV in log_dir
    log_dir: str = ""  # the outcome (and without a run id the metrics), set by the launcher
    world_size: int = 1  # processes Spark starts, one device each; 1: one process that starts one per device itself

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(dataclasses.asdict(self)))
        return path

    @classmethod
    def read(cls, path: Path) -> "TrainingJob":
        fields = json.loads(Path(path).read_text())
        return cls(**fields | {"config": FineTuning(**fields["config"])})


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What training hands back to the step (global rank 0's view: the best checkpoint, the test counts)."""

    best_model_path: str
    best_model_score: float
    confusion: list[list[int]]
    resolved: dict
    train_batches_per_epoch: int
    fit_seconds: float  # trainer.fit alone: the training and validation epochs, without start-up and testing
    metric_rows: list = dataclasses.field(default_factory=list)  # (step, metrics) the step still has to log


def read_outcome(job: TrainingJob, returncode: int) -> Outcome:
    """Rank 0's outcome, or a PipelineError with the training process's own one-line reason."""
    log_dir = Path(job.log_dir)
    if (log_dir / ERROR_FILE).is_file():
        raise PipelineError(f"training failed: {(log_dir / ERROR_FILE).read_text().strip()}")
    if returncode != 0 or not (log_dir / OUTCOME_FILE).is_file():
        raise PipelineError(f"training ended without a result (exit code {returncode}); its output above says why")
    return Outcome(**json.loads((log_dir / OUTCOME_FILE).read_text()))
