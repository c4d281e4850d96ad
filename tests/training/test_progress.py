"""pipeline/training/progress.py: plain progress lines at a steady pace where no terminal shows Lightning's bar."""

import io
from types import SimpleNamespace

from pipeline.training.progress import SteadyProgress, progress_callbacks


def test_a_line_at_a_steady_pace_and_one_at_each_epochs_end():
    now = [100.0]
    stream = io.StringIO()
    progress = SteadyProgress(every_seconds=30, clock=lambda: now[0], stream=stream)
    trainer = SimpleNamespace(is_global_zero=True, sanity_checking=False, current_epoch=0, max_epochs=3, num_training_batches=400,
                              callback_metrics={"val_macro_f1": 0.8123, "val_loss": 0.41, "train_loss": 0.5})
    progress.on_train_epoch_start(trainer, None)
    for batch in range(400):
        now[0] += 0.25  # 4 batches a second: a line every 120 batches
        progress.on_train_batch_end(trainer, None, None, None, batch)
    progress.on_validation_end(trainer, None)
    assert stream.getvalue().splitlines() == ["epoch 1/3: 120/400 batches, 4.00 batches/s", "epoch 1/3: 240/400 batches, 4.00 batches/s",
                                              "epoch 1/3: 360/400 batches, 4.00 batches/s",
                                              "epoch 1/3: done in 100 s; val_loss 0.4100, val_macro_f1 0.8123"]


def test_other_ranks_and_the_sanity_check_print_nothing():
    stream = io.StringIO()
    progress = SteadyProgress(every_seconds=0, stream=stream)
    rank1 = SimpleNamespace(is_global_zero=False, sanity_checking=False, current_epoch=0, max_epochs=1, num_training_batches=1,
                            callback_metrics={})
    progress.on_train_batch_end(rank1, None, None, None, 0)
    progress.on_validation_end(SimpleNamespace(is_global_zero=True, sanity_checking=True), None)
    assert stream.getvalue() == ""


def test_a_terminal_keeps_lightnings_bar():
    assert progress_callbacks(interactive=True) == []
    assert [type(callback) for callback in progress_callbacks(interactive=False)] == [SteadyProgress]
