"""Accuracy and macro-F1 of predicted labels: the one implementation behind the served model's test metrics, the
blend's choice on validation and the quality gate's scoring of a champion (training's own metrics are torchmetrics',
in `pipeline.training.classifier`, and agree: tests/evaluation/test_metrics.py)."""

from sklearn.metrics import accuracy_score, f1_score

from pipeline.data.reviews import LABELS


def label_scores(truth, predicted, counts=None) -> dict[str, float]:
    """`{"accuracy": ..., "macro_f1": ...}`; macro-F1 averages both labels, also one never predicted (its F1 is 0).
    `counts`: how many rows each (truth, predicted) pair stands for (a table's pairs counted where it lies)."""
    return {"accuracy": float(accuracy_score(truth, predicted, sample_weight=counts)),
            "macro_f1": float(f1_score(truth, predicted, average="macro", labels=list(LABELS), zero_division=0,
                                       sample_weight=counts))}


def split_scores(truth, predicted, split: str = "test") -> dict[str, float]:
    """`label_scores` named as the run logs them for a split (`test_accuracy`: `pipeline.contract.TEST_METRICS`)."""
    return {f"{split}_{name}": value for name, value in label_scores(truth, predicted).items()}
