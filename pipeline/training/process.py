"""A training process: one `TrainingJob` fitted by Lightning, then tested at its best epoch.

Started as `python pipeline/training/process.py <job.json>` by either launcher (`pipeline.training.launcher`): on one machine, where
Lightning's DDP launcher starts it again for each further device, and on each process Spark's TorchDistributor
starts across several machines. Global rank 0 writes the `Outcome`, or its one line of error, into the job's `log_dir`.
Once fitting has ended, rank 0 records it beside the checkpoints (FITTED_FILE): a rerun of the same job after an
interruption later on (in the test, the evaluation, the model's logging) tests the same best checkpoint and trains
nothing again. Resuming from `last.ckpt` alone would not do: Lightning trains the last epoch again from it.
"""

import ctypes
import dataclasses
import json
import os
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path

if __name__ == "__main__":  # a training process: the folder that holds the `pipeline` package this file belongs to
    sys.path[0] = str(Path(__file__).resolve().parents[2])

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger

from pipeline.training.classifier import SentimentClassifier, load_tokenizer
from pipeline.contract import MONITOR
from pipeline.training.datamodule import ReviewsDataModule
from pipeline.training.epoch_seed import EpochSeed
from pipeline.errors import PipelineError, first_line, without_credentials
from pipeline.training.hardware import training_process_hardware
from pipeline.logs import LOGGER, configure as configure_logs
from pipeline.training.progress import progress_callbacks
from pipeline.training.strategies import strategy_callbacks
from pipeline.training.job import ERROR_FILE, OUTCOME_FILE, Outcome, TrainingJob

FITTED_FILE = "fitted.json"  # in the job's checkpoint folder: what the finished fit left for its test and outcome

class EpochMLFlowLogger(MLFlowLogger):
    """Lightning's MLflow logger, with each per-epoch value at step = its epoch (from 0) instead of the global
    batch count, so curves and resumed runs need no join: Lightning puts `epoch` in every call it makes for
    `self.log` values. Calls without it (the learning-rate monitor's) keep their global step. It never ends the
    run: the step that owns the run still logs the model, and ends it."""

    def log_metrics(self, metrics, step=None):
        epoch = metrics.get("epoch")
        super().log_metrics(metrics, step=int(epoch) if epoch is not None else step)

    def finalize(self, status: str = "success") -> None:
        """Nothing to close: Lightning's own would mark the step's run FINISHED before the model is logged."""


