"""What the step serves: the fine-tuned transformer alone, or its blend with the TF-IDF baseline.

The two make different mistakes (a bag of words reads every word of a long review; the transformer reads
word order in the tokens it keeps), so a weighted average of their positive-class probabilities often beats
both. The weight is chosen on the validation split alone, never on test: the weight with the best
validation macro-F1 (the metric training monitors), ties to the lower validation log-loss. `serve=auto` serves
the blend only when it beats the transformer alone on validation, judged by cross-validation within the split
(each fold blended with a weight chosen on the others), since a weight picked and scored on the same few hundred
reviews flatters the blend.
"""

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import log_loss

from pipeline.data.reviews import LABELS
from pipeline.evaluation.metrics import label_scores
from pipeline.serving.inference import blend, labels_of

WEIGHTS = tuple(round(step / 20, 2) for step in range(21))  # the transformer's share, 0.0 (baseline) to 1.0
FOLDS = 5  # `auto` judges the blend by its cross-validated score on the validation split


@dataclass(frozen=True)
class ServingChoice:
    served: str  # "transformer" or "blend"
    weight: float  # the transformer's share of the served probability; 1.0 when it is served alone
    reason: str

    def positive(self, transformer_positive: np.ndarray, baseline_positive: np.ndarray) -> np.ndarray:
        return blend(transformer_positive, baseline_positive, self.weight)


def scores(truth, positive: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 of positive-class probabilities (threshold 0.5), as the run logs them for test."""
    return label_scores(truth, labels_of(positive, LABELS))


def best_weight(truth: np.ndarray, transformer_positive: np.ndarray, baseline_positive: np.ndarray) -> float:
    """The weight with the best macro-F1 on these reviews, ties to the lower log-loss."""
    is_positive = truth == LABELS[1]

    def rank(weight: float) -> tuple[float, float]:
        positive = blend(transformer_positive, baseline_positive, weight)
        return scores(truth, positive)["macro_f1"], -float(log_loss(is_positive, positive, labels=[False, True]))

    return max(WEIGHTS, key=rank)


def cross_validated_blend(truth: np.ndarray, transformer_positive: np.ndarray, baseline_positive: np.ndarray) -> np.ndarray:
    """Each validation review's blended probability with a weight chosen on the other folds: an estimate of the
    blend on unseen reviews, free of the optimism of choosing the weight on the reviews it is scored on."""
    folds = np.array_split(np.random.default_rng(0).permutation(len(truth)), min(FOLDS, len(truth)))
    blended = np.empty(len(truth))
    for fold in folds:
        rest = np.setdiff1d(np.arange(len(truth)), fold)
        weight = best_weight(truth[rest], transformer_positive[rest], baseline_positive[rest])
        blended[fold] = blend(transformer_positive[fold], baseline_positive[fold], weight)
    return blended


def choose(serve: str, valid_truth, transformer_positive: np.ndarray, baseline_positive: np.ndarray) -> ServingChoice:
    """The served model for `serve` (`auto`, `transformer` or `blend`: `FineTuning.serve`), from the validation
    split's probabilities. The weight is the best on the whole validation split; `auto` serves the blend only
    when its cross-validated macro-F1 there beats the transformer alone's."""
    if serve == "transformer":
        return ServingChoice("transformer", 1.0, "serve=transformer")
    truth = np.asarray(valid_truth)
    weight = best_weight(truth, transformer_positive, baseline_positive)
    blended = scores(truth, cross_validated_blend(truth, transformer_positive, baseline_positive))["macro_f1"]
    alone = scores(truth, transformer_positive)["macro_f1"]
    versus = (f"transformer weight {weight:.2f}; validation macro-F1 {blended:.4f} cross-validated ({FOLDS} folds), "
              f"transformer alone {alone:.4f}")
    if serve == "blend":
        return ServingChoice("blend", weight, f"serve=blend ({versus})")
    if blended > alone:
        return ServingChoice("blend", weight, f"the blend beats the transformer alone on validation ({versus})")
    return ServingChoice("transformer", 1.0, f"the blend does not beat the transformer alone on validation ({versus})")
