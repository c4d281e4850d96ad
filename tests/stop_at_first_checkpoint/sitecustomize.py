"""Test-only, put on PYTHONPATH by the kill-and-resume tests: a training process (`pipeline/training.py`) stops
itself (SIGSTOP) right after it saved its first `last.ckpt`, and says so in the file PIPELINE_TEST_STOPPED names.
The test then kills it at that known point, one finished epoch in, instead of guessing it with a clock."""

import os
import signal
import sys
from pathlib import Path

if sys.argv and Path(sys.argv[0]).name == "training.py" and os.environ.get("PIPELINE_TEST_STOPPED"):
    from lightning.pytorch import Trainer

    save_checkpoint = Trainer.save_checkpoint

    def save_then_stop(self, filepath, *args, **kwargs):
        save_checkpoint(self, filepath, *args, **kwargs)
        if Path(filepath).name == "last.ckpt":
            if self.is_global_zero:
                Path(os.environ["PIPELINE_TEST_STOPPED"]).write_text(str(filepath))
            os.kill(os.getpid(), signal.SIGSTOP)

    Trainer.save_checkpoint = save_then_stop