def job_logger(job: TrainingJob) -> Logger:
    if job.mlflow_run_id:  # the launcher puts the step's tracking URI in the environment, its credentials too
        return EpochMLFlowLogger(run_id=job.mlflow_run_id, tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    return CSVLogger(job.log_dir, name="", version="")


def train(job: TrainingJob) -> Outcome | None:
    """Fit the configuration (from `resume_from` when given), test its best epoch; global rank 0's outcome."""
    config = job.config
    hardware = training_process_hardware(config, job.world_size)
    if hardware.tf32:
        torch.set_float32_matmul_precision("high")  # TF32 tensor cores for fp32 matmuls (Ampere and later)
    L.seed_everything(config.seed, workers=True, verbose=False)
    tokenizer = load_tokenizer(config.foundation_model)
    datamodule = ReviewsDataModule.for_config(config, Path(job.data_dir), tokenizer, hardware)
    model = SentimentClassifier(config.foundation_model, config.learning_rate, config.weight_decay, compile=hardware.compile,
                                pad_token_id=tokenizer.pad_token_id)
    interactive = sys.stderr.isatty()  # Lightning's bar where a terminal shows it, steady lines in a log
    best = ModelCheckpoint(dirpath=job.checkpoints, filename="best-{epoch}", monitor=MONITOR, mode="max", save_top_k=1, save_last=True)
    trainer = L.Trainer(
        max_epochs=config.epochs,
        logger=job_logger(job),
        callbacks=[best, EarlyStopping(monitor=MONITOR, mode="max", patience=config.patience),
                   LearningRateMonitor(logging_interval="epoch"), EpochSeed(config.seed),
                   *strategy_callbacks(config.fine_tuning_strategy, config.unfreeze_epoch), *progress_callbacks(interactive)],
        enable_progress_bar=interactive,
        gradient_clip_val=1.0,
        log_every_n_steps=0,  # every metric is an epoch's (`on_step=False`): no step logging, nor its warning on short epochs
        default_root_dir=job.log_dir,
        enable_model_summary=False,
        num_nodes=job.world_size,
        **hardware.trainer_flags(),
    )
    fitted = Path(job.checkpoints) / FITTED_FILE
    if trainer.is_global_zero:
        machines = f" on each of {job.world_size} machines" if job.world_size > 1 else ""
        LOGGER.info(f"training on {hardware.devices} {hardware.accelerator} device(s){machines}, precision {hardware.precision}"
                    + (", compiled" if hardware.compile else "") +
                    ("; the fit had ended before an interruption: testing its best epoch" if fitted.exists() else
                     f"; resuming from {Path(job.resume_from).name}" if job.resume_from else ""))
    if fitted.exists():
        fit = json.loads(fitted.read_text())
    else:
        started = time.perf_counter()
        trainer.fit(model, datamodule=datamodule, ckpt_path=job.resume_from)
        fit = {"best_model_path": best.best_model_path, "best_model_score": float(best.best_model_score),
               "fit_seconds": time.perf_counter() - started, "train_batches_per_epoch": int(trainer.num_training_batches)}
        if trainer.is_global_zero:
            fitted.with_suffix(".writing").write_text(json.dumps(fit))
            fitted.with_suffix(".writing").replace(fitted)
    # Test metrics come from the best epoch; the step reports them (Lightning's table would repeat them).
    trainer.test(model, datamodule=datamodule, ckpt_path=fit["best_model_path"], verbose=False)
    if not trainer.is_global_zero:
        return None
    return Outcome(best_model_path=fit["best_model_path"], best_model_score=fit["best_model_score"],
                   confusion=model.test_confusion_matrix.tolist(),
                   resolved={"resolved_accelerator": hardware.accelerator, "resolved_devices": hardware.devices,
                             "resolved_num_nodes": trainer.num_nodes, "resolved_precision": hardware.precision,
                             "resolved_strategy": hardware.strategy, "resolved_compile": hardware.compile},
                   train_batches_per_epoch=fit["train_batches_per_epoch"], fit_seconds=fit["fit_seconds"])


def from_mlflow_client(error: Exception) -> bool:
    """An MlflowException (the tracking store failed), told by its class name: processes that never talk to MLflow
    (several machines) never import it."""
    return any(cls.__name__ == "MlflowException" and cls.__module__.startswith("mlflow") for cls in type(error).__mro__)


def die_with_launcher() -> None:
    """On Linux, this process gets SIGKILL when the one that started it dies: a killed step leaves no training
    behind that would go on writing the checkpoints its rerun resumes from."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def main(job_file: str) -> int:
    """Run the job; rank 0 writes the outcome, or the one line that says why there is none."""
    die_with_launcher()
    configure_logs()
    # Lightning 2.6.6's loaders (lightning/pytorch/utilities/_pytree.py) build torch's LeafSpec, which torch (2.13 here)
    # deprecates: a FutureWarning per fit about Lightning's code, not this project's, and nothing a user can change.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning,
                            module=r"lightning\.pytorch\.utilities\._pytree")
    job = TrainingJob.read(Path(job_file))
    try:
        outcome = train(job)
    except Exception as error:  # noqa: BLE001 - the step repeats this line; a bug's traceback still goes to stderr
        if not isinstance(error, PipelineError) and not from_mlflow_client(error):  # a bug, not bad input or a lost store
            sys.stderr.write(without_credentials(traceback.format_exc()))
        Path(job.log_dir, ERROR_FILE).write_text(first_line(error))
        return 1
    if outcome is not None:
        Path(job.log_dir, OUTCOME_FILE).write_text(json.dumps(dataclasses.asdict(outcome)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
