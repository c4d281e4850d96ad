"""What the step serves: the fine-tuned transformer alone, or its blend with the TF-IDF baseline.

The two make different mistakes (a bag of words reads every word of a long review; the transformer reads
word order in the tokens it keeps), so a weighted average of their positive-class probabilities often beats
both. The weight is chosen on the validation split alone, never on test: the weight with the best
validation macro-F1 (the metric training monitors), ties to the lower validation log-loss. `serve=auto` serves
the blend only when it beats the transformer alone on validation.
"""

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, log_loss

from pipeline.data import LABELS
from pipeline.scoring import blend

WEIGHTS = tuple(round(step / 20, 2) for step in range(21))  # the transformer's share, 0.0 (baseline) to 1.0


@dataclass(frozen=True)
class ServingChoice:
    served: str  # "transformer" or "blend"
    weight: float  # the transformer's share of the served probability; 1.0 when it is served alone
    reason: str

    def positive(self, transformer_positive: np.ndarray, baseline_positive: np.ndarray) -> np.ndarray:
        return blend(transformer_positive, baseline_positive, self.weight)


def labels_of(positive: np.ndarray) -> np.ndarray:
    return np.where(positive >= 0.5, LABELS[1], LABELS[0])


def scores(truth, positive: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 of positive-class probabilities (threshold 0.5), as the run logs them for test."""
    predicted = labels_of(positive)
    return {"accuracy": float(accuracy_score(truth, predicted)),
            "macro_f1": float(f1_score(truth, predicted, average="macro", labels=list(LABELS)))}


def choose(serve: str, valid_truth, transformer_positive: np.ndarray, baseline_positive: np.ndarray) -> ServingChoice:
    """The served model for `serve` (`auto`, `transformer` or `blend`: `FineTuning.serve`), from the validation split's probabilities."""
    if serve == "transformer":
        return ServingChoice("transformer", 1.0, "serve=transformer")
    is_positive = np.asarray(valid_truth) == LABELS[1]

    def validation_rank(weight: float) -> tuple[float, float]:
        positive = blend(transformer_positive, baseline_positive, weight)
        return scores(valid_truth, positive)["macro_f1"], -float(log_loss(is_positive, positive, labels=[False, True]))

    weight = max(WEIGHTS, key=validation_rank)
    blended, alone = validation_rank(weight)[0], validation_rank(1.0)[0]
    versus = f"validation macro-F1 {blended:.4f} at transformer weight {weight:.2f}, transformer alone {alone:.4f}"
    if serve == "blend":
        return ServingChoice("blend", weight, f"serve=blend ({versus})")
    if blended > alone:
        return ServingChoice("blend", weight, f"the blend beats the transformer alone on validation ({versus})")
    return ServingChoice("transformer", 1.0, f"the blend does not beat the transformer alone on validation ({versus})")
