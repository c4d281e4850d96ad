"""Which precisions the served transformer may use on a CPU, judged on the validation split when the model is logged.

int8 (dynamic quantization) and bf16 are faster on CPUs that have the instructions for them, and may cost
accuracy. Each precision this machine runs at speed (`pipeline.serving.inference.cpu_precisions`) scores the
validation split; those within `SAFE_DROP` of fp32's accuracy are recorded in the model as safe, and at load
the served model picks the fastest safe one its own CPU runs (`serve_precision=auto`). The step's served test
metrics are those of what this machine serves, so the quality gate judges what is served.
"""

from dataclasses import dataclass

import numpy as np

from pipeline.data.reviews import LABELS
from pipeline.errors import PipelineError
from pipeline.evaluation.metrics import label_scores
from pipeline.serving.inference import class_probabilities, cpu_precisions, in_precision, labels_of, served_precision

SAFE_DROP = 0.005  # validation accuracy a precision may lose against fp32 and still be served


@dataclass(frozen=True)
class PrecisionCheck:
    asked: str  # FineTuning.serve_precision
    valid_accuracy: dict[str, float]  # of each precision checked; fp32 always
    served: str  # what this machine serves

    @property
    def safe(self) -> list[str]:
        return safe_precisions(self.valid_accuracy)

    def model_config(self) -> dict:
        """What the served model reads at load (`sentiment_model.SentimentModel.load_context`)."""
        return {"serve_precision": self.asked, "safe_precisions": self.safe, "precision_valid_accuracy": self.valid_accuracy}


def safe_precisions(valid_accuracy: dict[str, float]) -> list[str]:
    """The precisions within `SAFE_DROP` of fp32's validation accuracy (fp32 among them)."""
    return [name for name, accuracy in valid_accuracy.items() if accuracy >= valid_accuracy["fp32"] - SAFE_DROP]


def refuse_unchecked_precision(asked: str, device: str, cpu_bf16: bool) -> None:
    """A one-line error, before training, for a `serve_precision` this machine cannot check on validation."""
    if asked in ("auto", "fp32"):
        return
    if device != "cpu":
        raise PipelineError(f"serve_precision={asked!r}: checked only where the step scores on the CPU (-P accelerator=cpu); "
                            f"use serve_precision=auto or fp32")
    if asked not in cpu_precisions(cpu_bf16):
        raise PipelineError(f"serve_precision={asked!r}: this CPU has no native bfloat16 (AVX512-BF16 or AMX) to check it "
                            f"on; use serve_precision=auto, fp32 or int8")


def check_precisions(asked: str, network, tokenizer, tokenization: dict, valid_texts: list[str], truth,
                     fp32_valid: np.ndarray, device: str, cpu_bf16: bool) -> tuple[PrecisionCheck, object, np.ndarray]:
    """Score validation in each precision this CPU runs at speed (fp32's positive probabilities `fp32_valid` given)
    and choose what this machine serves: the check, the served copy of `network` (fp32: `network` itself) and its
    validation probabilities. On another device only fp32 is checked and served."""
    candidates = cpu_precisions(cpu_bf16) if device == "cpu" else ("fp32",)
    networks = {precision: in_precision(network, precision) for precision in candidates}
    valid = {precision: fp32_valid if precision == "fp32" else class_probabilities(
        tokenizer, networks[precision], valid_texts, tokenization["max_length"], tokenization["truncation"])[:, 1]
        for precision in candidates}
    accuracy = {precision: label_scores(truth, labels_of(positive, LABELS))["accuracy"] for precision, positive in valid.items()}
    served = served_precision(asked, safe_precisions(accuracy), cpu_bf16) if device == "cpu" else "fp32"
    return PrecisionCheck(asked, accuracy, served), networks[served], valid[served]
