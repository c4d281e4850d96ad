"""The Lightning side of one fine-tuning configuration: its Trainer, and what each training process runs when
Spark's TorchDistributor spreads training over several machines (`pipeline.multinode` runs a copy of this file
from the folder the machines share: `python training.py <job.json>`)."""

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # a training process: the copied `pipeline` package is this file's folder
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger
from transformers import AutoTokenizer

from pipeline.classifier import SentimentClassifier, load_pretrained
from pipeline.datamodule import ReviewsDataModule
from pipeline.hardware import Hardware, choose_hardware
from pipeline.multinode import OUTCOME_FILE, Outcome
from pipeline.parameters import FineTuning
from pipeline.strategies import strategy_callbacks

MONITOR = "val_macro_f1"


class EpochMLFlowLogger(MLFlowLogger):
    """Lightning's MLflow logger, with each per-epoch value at step = its epoch (from 0) instead of the global
    batch count, so curves and resumed runs need no join: Lightning puts `epoch` in every call it makes for
    `self.log` values. Calls without it (the learning-rate monitor's) keep their global step."""

    def log_metrics(self, metrics, step=None):
        epoch = metrics.get("epoch")
        super().log_metrics(metrics, step=int(epoch) if epoch is not None else step)


def reviews_datamodule(config: FineTuning, data_dir: Path, tokenizer, hardware: Hardware | None) -> ReviewsDataModule:
    """The run's data module; `hardware` sets its loaders (None: a process that only prepares the tokens)."""
    loading = (hardware.num_workers, hardware.pin_memory, hardware.pad_to_multiple_of) if hardware else (0, False, None)
    workers, pin_memory, pad_to_multiple_of = loading
    return ReviewsDataModule(data_dir, tokenizer, config.tokenization(), config.batch_size, workers, pin_memory,
                             Path(config.cache_dir).expanduser(), pad_to_multiple_of)


def train(config: FineTuning, hardware: Hardware, datamodule: ReviewsDataModule, checkpoints: Path, logger: Logger, root_dir: str,
          resume_from: str | None, num_nodes: int = 1) -> tuple[Outcome, SentimentClassifier]:
    """Fit the configuration (from `resume_from` when given), test its best epoch; what came out, and the model."""
    model = SentimentClassifier(config.foundation_model, config.learning_rate, compile=hardware.compile)
    best = ModelCheckpoint(dirpath=checkpoints, filename="best-{epoch}", monitor=MONITOR, mode="max", save_top_k=1, save_last=True)
    trainer = L.Trainer(
        max_epochs=config.epochs,
        logger=logger,
        callbacks=[best, EarlyStopping(monitor=MONITOR, mode="max", patience=config.patience),
                   LearningRateMonitor(logging_interval="epoch"),
                   *strategy_callbacks(config.fine_tuning_strategy, config.unfreeze_epoch)],
        gradient_clip_val=1.0,
        default_root_dir=root_dir,
        enable_model_summary=False,
        num_nodes=num_nodes,
        **hardware.trainer_flags(),
    )
    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
    fit_seconds = time.perf_counter() - started
    trainer.test(model, datamodule=datamodule, ckpt_path="best")  # test metrics come from the best epoch
    outcome = Outcome(best_model_path=best.best_model_path, best_model_score=float(best.best_model_score),
                      confusion=model.test_confusion_matrix.tolist(),
                      resolved={"resolved_accelerator": hardware.accelerator, "resolved_devices": hardware.devices,
                                "resolved_num_nodes": trainer.num_nodes, "resolved_precision": hardware.precision,
                                "resolved_strategy": hardware.strategy, "resolved_compile": hardware.compile},
                      train_batches_per_epoch=int(trainer.num_training_batches), fit_seconds=fit_seconds)
    return outcome, model


def train_process(params: dict, data_dir: str, checkpoints: str, resume_from: str | None, log_dir: str, world_size: int) -> Outcome:
    """One of `world_size` training processes (TorchDistributor sets RANK, WORLD_SIZE and the rendezvous): one
    device each, `num_nodes=world_size`, the same `pipeline.hardware` choices on every process. The data and the
    tokens are where the driver put them; global rank 0 writes the metrics to `log_dir` (CSV)."""
    config = FineTuning(**params)
    hardware = dataclasses.replace(choose_hardware(config.accelerator, 1, config.precision, config.compile), strategy="ddp")
    if hardware.tf32:
        torch.set_float32_matmul_precision("high")
    L.seed_everything(config.seed, workers=True, verbose=False)
    tokenizer = load_pretrained(AutoTokenizer, config.foundation_model)
    datamodule = reviews_datamodule(config, Path(data_dir), tokenizer, hardware)
    outcome, _ = train(config, hardware, datamodule, Path(checkpoints), CSVLogger(log_dir, name="", version=""), log_dir,
                       resume_from, num_nodes=world_size)
    return outcome


if __name__ == "__main__":
    job = json.loads(Path(sys.argv[1]).read_text())
    outcome = train_process(**job)
    if int(os.environ.get("RANK", "0")) == 0:
        Path(job["log_dir"], OUTCOME_FILE).write_text(json.dumps(dataclasses.asdict(outcome)))
