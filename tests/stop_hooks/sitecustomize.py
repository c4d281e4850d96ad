"""Test-only, put on PYTHONPATH by the tests that interrupt a step at a known point (`PIPELINE_TEST_STOP_AT`):

- `first_checkpoint`: a training process (`pipeline/training/process.py`) stops right after it saved its first `last.ckpt`;
- `mid_epoch`: a training process stops in its second epoch, after that epoch's first batch (every rank stops);
- `testing`: a training process stops in its test on the best checkpoint, after the first batch;
- `logging`: `fine_tuning_model` stops once MLflow has logged the model, before the step tags its run with it;
- `alias`: `register_model` stops right before it moves an alias;
- `scoring`: `batch_inference` sends itself SIGTERM once Spark has begun writing the output's staging folder.

The process writes the file PIPELINE_TEST_STOPPED names, then stops itself (SIGSTOP); the test acts at that point
instead of guessing it with a clock: kills it, kills the tracking server and lets it go on with SIGCONT, or sends
Ctrl-C and lets it go on once the SIGTERM meant for it waits (`conftest.ctrl_c_while_stopped`)."""

import os
import signal
import sys
import threading
import time
from pathlib import Path

POINT, MARKER = os.environ.get("PIPELINE_TEST_STOP_AT"), os.environ.get("PIPELINE_TEST_STOPPED")
ARGV0 = Path(sys.argv[0]) if sys.argv else Path()
SCRIPT = ARGV0.name


def stop_here(what: str) -> None:
    Path(MARKER).write_text(what)
    os.kill(os.getpid(), signal.SIGSTOP)


if MARKER and POINT == "first_checkpoint" and ARGV0.parts[-2:] == ("training", "process.py"):
    from lightning.pytorch import Trainer

    save_checkpoint = Trainer.save_checkpoint

    def save_then_stop(self, filepath, *args, **kwargs):
        save_checkpoint(self, filepath, *args, **kwargs)
        if Path(filepath).name == "last.ckpt":
            if self.is_global_zero:
                stop_here(str(filepath))
            else:
                os.kill(os.getpid(), signal.SIGSTOP)

    Trainer.save_checkpoint = save_then_stop

if MARKER and POINT == "mid_epoch" and ARGV0.parts[-2:] == ("training", "process.py"):
    from lightning.pytorch import Callback, Trainer

    fit = Trainer.fit

    class StopInSecondEpoch(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == 0:
                if trainer.is_global_zero:
                    stop_here("mid_epoch")
                else:
                    os.kill(os.getpid(), signal.SIGSTOP)

    def fit_stopping(self, *args, **kwargs):
        self.callbacks.append(StopInSecondEpoch())
        return fit(self, *args, **kwargs)

    Trainer.fit = fit_stopping

if MARKER and POINT == "testing" and ARGV0.parts[-2:] == ("training", "process.py"):
    from lightning.pytorch import Callback, Trainer

    test = Trainer.test

    class StopAfterFirstBatch(Callback):
        def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *args):
            if trainer.is_global_zero and batch_idx == 0:
                stop_here("testing")

    def test_stopping(self, *args, **kwargs):
        self.callbacks.append(StopAfterFirstBatch())
        return test(self, *args, **kwargs)

    Trainer.test = test_stopping

if MARKER and POINT == "logging" and SCRIPT in ("fine_tuning_model.py", "-m"):
    import mlflow.pyfunc

    log_model = mlflow.pyfunc.log_model

    def log_then_stop(*args, **kwargs):
        logged = log_model(*args, **kwargs)
        stop_here("logging")
        return logged

    mlflow.pyfunc.log_model = log_then_stop

if MARKER and POINT == "alias" and SCRIPT in ("register_model.py", "-m"):
    from mlflow import MlflowClient

    set_alias = MlflowClient.set_registered_model_alias

    def stop_then_set(self, *args, **kwargs):
        stop_here("alias")
        return set_alias(self, *args, **kwargs)

    MlflowClient.set_registered_model_alias = stop_then_set

if MARKER and POINT == "scoring" and SCRIPT in ("batch_inference.py", "-m"):
    from pyspark.sql.readwriter import DataFrameWriter

    parquet = DataFrameWriter.parquet

    def terminate_once_written(folder: Path) -> None:
        while not folder.exists():  # Spark makes it when its write job starts
            time.sleep(0.01)
        Path(MARKER).write_text("scoring")
        os.kill(os.getpid(), signal.SIGTERM)

    def parquet_interrupted(self, path, *args, **kwargs):
        threading.Thread(target=terminate_once_written, args=(Path(path),), daemon=True).start()
        return parquet(self, path, *args, **kwargs)

    DataFrameWriter.parquet = parquet_interrupted
