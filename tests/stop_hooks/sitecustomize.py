"""Test-only, put on PYTHONPATH by the tests that interrupt a step at a known point (`PIPELINE_TEST_STOP_AT`):

- `first_checkpoint`: a training process (`pipeline/training/process.py`) stops right after it saved its first `last.ckpt`;
- `tested`: a training process stops right after its test on the best checkpoint (training and test done, the
  step's evaluation and model logging not yet);
- `alias`: `register_model` stops right before it moves an alias.

The process writes the file PIPELINE_TEST_STOPPED names, then stops itself (SIGSTOP); the test acts (kills it,
or kills the tracking server and lets it go on with SIGCONT) at that point instead of guessing it with a clock."""

import os
import signal
import sys
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

if MARKER and POINT == "tested" and ARGV0.parts[-2:] == ("training", "process.py"):
    from lightning.pytorch import Trainer

    test = Trainer.test

    def test_then_stop(self, *args, **kwargs):
        result = test(self, *args, **kwargs)
        if self.is_global_zero:
            stop_here("tested")
        return result

    Trainer.test = test_then_stop

if MARKER and POINT == "alias" and SCRIPT in ("register_model.py", "-m"):
    from mlflow import MlflowClient

    set_alias = MlflowClient.set_registered_model_alias

    def stop_then_set(self, *args, **kwargs):
        stop_here("alias")
        return set_alias(self, *args, **kwargs)

    MlflowClient.set_registered_model_alias = stop_then_set
