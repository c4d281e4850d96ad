"""pipeline/evaluation/metrics.py: one accuracy and macro-F1 for the served model, the blend's choice and the gate, agreeing
with the torchmetrics that training logs (`pipeline.training.classifier.sentiment_metrics`)."""

import numpy as np
import pytest
import torch

from pipeline.training.classifier import sentiment_metrics
from pipeline.data.reviews import LABELS
from pipeline.evaluation.metrics import label_scores, split_scores


@pytest.mark.parametrize("seed", range(5))
def test_the_served_metrics_agree_with_the_training_metrics(seed):
    generator = np.random.default_rng(seed)
    truth, predicted = generator.integers(0, 2, 200), generator.integers(0, 2, 200)
    ours = label_scores(np.array(LABELS)[truth], np.array(LABELS)[predicted])
    theirs = {name.removeprefix("test_"): float(value)
              for name, value in sentiment_metrics("test_")(torch.tensor(predicted), torch.tensor(truth)).items()}
    assert ours == pytest.approx(theirs)


def test_a_label_never_predicted_counts_with_f1_zero():
    """Always "positive" on 3 positives and 1 negative: accuracy 0.75, macro-F1 (0 + 6/7) / 2, not 6/7."""
    scores = split_scores(["positive", "positive", "positive", "negative"], ["positive"] * 4)
    assert scores == pytest.approx({"test_accuracy": 0.75, "test_macro_f1": (0 + 6 / 7) / 2})
