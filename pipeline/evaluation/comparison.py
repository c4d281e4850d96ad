"""What the step serves and how well: the fine-tuned transformer, the TF-IDF baseline fitted on the same splits
(`pipeline.evaluation.baseline`) and the served model (the transformer or their blend: `pipeline.evaluation.serving_choice`,
its transformer in the precision this machine serves: `pipeline.evaluation.precision_choice`), scored on test as the
logged model scores, and logged as the metrics the quality gate reads (`pipeline.contract`)."""

from dataclasses import dataclass

import click
import mlflow
import pandas as pd

from pipeline.evaluation.baseline import NAME as BASELINE_NAME
from pipeline.evaluation.baseline import Baseline, fit_baseline
from pipeline.contract import TEST_METRICS, baseline_metric, lift_metric, served_metric
from pipeline.data.reviews import LABEL_COLUMN, LABELS, TEXT_COLUMN
from pipeline.evaluation.metrics import split_scores
from pipeline.evaluation.precision_choice import SAFE_CHANGE, PrecisionCheck, check_precisions
from pipeline.evaluation.reports import log_model_vs_baseline
from pipeline.serving.inference import class_probabilities, labels_of
from pipeline.evaluation.serving_choice import ServingChoice, choose


@dataclass(frozen=True)
class TestScores:
    """The test metrics (`pipeline.contract.TEST_METRICS`) of each of the three."""

    transformer: dict[str, float]  # Lightning's test of the best epoch
    baseline: dict[str, float]
    served: dict[str, float]


@dataclass(frozen=True)
class Evaluation:
    choice: ServingChoice
    baseline: Baseline
    test: TestScores
    precision: PrecisionCheck


def evaluate(serve: str, serve_precision: str, frames: dict[str, pd.DataFrame], network, tokenizer, tokenization: dict,
             device: str, bf16: bool, transformer_test: dict[str, float]) -> Evaluation:
    """Fit the baseline, score the transformer on validation on `device` as the served model scores, check the
    precisions `device` may serve it in (`serve_precision`: `FineTuning.serve_precision`; `bf16`: native bf16 there),
    choose what to serve on validation alone (`serve`: `FineTuning.serve`) with the transformer in the precision
    served here, and score each on test."""
    baseline = fit_baseline(frames)
    texts = {split: frames[split][TEXT_COLUMN].tolist() for split in ("valid", "test")}

    def positive(net, split: str):
        return class_probabilities(tokenizer, net, texts[split], tokenization["max_length"], tokenization["truncation"])[:, 1]

    precision, served_network, valid = check_precisions(serve_precision, network, tokenizer, tokenization, texts["valid"],
                                                        frames["valid"][LABEL_COLUMN], positive(network.to(device), "valid"),
                                                        device, bf16)
    transformer = {"valid": valid, "test": positive(served_network, "test")}
    network.cpu()
    choice = choose(serve, frames["valid"][LABEL_COLUMN], transformer["valid"], baseline.positive["valid"])
    truth = frames["test"][LABEL_COLUMN]
    served = choice.positive(transformer["test"], baseline.positive["test"])
    return Evaluation(choice, baseline, TestScores(
        transformer={name: transformer_test[name] for name in TEST_METRICS},
        baseline=split_scores(truth, labels_of(baseline.positive["test"], LABELS)),
        served=split_scores(truth, labels_of(served, LABELS))), precision)


def log_evaluation(evaluation: Evaluation) -> None:
    """The baseline's and the served model's test metrics and their lifts, the choice, the report, one console line."""
    test, choice, baseline = evaluation.test, evaluation.choice, evaluation.baseline
    mlflow.log_metrics({baseline_metric(name): test.baseline[name] for name in TEST_METRICS}
                       | {served_metric(name): test.served[name] for name in TEST_METRICS}
                       | {lift_metric(name, served=False): test.transformer[name] - test.baseline[name] for name in TEST_METRICS}
                       | {lift_metric(name, served=True): test.served[name] - test.baseline[name] for name in TEST_METRICS}
                       | {"baseline_fit_seconds": baseline.fit_seconds})
    mlflow.log_metrics({f"valid_accuracy_{name}": value for name, value in evaluation.precision.valid_accuracy.items()}
                       | {f"valid_changed_{name}": value for name, value in evaluation.precision.valid_changed.items()})
    mlflow.log_params({"baseline_c": baseline.regularisation_c, "served_model": choice.served, "blend_weight": choice.weight,
                       "served_precision": evaluation.precision.served})
    log_model_vs_baseline(test, choice, baseline.fit_seconds)
    f1 = {part: getattr(test, part)["test_macro_f1"] for part in ("transformer", "baseline", "served")}
    accuracies = ", ".join(f"{name} {value:.4f} ({evaluation.precision.valid_changed[name]:.1%} of fp32's labels changed)"
                           for name, value in evaluation.precision.valid_accuracy.items())
    click.echo(f"test macro-F1: transformer {f1['transformer']:.4f}, {BASELINE_NAME} baseline {f1['baseline']:.4f} (fit in "
               f"{baseline.fit_seconds:.1f} s), served {f1['served']:.4f} (lift {f1['served'] - f1['baseline']:+.4f}); "
               f"serving the {choice.served}: {choice.reason}; its transformer in {evaluation.precision.served} here "
               f"(validation accuracy {accuracies}; changing at most {SAFE_CHANGE:.1%}: "
               f"{', '.join(evaluation.precision.safe)})")
