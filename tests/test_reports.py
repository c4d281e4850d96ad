"""pipeline.reports: the training curves put each value at the epoch that logged it, also in a resumed run."""

import time

import mlflow
from lightning.pytorch.loggers import MLFlowLogger

from pipeline.reports import epoch_points


def test_a_resumed_run_is_plotted_at_the_epochs_it_trained(tracking):
    with mlflow.start_run() as run:
        pass
    logger = MLFlowLogger(run_id=run.info.run_id, tracking_uri=tracking)
    # As Lightning logs a run that resumed after 2 of 5 epochs: `epoch` (counted from 0) in each call, at the global step.
    for epoch, value in ((2, 0.7), (3, 0.8), (4, 0.9)):
        logger.log_metrics({"train_macro_f1": value - 0.1, "epoch": epoch}, step=10 * (epoch + 1))
        logger.log_metrics({"val_macro_f1": value, "epoch": epoch}, step=10 * (epoch + 1))
    time.sleep(0.01)  # a later call at the last epoch's step under another epoch leaves that epoch's points alone
    logger.log_metrics({"test_macro_f1": 0.85, "epoch": 5}, step=50)

    client = mlflow.MlflowClient()
    assert epoch_points(client, run.info.run_id, "val_macro_f1") == [(3, 0.7), (4, 0.8), (5, 0.9)]
    assert [epoch for epoch, _ in epoch_points(client, run.info.run_id, "train_macro_f1")] == [3, 4, 5]
