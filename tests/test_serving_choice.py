"""pipeline/serving_choice.py: the blend weight comes from validation alone, and `auto` serves the blend only when
it beats the transformer alone there."""

import numpy as np
import pytest

from pipeline.serving_choice import WEIGHTS, ServingChoice, choose, scores

TRUTH = np.array(["positive", "positive", "negative", "negative"])
# Each model is wrong where the other is sure: the transformer misses review 2, the baseline reviews 1 and 3.
TRANSFORMER = np.array([0.9, 0.4, 0.1, 0.45])
BASELINE = np.array([0.45, 0.9, 0.6, 0.1])


def test_auto_serves_a_blend_that_beats_both_parts_on_validation():
    choice = choose("auto", TRUTH, TRANSFORMER, BASELINE)
    assert choice.served == "blend" and 0 < choice.weight < 1 and choice.weight in WEIGHTS
    assert scores(TRUTH, choice.positive(TRANSFORMER, BASELINE))["macro_f1"] == 1.0
    assert scores(TRUTH, TRANSFORMER)["accuracy"] == 0.75 and scores(TRUTH, BASELINE)["accuracy"] == 0.5
    assert choice.reason.startswith("the blend beats the transformer alone on validation (validation macro-F1 1.0000")


def test_auto_keeps_the_transformer_when_the_blend_cannot_beat_it():
    perfect = np.array([0.8, 0.7, 0.2, 0.3])
    choice = choose("auto", TRUTH, perfect, BASELINE)
    assert (choice.served, choice.weight) == ("transformer", 1.0)
    assert choice.reason.startswith("the blend does not beat the transformer alone on validation")


def test_blend_and_transformer_are_served_when_asked():
    perfect = np.array([0.8, 0.7, 0.2, 0.3])
    assert choose("blend", TRUTH, perfect, BASELINE).served == "blend"
    assert choose("transformer", TRUTH, TRANSFORMER, BASELINE).weight == 1.0


def test_ties_go_to_the_weight_with_the_lower_validation_log_loss():
    """Every weight from 0.5 up separates these perfectly; the surest probabilities (all transformer) win."""
    sure, unsure = np.array([0.99, 0.99, 0.01, 0.01]), np.array([0.6, 0.6, 0.4, 0.4])
    assert choose("blend", TRUTH, sure, unsure).weight == 1.0
    assert choose("blend", TRUTH, unsure, sure).weight == 0.0


@pytest.mark.parametrize("weight", [0.0, 0.35, 1.0])
def test_the_served_probability_is_the_weighted_average(weight):
    choice = ServingChoice("blend", weight, "")
    assert choice.positive(TRANSFORMER, BASELINE) == pytest.approx(weight * TRANSFORMER + (1 - weight) * BASELINE)
