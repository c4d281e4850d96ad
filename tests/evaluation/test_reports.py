"""pipeline.evaluation.reports: the training curves put each value at the epoch that logged it, also in a resumed run."""

import mlflow

from pipeline.evaluation.reports import epoch_points
from pipeline.training.process import EpochMLFlowLogger


def test_a_resumed_run_is_plotted_at_the_epochs_it_trained(tracking):
    with mlflow.start_run() as run:
        pass
    logger = EpochMLFlowLogger(run_id=run.info.run_id, tracking_uri=tracking)
    # As Lightning logs a run that resumed after 2 of 5 epochs: `epoch` (counted from 0) in each call, at the global step.
    for epoch, value in ((2, 0.7), (3, 0.8), (4, 0.9)):
        logger.log_metrics({"train_macro_f1": value - 0.1, "epoch": epoch}, step=10 * (epoch + 1))
        logger.log_metrics({"val_macro_f1": value, "epoch": epoch}, step=10 * (epoch + 1))
    logger.log_metrics({"test_macro_f1": 0.85, "epoch": 5}, step=50)  # the test epoch, at the last epoch's global step
    logger.log_metrics({"lr-AdamW": 1e-4}, step=50)  # the learning-rate monitor's calls carry no epoch

    client = mlflow.MlflowClient()
    assert epoch_points(client, run.info.run_id, "val_macro_f1") == [(3, 0.7), (4, 0.8), (5, 0.9)]
    assert [epoch for epoch, _ in epoch_points(client, run.info.run_id, "train_macro_f1")] == [3, 4, 5]
    assert [point.step for point in client.get_metric_history(run.info.run_id, "val_macro_f1")] == [2, 3, 4]
    assert [point.step for point in client.get_metric_history(run.info.run_id, "lr-AdamW")] == [50]
