"""Which precisions the served transformer may use on a CPU, judged on the validation split when the model is logged.

int8 (dynamic quantization) and bf16 are faster on CPUs that have the instructions for them, bf16 on GPUs with bf16
tensor cores, and may change labels. Each precision this machine runs at speed (`pipeline.serving.inference.cpu_precisions`) scores the
validation split; those that change at most `SAFE_CHANGE` of fp32's labels are recorded in the model as safe, and
at load the served model picks the fastest safe one its own CPU runs (`serve_precision=auto`). Changed labels bound
the accuracy a precision can lose whichever of them were right; comparing accuracies alone lets changes that cancel
out pass (BENCHMARKS.md, "Quality of what is served"). The step's served test metrics are those of what this
machine serves, so the quality gate judges what is served.
"""

from dataclasses import dataclass

import numpy as np

from pipeline.data.reviews import LABELS
from pipeline.errors import PipelineError
from pipeline.evaluation.metrics import label_scores
from pipeline.serving.inference import class_probabilities, in_precision, labels_of, precisions_at_speed, served_precision

SAFE_CHANGE = 0.005  # share of fp32's validation labels a precision may change and still be served


@dataclass(frozen=True)
class PrecisionCheck:
    asked: str  # FineTuning.serve_precision
    valid_accuracy: dict[str, float]  # of each precision checked; fp32 always
    valid_changed: dict[str, float]  # share of validation labels that differ from fp32's (fp32: 0)
    served: str  # what this machine serves

    @property
    def safe(self) -> list[str]:
        return safe_precisions(self.valid_changed)

    def model_config(self) -> dict:
        """What the served model reads at load (`sentiment_model.SentimentModel.load_context`), and the figures behind it."""
        return {"serve_precision": self.asked, "safe_precisions": self.safe, "precision_valid_accuracy": self.valid_accuracy,
                "precision_valid_changed": self.valid_changed}


def safe_precisions(valid_changed: dict[str, float]) -> list[str]:
    """The precisions that change at most `SAFE_CHANGE` of fp32's validation labels (fp32 among them)."""
    return [name for name, changed in valid_changed.items() if changed <= SAFE_CHANGE]


def refuse_unchecked_precision(asked: str, device: str, bf16: bool) -> None:
    """A one-line error, before training, for a `serve_precision` this machine cannot check on validation (`bf16`:
    whether `device` has native bf16)."""
    if asked in ("auto", "fp32") or asked in precisions_at_speed(device, bf16):
        return
    if device != "cpu":
        raise PipelineError(f"serve_precision={asked!r}: this {device} device cannot check it (int8 only on the CPU, bf16 on "
                            f"a CPU or a GPU with native bfloat16); use -P accelerator=cpu, or serve_precision=auto or fp32")
    if asked == "bf16":
        raise PipelineError(f"serve_precision={asked!r}: this CPU has no native bfloat16 (AVX512-BF16 or AMX) to check it "
                            f"on; use serve_precision=auto, fp32 or int8")


def check_precisions(asked: str, network, tokenizer, tokenization: dict, valid_texts: list[str], truth,
                     fp32_valid: np.ndarray, device: str, bf16: bool) -> tuple[PrecisionCheck, object, np.ndarray]:
    """Score validation in each precision `device` runs at speed (`precisions_at_speed`; fp32's positive
    probabilities `fp32_valid` given) and choose what this machine serves: the check, the served copy of `network`
    (fp32: `network` itself) and its validation probabilities."""
    candidates = precisions_at_speed(device, bf16)
    networks = {precision: in_precision(network, precision) for precision in candidates}
    valid = {precision: fp32_valid if precision == "fp32" else class_probabilities(
        tokenizer, networks[precision], valid_texts, tokenization["max_length"], tokenization["truncation"])[:, 1]
        for precision in candidates}
    labels = {precision: labels_of(positive, LABELS) for precision, positive in valid.items()}
    accuracy = {precision: label_scores(truth, predicted)["accuracy"] for precision, predicted in labels.items()}
    changed = {precision: float(np.mean(predicted != labels["fp32"])) for precision, predicted in labels.items()}
    served = served_precision(asked, safe_precisions(changed), bf16, device)
    return PrecisionCheck(asked, accuracy, changed, served), networks[served], valid[served]
