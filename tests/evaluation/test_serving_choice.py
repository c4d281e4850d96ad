"""pipeline/evaluation/serving_choice.py: the blend weight comes from validation alone, and `auto` serves the blend only when
it beats the transformer alone there."""

import numpy as np
import pytest

from pipeline.serving.inference import blend
from pipeline.evaluation.serving_choice import WEIGHTS, ServingChoice, best_weight, choose, scores

# Each model is wrong where the other is sure: the transformer misses review 2, the baseline reviews 1 and 3
# (of every 4; 40 reviews, so that each of the 5 folds of cross-validation holds some of each).
TRUTH = np.tile(["positive", "positive", "negative", "negative"], 10)
TRANSFORMER = np.tile([0.9, 0.4, 0.1, 0.45], 10)
BASELINE = np.tile([0.45, 0.9, 0.6, 0.1], 10)
PERFECT = np.tile([0.8, 0.7, 0.2, 0.3], 10)


def test_auto_serves_a_blend_that_beats_both_parts_on_validation():
    choice = choose("auto", TRUTH, TRANSFORMER, BASELINE)
    assert choice.served == "blend" and 0 < choice.weight < 1 and choice.weight in WEIGHTS
    assert scores(TRUTH, choice.positive(TRANSFORMER, BASELINE))["macro_f1"] == 1.0
    assert scores(TRUTH, TRANSFORMER)["accuracy"] == 0.75 and scores(TRUTH, BASELINE)["accuracy"] == 0.5
    assert choice.reason.startswith("the blend beats the transformer alone on validation (transformer weight")
    assert "validation macro-F1 1.0000 cross-validated (5 folds), transformer alone 0.7333" in choice.reason


def test_auto_keeps_the_transformer_when_the_blend_cannot_beat_it():
    choice = choose("auto", TRUTH, PERFECT, BASELINE)
    assert (choice.served, choice.weight) == ("transformer", 1.0)
    assert choice.reason.startswith("the blend does not beat the transformer alone on validation")


def test_blend_and_transformer_are_served_when_asked():
    assert choose("blend", TRUTH, PERFECT, BASELINE).served == "blend"
    assert choose("transformer", TRUTH, TRANSFORMER, BASELINE).weight == 1.0


def test_auto_judges_the_blend_on_reviews_its_weight_was_not_chosen_on():
    """A blend that only wins where its weight was fitted: the baseline rescues one near miss of 40 validation
    reviews. Scored on the reviews it was fitted on the blend wins; each fold's weight, chosen on the other folds
    (which hold no such review), cannot know of it, so cross-validation finds no gain."""
    rng = np.random.default_rng(1)
    truth = np.tile(["positive", "negative"], 20)
    transformer = np.where(truth == "positive", 0.7, 0.3)
    transformer[0] = 0.45  # one near miss
    baseline = rng.uniform(0.2, 0.8, size=40)
    baseline[0] = 0.95
    in_sample = scores(truth, blend(transformer, baseline, best_weight(truth, transformer, baseline)))["macro_f1"]
    assert in_sample > scores(truth, transformer)["macro_f1"]  # what an in-sample rule would serve
    choice = choose("auto", truth, transformer, baseline)
    assert choice.served == "transformer", choice.reason


def test_ties_go_to_the_weight_with_the_lower_validation_log_loss():
    """Every weight from 0.5 up separates these perfectly; the surest probabilities (all transformer) win."""
    sure, unsure = np.tile([0.99, 0.99, 0.01, 0.01], 10), np.tile([0.6, 0.6, 0.4, 0.4], 10)
    assert choose("blend", TRUTH, sure, unsure).weight == 1.0
    assert choose("blend", TRUTH, unsure, sure).weight == 0.0


@pytest.mark.parametrize("weight", [0.0, 0.35, 1.0])
def test_the_served_probability_is_the_weighted_average(weight):
    choice = ServingChoice("blend", weight, "")
    assert choice.positive(TRANSFORMER, BASELINE) == pytest.approx(weight * TRANSFORMER + (1 - weight) * BASELINE)
