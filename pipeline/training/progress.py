"""Training progress where no terminal shows a bar: a log file, CI, a Databricks job's driver log.

Lightning's bar redraws one line in place; written to a pipe it is buffered and shows up, if at all, when the epoch
ends. `SteadyProgress` prints a plain line at a steady pace instead (and one at each epoch's end), flushed at once.
"""

import sys
import time

from lightning.pytorch.callbacks import Callback

PROGRESS_SECONDS = 30.0  # between two lines within an epoch


class SteadyProgress(Callback):
    def __init__(self, every_seconds: float = PROGRESS_SECONDS, clock=time.monotonic, stream=None):
        self.every, self.clock, self.stream = every_seconds, clock, stream
        self.epoch_started = self.last_line = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epoch_started = self.last_line = self.clock()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = self.clock()
        if trainer.is_global_zero and now - self.last_line >= self.every:
            self.last_line = now
            self.write(trainer, f"{batch_idx + 1}/{trainer.num_training_batches} batches, "
                                f"{(batch_idx + 1) / max(now - self.epoch_started, 1e-9):.2f} batches/s")

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            scores = ", ".join(f"{name} {float(value):.4f}" for name, value in sorted(trainer.callback_metrics.items())
                               if name.startswith("val_"))
            self.write(trainer, f"done in {self.clock() - self.epoch_started:.0f} s; {scores}")

    def write(self, trainer, text: str) -> None:
        print(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: {text}", file=self.stream or sys.stderr, flush=True)


def progress_callbacks(interactive: bool) -> list[Callback]:
    """No extra callback where Lightning's own bar is seen (`interactive`: a terminal), else `SteadyProgress`."""
    return [] if interactive else [SteadyProgress()]
