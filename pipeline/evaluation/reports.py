"""Run artifacts a person looks at: training curves, the test confusion matrix and classification report."""

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and clusters
import matplotlib.pyplot as plt
import mlflow
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import classification_report

from pipeline.contract import TEST_METRICS
from pipeline.data.reviews import LABELS

CURVES = {"loss": ("train_loss", "val_loss"), "accuracy": ("train_accuracy", "val_accuracy"),
          "macro-F1": ("train_macro_f1", "val_macro_f1")}


def log_training_curves(run_id: str) -> None:
    """Per-epoch train and validation curves, read back from the run's metric history."""
    client = mlflow.MlflowClient()
    figure, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.2), constrained_layout=True)
    for axis, (title, names) in zip(axes, CURVES.items()):
        for name in names:
            points = epoch_points(client, run_id, name)
            if points:
                axis.plot(*zip(*points), marker="o", label=name)
        axis.set(title=title, xlabel="epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.legend()
    mlflow.log_figure(figure, "reports/training_curves.png")
    plt.close(figure)


def epoch_points(client: mlflow.MlflowClient, run_id: str, name: str) -> list[tuple[int, float]]:
    """(epoch, value) of each logged value of metric `name`, epochs counted from 1: per-epoch metrics are logged
    at step = epoch (`pipeline.training.process.EpochMLFlowLogger`); a resumed run's history starts where it resumed."""
    return sorted((point.step + 1, point.value) for point in client.get_metric_history(run_id, name))


def log_test_report(confusion: torch.Tensor) -> None:
    """Confusion matrix (PNG and JSON) and scikit-learn's classification report of the test split."""
    matrix = confusion.numpy().astype(int)
    # Rebuild the label pairs the matrix counts, so scikit-learn computes the report.
    truth = np.repeat(np.repeat(np.arange(len(LABELS)), len(LABELS)), matrix.flatten())
    predicted = np.repeat(np.tile(np.arange(len(LABELS)), len(LABELS)), matrix.flatten())
    report = classification_report(truth, predicted, labels=list(range(len(LABELS))), target_names=LABELS, digits=4,
                                   zero_division=0)
    mlflow.log_text(report, "reports/classification_report.txt")
    mlflow.log_dict({"labels": list(LABELS), "rows_true_columns_predicted": matrix.tolist()}, "reports/confusion_matrix.json")

    figure, axis = plt.subplots(figsize=(4, 3.6), constrained_layout=True)
    axis.imshow(matrix, cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        axis.text(column, row, str(count), ha="center", va="center",
                  color="white" if count > matrix.max() / 2 else "black")
    axis.set(xticks=range(len(LABELS)), yticks=range(len(LABELS)), xticklabels=LABELS, yticklabels=LABELS,
             xlabel="predicted", ylabel="true", title="test confusion matrix")
    mlflow.log_figure(figure, "reports/confusion_matrix.png")
    plt.close(figure)


def log_model_vs_baseline(test, choice, baseline_fit_seconds: float) -> None:
    """`reports/model_vs_baseline.md` (and `.json`): the test scores (`pipeline.evaluation.comparison.TestScores`) of the
    fine-tuned transformer, the TF-IDF baseline and the served model (`choice`: a
    `pipeline.evaluation.serving_choice.ServingChoice`), and why it is served."""
    rows = {name: {part: getattr(test, part)[name] for part in ("transformer", "baseline", "served")}
            for name in TEST_METRICS}
    table = ["| test metric | fine-tuned transformer | TF-IDF + logistic regression | served model | lift of the served model |",
             "|---|---|---|---|---|"]
    table += [f"| {name} | {row['transformer']:.4f} | {row['baseline']:.4f} | {row['served']:.4f} | {row['served'] - row['baseline']:+.4f} |"
              for name, row in rows.items()]
    table += ["", f"Served: the {choice.served} (transformer weight {choice.weight:.2f}): {choice.reason}."]
    mlflow.log_text("\n".join(table) + "\n", "reports/model_vs_baseline.md")
    mlflow.log_dict(rows | {"served_model": choice.served, "blend_weight": choice.weight, "reason": choice.reason,
                            "baseline_fit_seconds": baseline_fit_seconds}, "reports/model_vs_baseline.json")
